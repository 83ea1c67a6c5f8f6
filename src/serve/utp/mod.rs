//! The uTP splice (BEP 29): the TCP splice's idea carried to uTP's numbered packets
//! (docs/design.md, "The uTP splice"). For a uTP connection between a subscriber S and a
//! remote R, followed from its SYN:
//!
//! - S→R: a complete REQUEST (or a CANCEL of one we answer) inside an ST_DATA payload, for a
//!   block the cache holds verified, is overwritten with 17 no-op bytes: no packet toward R
//!   changes length or number. S's `ack_nr` and selective-ack mask are mapped back into R's
//!   numbering (`sack`), its `wnd_size` shrunk by the inserted bytes S has not acked.
//!   A STATE that only acked inserted packets is kept from R, which would count it as a
//!   duplicate ack.
//! - R→S: the PIECE goes in as new ST_DATA packets (no larger than R's largest) in front of
//!   R's next packet, when R's stream is at a message boundary; from then on every R→S
//!   packet's `seq_nr` (DATA, STATE, FIN, RESET) is shifted by the packets inserted before
//!   it. 16-bit wrapping throughout (`seqmap::UtpSeq`).
//! - The inserted packets are ours: sent within S's window, resent on timeout or when S's
//!   selective acks show one missing, stamped with R's clock as S would read it
//!   (`Conn::r_clock`) so S's LEDBAT sees R's path delay.
//!
//! Connection ids: the initiator's SYN carries id X; it then sends X+1 and the responder X.
//! A connection is keyed by X and which side initiated, so a datagram finds its connection
//! from its own id and direction. Datagrams that are not uTP (DHT on the same socket) or of
//! a connection we did not see open pass untouched. Fail-open as for TCP: a gap in either
//! sender's numbering, or an ack that names a packet never sent, stops serving; a connection
//! already spliced keeps its translation to the end.

mod conn;
mod inject;
pub mod sack;

use std::net::SocketAddr;

use super::framer::{Item, NOOP17};
use super::request::{Asking, Transport};
use super::{BlockSource, Bypass, Emit, Port, Splicer};
use crate::serve::seqmap::{SeqSpace, UtpSeq};
use crate::swarm::pieces::FlowContext;
use crate::wire::peerwire::BlockRef;
use crate::wire::udpframe::{UdpFrame, UdpRewrite};
use crate::wire::utp::{UtpPacket, UtpType, ACK_AT, SEQ_AT, WND_AT};
pub(in crate::serve) use conn::Conn;
use inject::UtpInjector;

/// A uTP connection: the UDP endpoints, and the id its initiator's SYN carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct UtpKey {
    sub: SocketAddr,
    rem: SocketAddr,
    vlan: Option<u16>,
    /// The SYN's connection id.
    id: u16,
    /// S sent the SYN.
    s_initiated: bool,
}

impl<S: BlockSource> Splicer<S> {
    /// A UDP datagram: uTP of a connection we follow is spliced, anything else forwarded.
    pub(super) fn on_udp_frame(&mut self, now: u64, from: Port, u: &UdpFrame, out: &mut Vec<Emit>) {
        let Some(p) = UtpPacket::new_checked(u.payload()) else {
            out.push(Emit::Original);
            return;
        };
        let (src, dst) = (
            SocketAddr::new(u.src(), u.src_port()),
            SocketAddr::new(u.dst(), u.dst_port()),
        );
        let (sub, rem) = match from {
            Port::Subscriber => (src, dst),
            Port::Upstream => (dst, src),
        };
        let key = |id: u16, s_initiated: bool| UtpKey {
            sub,
            rem,
            vlan: u.vlan(),
            id,
            s_initiated,
        };
        let from_s = from == Port::Subscriber;
        let k = if p.kind == UtpType::Syn {
            let k = key(p.conn_id, from_s);
            if !self.utp.contains(&k) {
                let (room, freed) = self.utp.make_room(now);
                self.queued_bytes = self.queued_bytes.saturating_sub(freed);
                if !room {
                    self.counters.utp_connection_bypassed(Bypass::TableFull);
                    out.push(Emit::Original);
                    return;
                }
                self.counters.connections += 1;
                self.counters.utp.connections += 1;
                let mut c = Conn::new(now, UtpSeq(p.seq), self.cfg.utp_max_inflight_packets);
                c.packet_floor = self.cfg.utp_packet_bytes;
                self.utp.put(k, c, None);
            }
            k
        } else {
            // The sender initiated (it sends the SYN's id + 1), or it answered (the SYN's id).
            let mine = key(p.conn_id.wrapping_sub(1), from_s);
            let theirs = key(p.conn_id, !from_s);
            if self.utp.contains(&mine) {
                mine
            } else if self.utp.contains(&theirs) {
                theirs
            } else {
                out.push(Emit::Original);
                return;
            }
        };
        let Some(mut c) = self.utp.take(&k) else {
            out.push(Emit::Original);
            return;
        };
        c.last_seen = now;
        match from {
            Port::Subscriber => self.on_utp_subscriber(now, &k, &mut c, u, &p, out),
            Port::Upstream => self.on_utp_upstream(now, &k, &mut c, u, &p, out),
        }
        self.file_utp(now, k, c);
        let freed = self.utp.periodic_sweep(now);
        self.queued_bytes = self.queued_bytes.saturating_sub(freed);
    }

