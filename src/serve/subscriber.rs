//! Frames from the subscriber S: its stream followed in order for REQUESTs and CANCELs (the
//! answered ones overwritten with no-ops, so nothing toward R changes length), and its acks,
//! windows and SACK edges translated back into R's sequence space.

use super::conn::Conn;
use super::framer::{Item, NOOP17};
use super::request::{Asking, Transport};
use super::{BlockSource, Bypass, ConnKey, Emit, Port, Splicer};
use crate::swarm::pieces::FlowContext;
use crate::wire::peerwire::BlockRef;
use crate::wire::tcpframe::{Rewrite, TcpFrame};

impl<S: BlockSource> Splicer<S> {
    pub(super) fn on_subscriber_frame(
        &mut self,
        now: u64,
        key: &ConnKey,
        c: &mut Conn,
        t: &TcpFrame,
        out: &mut Vec<Emit>,
    ) {
        let (tcp, flags) = (t.tcp(), t.tcp().flags());
        if flags.syn {
            c.s.on_syn(t);
            c.settle_options();
            out.push(Emit::Original);
            return;
        }
        if !c.s.syn {
            c.stop_serving(Bypass::Midstream, &mut self.counters);
        }
        if let Some((val, _)) = t.timestamps() {
            c.s.tsval = val;
        }
        let payload = t.payload();
        let mut subst: Vec<usize> = Vec::new();
        // In-order tracking of S's stream: REQUESTs and CANCELs.
        if let Some(next) = c.s.next {
            let off = tcp.seq().diff(next);
            if off > 0 && !payload.is_empty() {
                c.s.next = None;
                c.stop_serving(Bypass::Gap, &mut self.counters);
            } else if !payload.is_empty() && (-off) < payload.len() as i32 {
                let skip = (-off) as usize;
                let mut items = std::mem::take(&mut self.items);
                items.clear();
                c.s.framer.feed(&payload[skip..], &mut items);
                c.s.next = Some(next + (payload.len() - skip) as u32);
                for it in &items {
                    match *it {
                        Item::Handshake { info_hash, .. } => c.s.info_hash = Some(info_hash),
                        Item::Request {
                            start,
                            block,
                            cancel,
                        } => {
                            if let Some(at) =
                                self.on_request(c, key, start.map(|s| s + skip), block, cancel)
                            {
                                subst.push(at);
                                c.replaced.push_back(tcp.seq() + at as u32);
                            }
                        }
                        Item::Boundary { .. } => {}
                    }
                }
                self.items = items;
                if c.s.framer.broken() {
                    c.stop_serving(Bypass::NotBittorrent, &mut self.counters);
                }
            }
            if flags.fin {
                c.s.fin = true;
            }
        }
        // S retransmitting bytes we replaced before: replace them again.
        let (lo, hi) = (tcp.seq(), tcp.seq() + payload.len() as u32);
        for &r in &c.replaced {
            if r >= lo && r + 17 <= hi {
                let at = r.diff(lo) as usize;
                if !subst.contains(&at) {
                    subst.push(at);
                }
            }
        }
        // Acks: our inserted bytes, and the translation back into R's space.
        let mut ack_r = None;
        if flags.ack {
            let ack = tcp.ack();
            let win = u32::from(tcp.window()) << c.s.wscale.min(14);
            if let Some(sent_end) = c.r.next.map(|n| c.map.forward(n) + u32::from(c.r.fin)) {
                if ack > sent_end && c.translating() {
                    c.stop_serving(Bypass::UnexpectedAck, &mut self.counters);
                }
            }
            let max_retransmits = self.cfg.max_retransmits;
            let (inj, to) = c.parts();
            inj.on_ack(
                now,
                ack,
                win,
                payload.is_empty(),
                to.as_ref(),
                max_retransmits,
                &mut self.queued_bytes,
                &mut self.counters,
                out,
            );
            // Insertion points R can no longer send below fold into the base shift.
            if let Some(una) = c.r_una {
                c.map.retire(una);
            }
            if c.translating() {
                let a = c.map.back(ack);
                ack_r = Some(a);
                if c.r_una.is_none_or(|u| a > u) {
                    c.r_una = Some(a);
                }
            }
        }
        // R acked S's bytes past a replaced range: R will never see it again.
        while c.replaced.front().is_some_and(|&r| r + 17 <= c.r_ack) {
            c.replaced.pop_front();
        }
        if subst.is_empty() && ack_r.is_none() {
            out.push(Emit::Original);
        } else {
            let mut w = Rewrite::new(*t);
            for at in &subst {
                w.set_payload(*at, &NOOP17);
            }
            if let Some(a) = ack_r {
                w.set_ack(a);
                // R may fill S's window up to (a + window) in its own space, which is later in
                // S's space by what we inserted and S has not acked yet: shrink the window by
                // that much so R does not overrun S.
                let excess = (a + c.map.total()).diff(tcp.ack()).max(0) as u32;
                if excess > 0 {
                    let scale = c.s.wscale.min(14);
                    let bytes = (u32::from(tcp.window()) << scale).saturating_sub(excess);
                    w.set_window((bytes >> scale).min(u32::from(u16::MAX)) as u16);
                }
                // A SACK block inside inserted bytes maps to nothing: the option goes.
                w.map_sack(|e| c.map.back(e));
            }
            self.counters.rewritten_segments += 1;
            out.push(Emit::Frame(Port::Upstream, w.finish()));
        }
        // Blocks just answered go in now if R's stream is at a message boundary.
        if let Some(next) = c.r.boundary() {
            self.insert_into(now, c, next, out);
        }
    }

    /// A complete REQUEST/CANCEL from S: the payload offset to overwrite with no-ops, if we
    /// answer it.
    fn on_request(
        &mut self,
        c: &mut Conn,
        key: &ConnKey,
        start: Option<usize>,
        block: BlockRef,
        cancel: bool,
    ) -> Option<usize> {
        if cancel {
            // A CANCEL of a block we answered: R never saw the REQUEST; drop it if still
            // waiting and hide the CANCEL too.
            if !c.inj.cancel(block, &mut self.queued_bytes) {
                return None;
            }
            let at = start?;
            self.counters.cancels_absorbed += 1;
            return Some(at);
        }
        let asking = Asking {
            serving: c.serving(),
            queued: c.inj.queued(),
            points: c.map.points(),
            flow: FlowContext {
                subscriber: key.sub,
                upstream: key.rem,
                vlan: key.vlan,
            },
            transport: Transport::Tcp,
        };
        let data = self.answer_request(asking, block)?;
        c.inj.answer(
            block,
            data,
            self.cfg.max_answered_per_connection,
            &mut self.queued_bytes,
            &mut self.counters,
        );
        if start.is_none() {
            // Its first bytes already went upstream: it cannot be hidden from R any more.
            // Answer it anyway (a remote that went silent must not stall the download); if
            // R answers too, S gets the block twice and drops the second copy as
            // unrequested.
            self.counters.split_requests_answered += 1;
        }
        start
    }
}
