//! One spliced connection: each sender's side (`Half`), where the connection stands
//! (`State`, with every transition here), and its parts — the number mapping of R's stream,
//! the injector, the ranges of S's stream we replaced.

use std::collections::VecDeque;

use super::conns::Tracked;
use super::counters::ServeCounters;
use super::framer::Framer;
use super::inject::{Injector, Toward};
use super::seqmap::SeqMap;
use super::{Bypass, Emit, InlineConfig};
use crate::wire::peerwire::MAX_BLOCK;
use crate::wire::seq::SeqNum;
use crate::wire::tcpframe::{TcpFrame, Template};

/// One sender's side of a connection.
#[derive(Debug)]
pub(super) struct Half {
    pub syn: bool,
    /// Next in-order sequence number expected from this sender; None once tracking stopped.
    pub next: Option<SeqNum>,
    pub framer: Framer,
    pub mss: u16,
    pub wscale: u8,
    /// The SYN carried a window scale option (scaling applies only if both SYNs did).
    pub ws_offered: bool,
    pub ts: bool,
    pub tsval: u32,
    pub fin: bool,
    pub info_hash: Option<[u8; 20]>,
}

impl Half {
    fn new() -> Half {
        Half {
            syn: false,
            next: None,
            framer: Framer::new(MAX_BLOCK + 1024),
            mss: 536,
            wscale: 0,
            ws_offered: false,
            ts: false,
            tsval: 0,
            fin: false,
            info_hash: None,
        }
    }

    pub fn on_syn(&mut self, t: &TcpFrame) {
        let o = t.syn_options();
        self.syn = true;
        self.next = Some(t.tcp().seq() + 1);
        self.mss = o.mss.unwrap_or(536).max(64);
        self.wscale = o.wscale.unwrap_or(0);
        self.ws_offered = o.wscale.is_some();
        self.ts = o.timestamps;
        if !t.tcp().flags().ack {
            // The SYN without ACK: this sender opened the connection.
            self.framer.set_initiator();
        }
    }

    /// R's stream is at a message boundary at this point: bytes may go in here.
    pub fn boundary(&self) -> Option<SeqNum> {
        self.next.filter(|_| self.framer.at_boundary())
    }
}

/// Where a connection stands. Translation is a matter of the mapping (anything inserted
/// means translating), not of the state: a connection that stops being served after blocks
/// went in keeps its translation to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Followed from its SYN; not yet known to be servable (both handshakes with the same
    /// info-hash, R's headers to build segments from, S's first ack).
    Opening,
    /// Plain BitTorrent both ways: REQUESTs may be answered.
    Serving([u8; 20]),
    /// Serving, and blocks have been inserted.
    Spliced([u8; 20]),
    /// Not served any more (why); blocks answered before may still go in.
    Bypassed(Bypass),
    /// Stopped being served after blocks were inserted.
    TranslatingOnly(Bypass),
}

/// How a served connection's peer wire travels, for counting served connections and
/// blocks by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encryption {
    /// A plaintext handshake both ways.
    Plain,
    /// MSE/PE that selected plaintext: the peer wire after each direction's located start.
    MsePlaintext,
}

impl Encryption {
    /// Label value, for series split by it. Unused until the splice's counters are split
    /// by encryption state (after the uTP counters land, to keep the merge small).
    #[allow(dead_code)]
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Plain => "plain",
            Encryption::MsePlaintext => "mse_plaintext",
        }
    }
}

#[derive(Debug)]
pub(super) struct Conn {
    pub s: Half,
    pub r: Half,
    pub state: State,
    /// Set when serving starts.
    pub encryption: Encryption,
    pub last_seen: u64,
    /// Insertions into R's stream, and R's numbers in S's space.
    pub map: SeqMap<SeqNum>,
    /// Starts of the 17-byte ranges of S's stream we replaced (S's retransmissions of them
    /// must be replaced the same way); dropped once R acked them.
    pub replaced: VecDeque<SeqNum>,
    pub inj: Injector,
    /// Highest ack R sent (S→R space is never translated) and its latest window field.
    pub r_ack: SeqNum,
    pub r_ack_seen: bool,
    pub r_win: u16,
    /// Highest ack we passed to R (R-space): R never sends below it again.
    pub r_una: Option<SeqNum>,
    /// Link and IP headers of an R→S frame, for the segments we build.
    pub template: Option<Template<Vec<u8>>>,
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
    pub fn new(now: u64) -> Conn {
        Conn {
            s: Half::new(),
            r: Half::new(),
            state: State::Opening,
            encryption: Encryption::Plain,
            last_seen: now,
            map: SeqMap::new(),
            replaced: VecDeque::new(),
            inj: Injector::default(),
            r_ack: SeqNum(0),
            r_ack_seen: false,
            r_win: 0,
            r_una: None,
            template: None,
        }
    }