    /// Back into the table with its next deadline, or gone if it closed.
    fn file_utp(&mut self, now: u64, k: UtpKey, mut c: Conn) {
        if c.finished() {
            c.inj.release(&mut self.queued_bytes);
        } else {
            let d = c.deadline(now, self.cfg.max_insertion_points);
            self.utp.put(k, c, d);
        }
    }

    /// Timers of uTP connections due at `now`: retransmissions, blocks that can go in.
    pub(super) fn handle_utp_timeout(&mut self, now: u64, out: &mut Vec<Emit>) {
        for k in self.utp.due(now) {
            let Some(mut c) = self.utp.take(&k) else {
                continue;
            };
            let max_retransmits = self.cfg.max_retransmits;
            let (inj, to) = c.parts(now);
            inj.retransmit_due(
                now,
                to.as_ref(),
                max_retransmits,
                &mut self.queued_bytes,
                &mut self.counters,
                out,
            );
            if let Some(p) = c.r.boundary() {
                self.utp_insert(now, &mut c, p, out);
            }
            self.file_utp(now, k, c);
        }
    }

    fn on_utp_upstream(
        &mut self,
        now: u64,
        k: &UtpKey,
        c: &mut Conn,
        u: &UdpFrame,
        p: &UtpPacket,
        out: &mut Vec<Emit>,
    ) {
        let seq = UtpSeq(p.seq);
        if p.kind == UtpType::Syn {
            // R opens: its first DATA follows its SYN's number.
            c.r.next.get_or_insert(seq.plus(1));
            out.push(Emit::Original);
            return;
        }
        c.r_conn_id = p.conn_id;
        c.r_ts = p.timestamp;
        c.r_ts_at = now;
        c.r_ts_diff = p.ts_diff;
        c.r_wnd = p.wnd;
        let ack = UtpSeq(p.ack);
        if c.r_ack.is_none_or(|a| ack.dist(a) > 0) {
            c.r_ack = Some(ack);
        }
        if c.template.is_none() {
            c.template = Some(u.template());
        }
        if p.kind == UtpType::State && k.s_initiated && !c.established && ack == c.syn_seq {
            // R answers S's SYN: its first DATA carries this STATE's number.
            c.established = true;
            c.r.next.get_or_insert(seq);
        }
        if c.follow(false, p.kind, seq, &mut self.counters) {
            c.r_max_payload = c.r_max_payload.max(p.payload.len());
            let mut items = std::mem::take(&mut self.items);
            c.frame(false, p.payload, &mut items);
            self.items = items;
            c.check_framing(false, &mut self.counters);
        }
        // R acked S's packets past a replaced one: R will never see it again.
        if let Some(a) = c.r_ack {
            while c.replaced.front().is_some_and(|&(q, _)| q.dist(a) <= 0) {
                c.replaced.pop_front();
            }
        }
        if c.translating() {
            let mut w = UdpRewrite::new(*u);
            w.set(SEQ_AT, &c.map.forward(seq).0.to_be_bytes());
            self.counters.utp.rewritten_packets += 1;
            out.push(Emit::Frame(Port::Subscriber, w.finish()));
        } else {
            out.push(Emit::Original);
        }
        // Blocks waiting go in after this packet if R's stream is at a boundary now.
        if let Some(next) = c.r.boundary() {
            self.utp_insert(now, c, next, out);
        }
    }

