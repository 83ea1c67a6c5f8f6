//! One uTP connection between a subscriber S and a remote R, as the splice follows it:
//! each sender's side (its next packet number in order, its peer-wire framing), where the
//! connection stands (the TCP splice's `State`), R's numbers in S's space, the injector,
//! and the latest header fields of R's packets that inserted packets copy.

use std::collections::VecDeque;

use super::super::conn::State;
use super::super::conns::Tracked;
use super::super::counters::ServeCounters;
use super::super::framer::{Framer, Item};
use super::super::Bypass;
use super::inject::{Toward, UtpInjector};
use crate::serve::seqmap::{SeqMap, SeqSpace, UtpSeq};
use crate::wire::peerwire::MAX_BLOCK;
use crate::wire::udpframe::UdpTemplate;
use crate::wire::utp::UtpType;

/// The largest inserted packet payload, whatever the configuration says.
const MAX_PACKET_PAYLOAD: usize = 8_900;

/// One sender's side.
#[derive(Debug)]
pub(super) struct Side {
    /// Next in-order packet number expected from this sender; None until known (its SYN,
    /// or its STATE answering the other's SYN) and once tracking stopped.
    pub(super) next: Option<UtpSeq>,
    /// Tracking stopped (a gap): `next` stays None for good.
    pub(super) lost: bool,
    pub(super) framer: Framer,
    pub(super) info_hash: Option<[u8; 20]>,
    pub(super) fin: bool,
}

impl Side {
    fn new() -> Side {
        Side {
            next: None,
            lost: false,
            framer: Framer::new(MAX_BLOCK + 1024),
            info_hash: None,
            fin: false,
        }
    }

    /// R's stream is at a message boundary before its packet `next`: packets may go in
    /// there.
    pub(super) fn boundary(&self) -> Option<UtpSeq> {
        self.next.filter(|_| self.framer.at_boundary())
    }
}

#[derive(Debug)]
pub(in crate::serve) struct Conn {
    pub(super) s: Side,
    pub(super) r: Side,
    pub(super) state: State,
    pub(super) last_seen: u64,
    /// The initiator's SYN was answered by a STATE acking it.
    pub(super) established: bool,
    /// The SYN's packet number.
    pub(super) syn_seq: UtpSeq,
    /// Insertions into R's packet stream; R's numbers in S's space.
    pub(super) map: SeqMap<UtpSeq>,
    /// S's packets (number, payload offset) whose REQUEST or CANCEL we replaced: S's
    /// retransmissions of them are replaced the same way; dropped once R acked them.
    pub(super) replaced: VecDeque<(UtpSeq, usize)>,
    pub(super) inj: UtpInjector,
    /// From R's latest packet: its connection id, timestamp (and when it passed, box
    /// time), delay measurement, window and ack of S's packets.
    pub(super) r_conn_id: u16,
    pub(super) r_ts: u32,
    pub(super) r_ts_at: u64,
    pub(super) r_ts_diff: u32,
    pub(super) r_wnd: u32,
    pub(super) r_ack: Option<UtpSeq>,
    /// The largest payload R has sent S.
    pub(super) r_max_payload: usize,
    /// Inserted packets carry at most this much: R's largest, or the configured size the
    /// subscriber side is known to carry when that is more (see `InlineConfig`).
    pub(super) packet_floor: usize,
    /// S's latest window (bytes); None until S sent a packet after the SYN.
    pub(super) s_wnd: Option<u32>,
    /// S's latest cumulative ack (S's numbering) and the latest ack passed to R.
    pub(super) s_ack: Option<UtpSeq>,
    pub(super) fwd_ack: Option<UtpSeq>,
    /// Headers of an R→S packet, for the packets we build.
    pub(super) template: Option<UdpTemplate>,
    pub(super) reset: bool,
}

impl Tracked for Conn {
    fn last_seen(&self) -> u64 {
        self.last_seen
    }
    fn queued_bytes(&self) -> usize {
        self.inj.queued()
    }
}

