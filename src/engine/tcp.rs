//! TCP: segments through the two reassemblers of a connection into its parsers.

use std::net::{IpAddr, SocketAddr};

use super::conn::Conn;
use super::{Core, End, Engine};
use crate::flow::tcp::{ReasmLimits, Reassembler};
use crate::flow::{Dir, FlowKey};
use crate::peerwire::conn::ConnState;
use crate::wire::link::TcpSegment;
use crate::wire::seq::SeqNum;

pub(super) enum TcpFlow {
    /// Nothing but handshake segments so far (no payload, FIN or RST, no acknowledgement
    /// of bytes beyond a SYN): most flows of a SYN flood or a scan, and every connection
    /// until its first data. Kept inline in the table entry, with no allocation, so an
    /// idle flow costs its table entry alone (docs/benchmarks.md, "Flow state").
    Fresh(Fresh),
    Active(Box<ActiveTcp>),
    /// Not ours (not BitTorrent, or encrypted): remembered only so its packets cost nothing.
    Ignored,
}

pub(super) struct ActiveTcp {
    reasm: [Reassembler; 2],
    conn: Conn,
}

/// All an `ActiveTcp` would hold after handshake segments only: the reassemblers' starting
/// points (a direction's base is set by its SYN alone, so `syn_seen` is `base.is_some()`),
/// who initiated, and what the configuration said when the flow began.
#[derive(Clone, Copy)]
pub(super) struct Fresh {
    base: [Option<SeqNum>; 2],
    initiator: Option<Dir>,
    sub_sender: [bool; 2],
    record_streams: bool,
}

impl Fresh {
    /// Whether `seg` would change more than `Fresh` can hold, checked before anything is
    /// changed so the full state can take the segment from where this one left off.
    fn needs_active(&self, seg: &TcpSegment<'_>, dir: Dir, limits: &ReasmLimits) -> bool {
        !seg.payload.is_empty()
            || seg.flags.fin
            || seg.flags.rst
            || (seg.flags.ack
                && self.base[dir.rev().idx()]
                    .is_some_and(|b| Reassembler::ack_moves_fresh(b, seg.ack, limits)))
    }

    /// A handshake segment, as `tcp_segment` would treat it on the full state: the late-SYN
    /// initiator fix and the SYN setting its direction's base; the rest changes nothing.
    fn handshake(&mut self, seg: &TcpSegment<'_>, dir: Dir) {
        if !seg.flags.syn {
            return;
        }
        if self.initiator.is_none() && self.base == [None, None] {
            self.initiator = Some(if seg.flags.ack { dir.rev() } else { dir });
        }
        self.base[dir.idx()].get_or_insert(seg.seq + 1);
    }

    fn conn(&self, key: FlowKey) -> Conn {
        Conn::with(key, self.initiator, self.sub_sender, self.record_streams)
    }

    fn activate(&self, key: FlowKey) -> TcpFlow {
        TcpFlow::Active(Box::new(ActiveTcp {
            reasm: self.base.map(Reassembler::after_syn),
            conn: self.conn(key),
        }))
    }
}

impl Engine {
    pub(super) fn tcp_segment(
        &mut self,
        ts: u64,
        vlan: Option<u16>,
        src: IpAddr,
        dst: IpAddr,
        seg: &TcpSegment<'_>,
    ) {
        let (key, dir) = FlowKey::new(
            6,
            vlan,
            SocketAddr::new(src, seg.src_port),
            SocketAddr::new(dst, seg.dst_port),
        );
        let core = &mut self.core;
        let flow = match self.tcp.get_mut(&key, ts) {
            Some(f) => f,
            None => {
                core.app.stats.flows.tcp += 1;
                let initiator = match (seg.flags.syn, seg.flags.ack) {
                    (true, false) => Some(dir),
                    (true, true) => Some(dir.rev()),
                    _ => None,
                };
                let cfg = &core.app.cfg;
                let flow = TcpFlow::Fresh(Fresh {
                    base: [None, None],
                    initiator,
                    sub_sender: Conn::subscribers(key, cfg),
                    record_streams: cfg.record_streams,
                });
                self.tcp
                    .insert(key, flow, ts, |k, f| core.finish(k, f, End::Evicted))
            }
        };
        if let TcpFlow::Fresh(fresh) = flow {
            if !fresh.needs_active(seg, dir, &core.limits) {
                fresh.handshake(seg, dir);
                return;
            }
            let fresh = *fresh;
            *flow = fresh.activate(key);
        }
        let TcpFlow::Active(active) = flow else {
            return;
        };
        let ActiveTcp { reasm, conn } = &mut **active;
        if seg.flags.syn
            && conn.state.initiator.is_none()
            && !reasm[0].has_base()
            && !reasm[1].has_base()
        {
            // The SYN came after a stray packet: the connection's start is here after all.
            conn.state = ConnState::new(Some(if seg.flags.ack { dir.rev() } else { dir }));
        }
        let Core {
            limits,
            budget,
            reasm: rc,
            app: ctx,
            ..
        } = core;
        if seg.flags.ack {
            let rd = dir.rev();
            let at_start = reasm[rd.idx()].syn_seen;
            reasm[rd.idx()].on_ack(seg.ack, limits, rc, budget, &mut |c| {
                conn.on_chunk(rd, at_start, c, ctx)
            });
        }
        let at_start = reasm[dir.idx()].syn_seen || seg.flags.syn;
        reasm[dir.idx()].segment(
            seg.seq,
            seg.flags.syn,
            seg.flags.fin,
            seg.payload,
            limits,
            rc,
            budget,
            &mut |c| conn.on_chunk(dir, at_start, c, ctx),
        );
        let done = seg.flags.rst
            || (reasm[0].fin.is_some_and(|f| reasm[0].next_offset() >= f)
                && reasm[1].fin.is_some_and(|f| reasm[1].next_offset() >= f));
        if conn.ignorable() || done {
            let flow = std::mem::replace(flow, TcpFlow::Ignored);
            core.finish(key, flow, End::Closed);
        }
    }
}

impl Core {
    pub(super) fn finish(&mut self, key: FlowKey, flow: TcpFlow, end: End) {
        match end {
            End::Expired => self.app.stats.flows.expired += 1,
            End::Evicted => self.app.stats.flows.evicted += 1,
            End::Closed | End::Drained => {}
        }
        let mut active = match flow {
            TcpFlow::Active(a) => a,
            // Nothing was delivered, so there is nothing to flush: only the connection's
            // end to record (the "ignored" count, an empty stream when recording).
            TcpFlow::Fresh(f) => return f.conn(key).close(&mut self.app),
            TcpFlow::Ignored => return,
        };
        let ActiveTcp { reasm, conn } = &mut *active;
        let Core {
            budget,
            reasm: rc,
            app: ctx,
            ..
        } = self;
        for d in [Dir::LoToHi, Dir::HiToLo] {
            let at_start = reasm[d.idx()].syn_seen;
            reasm[d.idx()].flush(rc, budget, &mut |c| conn.on_chunk(d, at_start, c, ctx));
        }
        conn.close(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow without data lives in its table entry: keep that entry small (the per-flow
    /// figure in docs/benchmarks.md, "Flow state", rests on it).
    #[test]
    fn fresh_flow_stays_small() {
        assert!(std::mem::size_of::<Fresh>() <= 20);
        assert!(std::mem::size_of::<TcpFlow>() <= 24);
    }
}
