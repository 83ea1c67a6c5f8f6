//! TCP: segments through the two reassemblers of a connection into its parsers.

use std::net::{IpAddr, SocketAddr};

use super::conn::Conn;
use super::{Core, End, Engine};
use crate::flow::tcp::Reassembler;
use crate::flow::{Dir, FlowKey};
use crate::peerwire::conn::ConnState;
use crate::wire::link::TcpSegment;

pub(super) enum TcpFlow {
    Active(Box<ActiveTcp>),
    /// Not ours (not BitTorrent, or encrypted): remembered only so its packets cost nothing.
    Ignored,
}

pub(super) struct ActiveTcp {
    reasm: [Reassembler; 2],
    conn: Conn,
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
                let flow = TcpFlow::Active(Box::new(ActiveTcp {
                    reasm: [Reassembler::default(), Reassembler::default()],
                    conn: Conn::new(key, initiator, &core.app.cfg),
                }));
                self.tcp
                    .insert(key, flow, ts, |k, f| core.finish(k, f, End::Evicted))
            }
        };
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
    pub(super) fn finish(&mut self, _key: FlowKey, flow: TcpFlow, end: End) {
        match end {
            End::Expired => self.app.stats.flows.expired += 1,
            End::Evicted => self.app.stats.flows.evicted += 1,
            End::Closed | End::Drained => {}
        }
        let TcpFlow::Active(mut active) = flow else {
            return;
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