impl Conn {
    pub(super) fn new(now: u64, syn_seq: UtpSeq, max_inflight: u32) -> Conn {
        Conn {
            s: Side::new(),
            r: Side::new(),
            state: State::Opening,
            last_seen: now,
            established: false,
            syn_seq,
            map: SeqMap::new(),
            replaced: VecDeque::new(),
            inj: UtpInjector::new(max_inflight),
            r_conn_id: 0,
            r_ts: 0,
            r_ts_at: now,
            r_ts_diff: 0,
            r_wnd: 0,
            r_ack: None,
            r_max_payload: 0,
            packet_floor: 0,
            s_wnd: None,
            s_ack: None,
            fwd_ack: None,
            template: None,
            reset: false,
        }
    }

    pub(super) fn translating(&self) -> bool {
        !self.map.is_identity()
    }

    /// R's clock at box time `now`, as S would read it on a packet R sent now: R's latest
    /// timestamp plus the time since that packet passed the box. The packet had already
    /// travelled R→box, so this runs behind R's real clock by that one-way delay, and S's
    /// delay sample for an inserted packet (its receive time minus this) comes out as R's
    /// path delay to S — the same as for R's own packets. A stamp of the box's own clock
    /// would instead look like a jump in R's clock to S's LEDBAT.
    pub(super) fn r_clock(&self, now: u64) -> u32 {
        self.r_ts
            .wrapping_add(now.saturating_sub(self.r_ts_at) as u32)
    }

    /// The swarm a REQUEST on this connection may be answered for, or why not.
    pub(super) fn serving(&mut self) -> Result<[u8; 20], Bypass> {
        match self.state {
            State::Serving(ih) | State::Spliced(ih) => Ok(ih),
            State::Bypassed(b) | State::TranslatingOnly(b) => Err(b),
            State::Opening => match (self.s.info_hash, self.r.info_hash) {
                (Some(a), Some(b))
                    if a == b
                        && self.established
                        && self.template.is_some()
                        && self.s_wnd.is_some()
                        && self.r_max_payload > 0 =>
                {
                    self.state = State::Serving(a);
                    Ok(a)
                }
                _ => Err(Bypass::NotBittorrent),
            },
        }
    }

    /// Stop serving (fail-open); counted once per connection.
    pub(super) fn stop_serving(&mut self, why: Bypass, counters: &mut ServeCounters) {
        self.state = match self.state {
            State::Opening | State::Serving(_) => State::Bypassed(why),
            State::Spliced(_) => State::TranslatingOnly(why),
            State::Bypassed(_) | State::TranslatingOnly(_) => return,
        };
        counters.utp_connection_bypassed(why);
    }

    /// Blocks went in; counted once per connection.
    pub(super) fn spliced(&mut self, counters: &mut ServeCounters) {
        self.state = match self.state {
            State::Serving(ih) => State::Spliced(ih),
            State::Bypassed(b) => State::TranslatingOnly(b),
            State::Opening | State::Spliced(_) | State::TranslatingOnly(_) => return,
        };
        counters.connections_spliced += 1;
        counters.utp.connections_spliced += 1;
    }

    /// Closed: reset, or both ends finished and S has everything we inserted.
    pub(super) fn finished(&self) -> bool {
        self.reset || (self.s.fin && self.r.fin && self.inj.all_acked())
    }

    /// The injector, and how packets toward S look (once an R→S packet was seen).
    pub(super) fn parts(&mut self, now: u64) -> (&mut UtpInjector, Option<Toward<'_>>) {
        let timestamp = self.r_clock(now);
        let to = self.template.as_ref().map(|template| Toward {
            template,
            conn_id: self.r_conn_id,
            timestamp,
            ts_diff: self.r_ts_diff,
            wnd: self.r_wnd,
            ack: self.r_ack.map_or(0, |a| a.0),
        });
        (&mut self.inj, to)
    }