    /// Whether any translation applies.
    pub fn translating(&self) -> bool {
        !self.map.is_identity()
    }

    /// Once both SYNs are seen: window scaling and timestamps apply only if both ends
    /// offered them (RFC 7323).
    pub fn settle_options(&mut self) {
        if !(self.s.syn && self.r.syn) {
            return;
        }
        if !(self.s.ws_offered && self.r.ws_offered) {
            self.s.wscale = 0;
            self.r.wscale = 0;
        }
        if !(self.s.ts && self.r.ts) {
            self.s.ts = false;
            self.r.ts = false;
        }
    }

    /// The swarm a REQUEST on this connection may be answered for, or why not.
    pub fn serving(&mut self) -> Result<[u8; 20], Bypass> {
        match self.state {
            State::Serving(ih) | State::Spliced(ih) => Ok(ih),
            State::Bypassed(b) | State::TranslatingOnly(b) => Err(b),
            State::Opening => {
                // Every condition, once true, stays true: the state can move on.
                let ready = self.template.is_some() && self.inj.s_ack().is_some();
                match self.swarm() {
                    Some(ih) if ready => {
                        self.state = State::Serving(ih);
                        self.encryption = if self.s.framer.mse() || self.r.framer.mse() {
                            Encryption::MsePlaintext
                        } else {
                            Encryption::Plain
                        };
                        Ok(ih)
                    }
                    _ => Err(Bypass::NotBittorrent),
                }
            }
        }
    }

    /// The swarm both directions are known to be in. Plain: both handshakes, one info-hash.
    /// MSE/PE that selected plaintext: the initiator's handshake may have travelled
    /// encrypted in IA, so one visible handshake is enough when the other direction also
    /// began with MSE and its plaintext start was found; the responder answers only for the
    /// SKEY (info-hash) it serves, so its handshake names the swarm of both.
    fn swarm(&self) -> Option<[u8; 20]> {
        let located = |h: &Half, other: &Half| {
            h.framer.mse_located() && h.framer.past_handshake() && other.framer.mse()
        };
        match (self.s.info_hash, self.r.info_hash) {
            (Some(a), Some(b)) => (a == b).then_some(a),
            (Some(a), None) => located(&self.r, &self.s).then_some(a),
            (None, Some(b)) => located(&self.s, &self.r).then_some(b),
            (None, None) => None,
        }
    }

    /// Stop serving (fail-open); counted once per connection.
    pub fn stop_serving(&mut self, why: Bypass, counters: &mut ServeCounters) {
        self.state = match self.state {
            State::Opening | State::Serving(_) => State::Bypassed(why),
            State::Spliced(_) => State::TranslatingOnly(why),
            State::Bypassed(_) | State::TranslatingOnly(_) => return,
        };
        counters.connection_bypassed(why);
    }

    /// Blocks went in; counted once per connection.
    fn spliced(&mut self, counters: &mut ServeCounters) {
        self.state = match self.state {
            State::Serving(ih) => State::Spliced(ih),
            State::Bypassed(b) => State::TranslatingOnly(b),
            // Nothing is answered before Serving, so nothing goes in from Opening.
            State::Opening | State::Spliced(_) | State::TranslatingOnly(_) => return,
        };
        counters.connections_spliced += 1;
        if self.encryption == Encryption::MsePlaintext {
            counters.mse_connections_served += 1;
        }
    }

    /// Both ends have closed and S has everything we inserted.
    pub fn finished(&self) -> bool {
        self.s.fin && self.r.fin && self.inj.all_acked()
    }