    fn on_utp_subscriber(
        &mut self,
        now: u64,
        k: &UtpKey,
        c: &mut Conn,
        u: &UdpFrame,
        p: &UtpPacket,
        out: &mut Vec<Emit>,
    ) {
        let seq = UtpSeq(p.seq);
        if p.kind == UtpType::Syn {
            c.s.next.get_or_insert(seq.plus(1));
            out.push(Emit::Original);
            return;
        }
        let ack = UtpSeq(p.ack);
        if p.kind == UtpType::State && !k.s_initiated && !c.established && ack == c.syn_seq {
            c.established = true;
            c.s.next.get_or_insert(seq);
        }
        c.s_wnd = Some(p.wnd);
        let mut subst: Vec<usize> = Vec::new();
        if c.follow(true, p.kind, seq, &mut self.counters) {
            let mut items = std::mem::take(&mut self.items);
            c.frame(true, p.payload, &mut items);
            for it in &items {
                if let Item::Request {
                    start,
                    block,
                    cancel,
                } = *it
                {
                    if let Some(at) = self.utp_request(c, k, start, block, cancel) {
                        subst.push(at);
                        c.replaced.push_back((seq, at));
                    }
                }
            }
            self.items = items;
            c.check_framing(true, &mut self.counters);
        }
        // S sending again a packet we replaced bytes in: replace them again.
        for &(q, at) in &c.replaced {
            if q == seq && !subst.contains(&at) {
                subst.push(at);
            }
        }
        // Acks: the inserted packets, and the translation back into R's numbering.
        let mut mapped = None;
        if c.translating() && p.kind != UtpType::Reset {
            if c.s_space_next().is_some_and(|next| ack.dist(next) >= 0) {
                // S acks a packet nobody sent it.
                c.stop_serving(Bypass::UnexpectedAck, &mut self.counters);
            }
            let mask = p.sack.unwrap_or(&[]);
            let m = sack::map_ack(&c.map, ack, mask, c.fwd_ack);
            let later = mask.iter().map(|b| b.count_ones() as usize).sum();
            let max_retransmits = self.cfg.max_retransmits;
            let (inj, to) = c.parts(now);
            inj.on_ack(
                now,
                ack,
                &m.inserted_received,
                later,
                to.as_ref(),
                max_retransmits,
                &mut self.queued_bytes,
                &mut self.counters,
                out,
            );
            // Points R can no longer send below fold into the base shift.
            c.map.retire(m.ack.plus(1));
            mapped = Some(m);
        }
        let s_ack_moved = c.s_ack != Some(ack);
        c.s_ack = Some(ack);
        match mapped {
            Some(m)
                if p.kind == UtpType::State
                    && subst.is_empty()
                    && s_ack_moved
                    && c.fwd_ack == Some(m.ack)
                    && m.mask.iter().all(|&b| b == 0) =>
            {
                // It acked only inserted packets: to R it would be a duplicate ack.
                self.counters.utp.acks_absorbed += 1;
            }
            None if subst.is_empty() => out.push(Emit::Original),
            m => {
                let mut w = UdpRewrite::new(*u);
                for &at in &subst {
                    w.set(p.payload_at + at, &NOOP17);
                }
                if let Some(m) = m {
                    w.set(ACK_AT, &m.ack.0.to_be_bytes());
                    if p.sack.is_some() {
                        w.set(p.sack_at, &m.mask);
                    }
                    // R may fill S's window, which our unacked packets take part of.
                    let wnd = p.wnd.saturating_sub(c.inj.unacked_bytes() as u32);
                    w.set(WND_AT, &wnd.to_be_bytes());
                    if c.fwd_ack.is_none_or(|f| m.ack.dist(f) > 0) {
                        c.fwd_ack = Some(m.ack);
                    }
                }
                self.counters.utp.rewritten_packets += 1;
                out.push(Emit::Frame(Port::Upstream, w.finish()));
            }
        }
        // Blocks just answered go in now if R's stream is at a message boundary.
        if let Some(next) = c.r.boundary() {
            self.utp_insert(now, c, next, out);
        }
    }

    /// A complete REQUEST/CANCEL from S: the payload offset to overwrite, if we answer it.
    fn utp_request(
        &mut self,
        c: &mut Conn,
        k: &UtpKey,
        start: Option<usize>,
        block: BlockRef,
        cancel: bool,
    ) -> Option<usize> {
        if cancel {
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
                subscriber: k.sub,
                upstream: k.rem,
                vlan: k.vlan,
            },
            transport: Transport::Utp,
        };
        let data = self.answer_request(asking, block)?;
        c.inj.answers.answer(
            block,
            data,
            self.cfg.max_answered_per_connection,
            &mut self.queued_bytes,
            &mut self.counters,
        );
        if start.is_none() {
            // Begun in an earlier packet that already went to R: answered anyway, as the
            // TCP splice does; S drops a second copy.
            self.counters.split_requests_answered += 1;
        }
        start
    }

    /// Waiting blocks go in as packets in front of R's packet `p`, as far as S's window
    /// allows.
    fn utp_insert(&mut self, now: u64, c: &mut Conn, p: UtpSeq, out: &mut Vec<Emit>) {
        if !c.can_insert(p, self.cfg.max_insertion_points) {
            return;
        }
        let s_wnd = c.s_wnd.unwrap_or(0);
        let max_payload = c.packet_payload();
        let (bytes, blocks, payload) =
            c.inj
                .take_fitting(s_wnd, max_payload, &mut self.queued_bytes);
        if bytes.is_empty() {
            return;
        }
        let n = UtpInjector::packets_for(bytes.len(), max_payload);
        let s_start = c.map.forward(p);
        c.map.insert(p, n);
        let rto_ms = self.cfg.rto_ms;
        let (inj, to) = c.parts(now);
        if let Some(to) = to {
            inj.send(
                now,
                s_start,
                &bytes,
                max_payload,
                rto_ms,
                &to,
                &mut self.counters,
                out,
            );
        }
        c.spliced(&mut self.counters);
        self.counters.served_blocks += blocks;
        self.counters.served_bytes += payload;
        self.counters.utp.served_blocks += blocks;
        self.counters.utp.served_bytes += payload;
    }
}

#[cfg(test)]
mod tests;