    /// The last S-space number sent toward S plus one, when known: R's next packet in S's
    /// numbering (every insertion point is at or before R's next packet).
    pub(super) fn s_space_next(&self) -> Option<UtpSeq> {
        self.r.next.map(|n| self.map.forward(n))
    }

    /// Waiting blocks could go in before R's packet `p` now.
    pub(super) fn can_insert(&self, p: UtpSeq, max_points: usize) -> bool {
        self.inj.has_pending()
            && self.map.points() < max_points
            && !self.r.fin
            && self.template.is_some()
            && self.r_max_payload > 0
            && self.map.accepts(p)
            && self.s_wnd.is_some_and(|w| self.inj.room(w))
    }

    /// The payload of an inserted packet (at most a jumbo frame's: a configured size past
    /// what a datagram can hold must not make the packets unbuildable).
    pub(super) fn packet_payload(&self) -> usize {
        self.r_max_payload
            .max(self.packet_floor)
            .clamp(64, MAX_PACKET_PAYLOAD)
    }

    /// The next time this connection needs `handle_timeout`.
    pub(super) fn deadline(&self, now: u64, max_points: usize) -> Option<u64> {
        let insert = self
            .r
            .boundary()
            .is_some_and(|p| self.can_insert(p, max_points))
            .then_some(now);
        let retransmit = self.template.as_ref().and_then(|_| self.inj.deadline());
        match (insert, retransmit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A numbered or RESET packet of `kind` from S (`from_s`) or R: moves that side's
    /// order on, notes its FIN or the RESET, stops serving on a gap. True when it is the
    /// side's next DATA packet, whose payload is to be framed.
    pub(super) fn follow(
        &mut self,
        from_s: bool,
        kind: UtpType,
        seq: UtpSeq,
        counters: &mut ServeCounters,
    ) -> bool {
        let side = if from_s { &mut self.s } else { &mut self.r };
        match kind {
            UtpType::Data | UtpType::Fin => match Conn::order(side, seq) {
                Order::Next if kind == UtpType::Fin => side.fin = true,
                Order::Next => return true,
                Order::Gap => self.stop_serving(Bypass::Gap, counters),
                Order::Old | Order::Untracked => {}
            },
            UtpType::Reset => self.reset = true,
            UtpType::State | UtpType::Syn => {}
        }
        false
    }

    /// Frame the next in-order payload of S or R into `items`, noting a handshake's
    /// info-hash. The caller handles the items, then [`Conn::check_framing`].
    pub(super) fn frame(&mut self, from_s: bool, payload: &[u8], items: &mut Vec<Item>) {
        let side = if from_s { &mut self.s } else { &mut self.r };
        items.clear();
        side.framer.feed(payload, items);
        for it in items.iter() {
            if let Item::Handshake { info_hash, .. } = *it {
                side.info_hash = Some(info_hash);
            }
        }
    }

    /// A side whose bytes stopped framing as the peer wire: not served any more.
    pub(super) fn check_framing(&mut self, from_s: bool, counters: &mut ServeCounters) {
        let broken = if from_s { &self.s } else { &self.r }.framer.broken();
        if broken {
            self.stop_serving(Bypass::NotBittorrent, counters);
        }
    }

    /// A DATA/FIN packet `seq` from one side: where it stands against that side's next
    /// in-order number. In order moves `next` on.
    pub(super) fn order(side: &mut Side, seq: UtpSeq) -> Order {
        match side.next {
            None => Order::Untracked,
            Some(n) => match seq.dist(n) {
                0 => {
                    side.next = Some(n.plus(1));
                    Order::Next
                }
                d if d < 0 => Order::Old,
                _ => {
                    side.next = None;
                    side.lost = true;
                    Order::Gap
                }
            },
        }
    }
}

/// Where a numbered packet stands in its sender's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Order {
    Next,
    /// Already seen (a retransmission).
    Old,
    /// Past a missing packet: the framing is lost.
    Gap,
    Untracked,
}