    /// The injector, and how segments toward S look (once an R→S frame was seen).
    pub fn parts(&mut self) -> (&mut Injector, Option<Toward<'_>>) {
        let ts = (self.s.ts && self.r.ts).then_some((self.r.tsval, self.s.tsval));
        let to = self.template.as_ref().map(|template| Toward {
            template,
            ack: self.r_ack,
            window: self.r_win,
            ts,
        });
        (&mut self.inj, to)
    }

    /// Waiting blocks could go in at R's point `p` now (the guard of `insert_at`).
    fn can_insert(&self, p: SeqNum, cfg: &InlineConfig) -> bool {
        // Nothing goes after R's FIN.
        self.inj.has_pending()
            && self.map.points() < cfg.max_insertion_points
            && !self.r.fin
            && self.template.is_some()
            && self.map.accepts(p)
            && self.inj.room_at(p + self.map.shift_at(p))
    }

    /// Insert as many waiting blocks as S's window allows at R's sequence point `p` (a
    /// message boundary of R's stream, at or after every earlier insertion point).
    pub fn insert_at(
        &mut self,
        now: u64,
        p: SeqNum,
        cfg: &InlineConfig,
        all: &mut usize,
        counters: &mut ServeCounters,
        out: &mut Vec<Emit>,
    ) {
        if !self.can_insert(p, cfg) {
            return;
        }
        let s_start = p + self.map.shift_at(p);
        let (bytes, blocks, payload) = self.inj.take_fitting(s_start, all);
        if bytes.is_empty() {
            return;
        }
        self.map.insert(p, bytes.len() as u32);
        let mss = self.s.mss;
        let (inj, to) = self.parts();
        if let Some(to) = to {
            inj.send(now, s_start, &bytes, mss, cfg.rto_ms, &to, counters, out);
        }
        self.spliced(counters);
        counters.served_blocks += blocks;
        counters.served_bytes += payload;
        if self.encryption == Encryption::MsePlaintext {
            counters.mse_served_blocks += blocks;
        }
    }

    /// The next time this connection needs `handle_timeout`: a retransmission due, or
    /// blocks that could go in at R's current boundary now.
    pub fn deadline(&self, now: u64, cfg: &InlineConfig) -> Option<u64> {
        let insert = self
            .r
            .boundary()
            .is_some_and(|p| self.can_insert(p, cfg))
            .then_some(now);
        let retransmit = self.template.as_ref().and_then(|_| self.inj.deadline());
        match (insert, retransmit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_needs_matching_handshakes_headers_and_an_ack() {
        let mut c = Conn::new(0);
        assert_eq!(c.serving(), Err(Bypass::NotBittorrent));
        c.s.info_hash = Some([7; 20]);
        c.r.info_hash = Some([8; 20]);
        assert_eq!(c.serving(), Err(Bypass::NotBittorrent), "different swarms");
        c.r.info_hash = Some([7; 20]);
        assert_eq!(
            c.serving(),
            Err(Bypass::NotBittorrent),
            "no R headers, no S ack"
        );
        assert_eq!(c.state, State::Opening);
    }

    #[test]
    fn transitions_count_once() {
        let mut k = ServeCounters::default();
        // stopped before anything went in
        let mut c = Conn::new(0);
        c.state = State::Serving([1; 20]);
        c.stop_serving(Bypass::Gap, &mut k);
        c.stop_serving(Bypass::UnexpectedAck, &mut k);
        assert_eq!(c.state, State::Bypassed(Bypass::Gap));
        assert_eq!(c.serving(), Err(Bypass::Gap));
        // a block answered before still goes in: counted as spliced, still not served
        c.spliced(&mut k);
        c.spliced(&mut k);
        assert_eq!(c.state, State::TranslatingOnly(Bypass::Gap));
        assert_eq!(k.connections_spliced, 1);
        // spliced, then stopped: keeps translating, reason counted once
        let mut c = Conn::new(0);
        c.state = State::Serving([1; 20]);
        c.spliced(&mut k);
        assert_eq!(c.serving(), Ok([1; 20]));
        c.stop_serving(Bypass::Overload, &mut k);
        c.stop_serving(Bypass::Gap, &mut k);
        assert_eq!(c.state, State::TranslatingOnly(Bypass::Overload));
        assert_eq!(k.connections_spliced, 2);
        assert_eq!(k.connections_bypassed.get("gap"), Some(&1));
        assert_eq!(k.connections_bypassed.get("overload"), Some(&1));
    }
}
