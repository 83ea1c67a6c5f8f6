//! Inline serving: the splice (../shared/DESIGN.md, "Inline serving"). A sans-IO state
//! machine fed every frame the bridge receives, with the port it came from and the time; it
//! says what to send where. For a plain BitTorrent TCP connection between a subscriber S and
//! a remote peer R:
//!
//! - S→R: a complete REQUEST (or a CANCEL of one we answer) for a block the cache holds
//!   verified is overwritten with 17 bytes R treats as nothing, so no S→R sequence number
//!   moves; S's acks and SACK edges are mapped back into R's sequence space, and its window
//!   shrunk by what we inserted and S has not acked yet.
//! - R→S: the PIECE is inserted at a message boundary of R's stream (a segment is split
//!   there if needed); from then on every R→S sequence number is shifted by what was
//!   inserted before it.
//! - The inserted bytes are ours: sent within S's window, retransmitted until S acks them,
//!   carrying timestamps (TSval echoes R's latest, TSecr S's).
//!
//! Fail-open: a connection that is not plaintext BitTorrent, that started before we saw it,
//! that had a capture gap or an ack we cannot explain, or arrives while the engine is
//! overloaded, is not served; a connection already spliced keeps its translation until it
//! closes. Frames the splice does not need to touch are forwarded as they came.

pub mod frame;
pub mod framer;
pub mod source;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::swarm::pieces::FlowContext;
use crate::wire::peerwire::{BlockRef, MAX_BLOCK};
use crate::wire::seq::SeqNum;
use frame::{Rewrite, SegmentSpec, TcpFrame, ACK, FIN, PSH, RST, SYN};
use framer::{Framer, Item, NOOP17};

/// The bridge's two ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    Subscriber,
    Upstream,
}

impl Port {
    pub fn other(self) -> Port {
        match self {
            Port::Subscriber => Port::Upstream,
            Port::Upstream => Port::Subscriber,
        }
    }
}

/// What to send, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Emit {
    /// The frame as it came, out of the other port.
    Original,
    Frame(Port, Vec<u8>),
}

/// A block the cache can answer with, or why not.
pub enum Lookup {
    /// The block's bytes, cut from a piece that was verified when read.
    Hit(Vec<u8>),
    /// Not in the cache (a miss).
    Miss,
    /// Cached but the policy says not to serve it.
    Refused,
}

/// Where served blocks come from (the piece store, through the policy rules).
pub trait BlockSource {
    fn lookup(&self, info_hash: &[u8; 20], block: BlockRef, flow: &FlowContext) -> Lookup;
}

/// Caps and timers of the splice (config section `inline`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct InlineConfig {
    /// Connections tracked at once; new ones beyond it are forwarded untouched (counted).
    /// Tracked connections are never evicted while they live, so a spliced one keeps its
    /// translation; idle ones are dropped after `idle_timeout_secs`.
    pub max_connections: usize,
    pub idle_timeout_secs: u64,
    /// Bytes waiting to be inserted or not yet acked, per connection; past it REQUESTs go
    /// upstream (counted as bypass `queue_full`).
    pub max_queued_bytes_per_connection: usize,
    /// The same, over all connections.
    pub max_queued_bytes: usize,
    /// First retransmission timeout of inserted bytes, doubled on each retry up to 4 s.
    pub rto_ms: u64,
    /// Retransmissions of one inserted segment before giving up (counted).
    pub max_retransmits: u32,
    /// Engine queue depth (frames waiting for analysis) above which no new REQUEST is
    /// answered: the box forwards (fail-open) until the engine catches up.
    pub overload_queue_frames: usize,
    /// Frames the analysis queue holds at most; beyond it frames are forwarded but not
    /// analysed (counted as engine drops).
    pub engine_queue_frames: usize,
    /// Verified pieces kept in memory for serving their other blocks without a disk read.
    pub piece_memory_bytes: usize,
}

impl Default for InlineConfig {
    fn default() -> Self {
        InlineConfig {
            max_connections: 65_536,
            idle_timeout_secs: 900,
            max_queued_bytes_per_connection: 4 << 20,
            max_queued_bytes: 256 << 20,
            rto_ms: 200,
            max_retransmits: 12,
            overload_queue_frames: 6_144,
            engine_queue_frames: 8_192,
            piece_memory_bytes: 64 << 20,
        }
    }
}

/// Why a REQUEST was not answered from the cache although it might have been.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bypass {
    /// The connection was already open when the box started (no SYN seen).
    Midstream,
    /// Encrypted (MSE/PE) or not BitTorrent: no plaintext handshake.
    NotBittorrent,
    /// A capture gap or reordering in the connection: its framing is no longer certain.
    Gap,
    /// An ack for bytes the box never forwarded.
    UnexpectedAck,
    /// The engine fell behind; fail-open until it catches up.
    Overload,
    /// The connection's (or the box's) insert queue is full.
    QueueFull,
    /// The policy rules do not allow serving this swarm.
    Policy,
    /// The connection table was full when the connection opened.
    TableFull,
}

impl Bypass {
    pub fn as_str(self) -> &'static str {
        match self {
            Bypass::Midstream => "midstream",
            Bypass::NotBittorrent => "not_bittorrent",
            Bypass::Gap => "gap",
            Bypass::UnexpectedAck => "unexpected_ack",
            Bypass::Overload => "overload",
            Bypass::QueueFull => "queue_full",
            Bypass::Policy => "policy",
            Bypass::TableFull => "table_full",
        }
    }
}

/// What the splice did (exported in the inline report and `/metrics`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServeCounters {
    /// TCP connections seen opening (SYN) and tracked.
    pub connections: u64,
    /// Of those, connections into which at least one block was inserted.
    pub connections_spliced: u64,
    /// REQUESTs from subscribers seen on tracked connections.
    pub requests: u64,
    /// REQUESTs answered from the cache (= hits), their blocks and payload bytes.
    pub served_blocks: u64,
    pub served_bytes: u64,
    /// REQUESTs for blocks not in the cache (forwarded upstream).
    pub misses: u64,
    pub miss_bytes: u64,
    /// REQUESTs forwarded although they might have been answered, by reason.
    pub bypassed: BTreeMap<String, u64>,
    /// Connections that stopped being served, by reason (each connection once).
    pub connections_bypassed: BTreeMap<String, u64>,
    /// REQUESTs split across two segments (the first part already forwarded): answered
    /// from the cache and also left to the remote peer (which may send the block as well).
    pub split_requests_answered: u64,
    /// CANCELs of answered blocks replaced by no-ops.
    pub cancels_absorbed: u64,
    /// Segments the box sent toward subscribers carrying inserted bytes (first sends).
    pub injected_segments: u64,
    pub retransmitted_segments: u64,
    pub retransmitted_bytes: u64,
    /// Inserted segments given up after `max_retransmits` (the subscriber stopped acking).
    pub retransmits_abandoned: u64,
    /// Segments rewritten in place (sequence/ack translation, substitutions).
    pub rewritten_segments: u64,
    /// Remote segments split at an insertion point.
    pub split_segments: u64,
    /// Remote segments that had to be split but arrived with a bad checksum: dropped, as
    /// the subscriber would have dropped them.
    pub bad_checksum_dropped: u64,
    /// Block reads that failed (a piece that no longer verifies is not served).
    pub read_failures: u64,
    /// Frames that could not be analysed because the engine queue was full (forwarded).
    pub engine_dropped: u64,
}

impl ServeCounters {
    fn bypass(&mut self, why: Bypass) {
        *self.bypassed.entry(why.as_str().into()).or_default() += 1;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    sub: SocketAddr,
    rem: SocketAddr,
    /// Outermost VLAN id: the same addresses on two VLANs are two connections.
    vlan: Option<u16>,
}

/// One sender's side of a connection.
#[derive(Debug)]
struct Half {
    syn: bool,
    /// Next in-order sequence number expected from this sender; None once tracking stopped.
    next: Option<SeqNum>,
    framer: Framer,
    mss: u16,
    wscale: u8,
    /// The SYN carried a window scale option (scaling applies only if both SYNs did).
    ws_offered: bool,
    ts: bool,
    tsval: u32,
    fin: bool,
    info_hash: Option<[u8; 20]>,
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

    fn on_syn(&mut self, t: &TcpFrame, frame: &[u8]) {
        let o = t.syn_options(frame);
        self.syn = true;
        self.next = Some(t.seq + 1);
        self.mss = o.mss.unwrap_or(536).max(64);
        self.wscale = o.wscale.unwrap_or(0);
        self.ws_offered = o.wscale.is_some();
        self.ts = o.timestamps;
    }
}

/// A block answered, waiting for room in the subscriber's window.
#[derive(Debug)]
struct Pending {
    block: BlockRef,
    data: Vec<u8>,
}

/// Inserted bytes in flight (S's sequence space).
#[derive(Debug)]
struct Injected {
    seq: SeqNum,
    payload: Vec<u8>,
    sent: u64,
    rto: u64,
    tries: u32,
}

#[derive(Debug)]
struct Conn {
    s: Half,
    r: Half,
    bypass: Option<Bypass>,
    last_seen: u64,
    /// Insertion points in R's sequence space with the total inserted up to and including
    /// them, ascending. Points R can no longer send below are folded into `base_delta`.
    inserts: VecDeque<(SeqNum, u32)>,
    base_delta: u32,
    /// Starts of the 17-byte ranges of S's stream we replaced (S's retransmissions of them
    /// must be replaced the same way); dropped once R acked them.
    replaced: VecDeque<SeqNum>,
    /// Blocks answered (for CANCELs), most recent last; bounded.
    answered: VecDeque<BlockRef>,
    pending: VecDeque<Pending>,
    unacked: VecDeque<Injected>,
    queued_bytes: usize,
    /// Highest ack from S (S's view of R→S space), its window in bytes.
    s_ack: Option<SeqNum>,
    s_win: u32,
    dupacks: u32,
    /// Highest ack R sent (S→R space is never translated) and its latest window field.
    r_ack: SeqNum,
    r_ack_seen: bool,
    r_win: u16,
    /// Highest ack we passed to R (R-space): R never sends below it again.
    r_una: Option<SeqNum>,
    /// Link and IP headers of an R→S frame, for the segments we build.
    template: Option<(Vec<u8>, TcpFrame)>,
    spliced: bool,
    closed: bool,
}

impl Conn {
    fn new(now: u64) -> Conn {
        Conn {
            s: Half::new(),
            r: Half::new(),
            bypass: None,
            last_seen: now,
            inserts: VecDeque::new(),
            base_delta: 0,
            replaced: VecDeque::new(),
            answered: VecDeque::new(),
            pending: VecDeque::new(),
            unacked: VecDeque::new(),
            queued_bytes: 0,
            s_ack: None,
            s_win: 0,
            dupacks: 0,
            r_ack: SeqNum(0),
            r_ack_seen: false,
            r_win: 0,
            r_una: None,
            template: None,
            spliced: false,
            closed: false,
        }
    }

    /// Whether any translation applies.
    fn translating(&self) -> bool {
        self.base_delta != 0 || !self.inserts.is_empty()
    }

    fn total_delta(&self) -> u32 {
        self.inserts.back().map_or(self.base_delta, |&(_, d)| d)
    }

    /// Bytes inserted before R's byte `r` (R-space → S-space shift).
    fn delta_at(&self, r: SeqNum) -> u32 {
        self.inserts
            .iter()
            .rev()
            .find(|&&(p, _)| p <= r)
            .map_or(self.base_delta, |&(_, d)| d)
    }

    fn s_of(&self, r: SeqNum) -> SeqNum {
        r + self.delta_at(r)
    }

    /// S's ack (S-space) in R's space; an ack inside inserted bytes maps to the insertion
    /// point.
    fn r_of_ack(&self, a: SeqNum) -> SeqNum {
        let mut before = self.base_delta;
        for &(p, after) in &self.inserts {
            let (start, end) = (p + before, p + after);
            if a < start {
                break;
            }
            if a < end {
                return p;
            }
            before = after;
        }
        SeqNum(a.0.wrapping_sub(before))
    }

    /// Once both SYNs are seen: window scaling and timestamps apply only if both ends
    /// offered them (RFC 7323).
    fn settle_options(&mut self) {
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

    fn servable(&self) -> Result<[u8; 20], Bypass> {
        if let Some(b) = self.bypass {
            return Err(b);
        }
        match (self.s.info_hash, self.r.info_hash) {
            (Some(a), Some(b)) if a == b && self.template.is_some() && self.s_ack.is_some() => {
                Ok(a)
            }
            _ => Err(Bypass::NotBittorrent),
        }
    }
}

/// The splice over all connections of the bridge.
pub struct Splicer<S: BlockSource> {
    cfg: InlineConfig,
    source: S,
    conns: HashMap<ConnKey, Conn>,
    queued_bytes: usize,
    overloaded: bool,
    last_sweep: u64,
    counters: ServeCounters,
    items: Vec<Item>,
}

/// Blocks remembered per connection for CANCELs.
const ANSWERED_MAX: usize = 1024;
/// Insertion points kept per connection before new REQUESTs are forwarded instead.
const INSERTS_MAX: usize = 4096;

impl<S: BlockSource> Splicer<S> {
    pub fn new(cfg: InlineConfig, source: S) -> Splicer<S> {
        Splicer {
            cfg,
            source,
            conns: HashMap::new(),
            queued_bytes: 0,
            overloaded: false,
            last_sweep: 0,
            counters: ServeCounters::default(),
            items: Vec::new(),
        }
    }

    pub fn counters(&self) -> &ServeCounters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut ServeCounters {
        &mut self.counters
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The engine's queue is over its threshold: answer nothing new (fail-open).
    pub fn set_overloaded(&mut self, on: bool) {
        self.overloaded = on;
    }

    /// One frame received on `from` at `now` (microseconds, any monotonic clock).
    pub fn on_frame(&mut self, now: u64, from: Port, frame: &[u8], out: &mut Vec<Emit>) {
        let Some(t) = TcpFrame::parse(frame) else {
            out.push(Emit::Original);
            return;
        };
        let key = match from {
            Port::Subscriber => ConnKey {
                sub: SocketAddr::new(t.src, t.sport),
                rem: SocketAddr::new(t.dst, t.dport),
                vlan: t.vlan,
            },
            Port::Upstream => ConnKey {
                sub: SocketAddr::new(t.dst, t.dport),
                rem: SocketAddr::new(t.src, t.sport),
                vlan: t.vlan,
            },
        };
        if !self.conns.contains_key(&key) {
            // Only a first SYN opens a connection we can follow.
            if !t.has(SYN) || t.has(ACK) {
                out.push(Emit::Original);
                return;
            }
            if self.conns.len() >= self.cfg.max_connections {
                self.sweep(now);
            }
            if self.conns.len() >= self.cfg.max_connections {
                *self
                    .counters
                    .connections_bypassed
                    .entry(Bypass::TableFull.as_str().into())
                    .or_default() += 1;
                out.push(Emit::Original);
                return;
            }
            self.counters.connections += 1;
            self.conns.insert(key, Conn::new(now));
        }
        let Some(mut c) = self.conns.remove(&key) else {
            out.push(Emit::Original);
            return;
        };
        c.last_seen = now;
        match from {
            Port::Subscriber => self.on_subscriber_frame(now, &key, &mut c, frame, &t, out),
            Port::Upstream => self.on_upstream_frame(now, &mut c, frame, &t, out),
        }
        if t.has(RST) || (c.s.fin && c.r.fin && c.unacked.is_empty()) {
            c.closed = true;
        }
        if c.closed {
            self.release(&mut c);
        } else {
            self.conns.insert(key, c);
        }
        if now.saturating_sub(self.last_sweep) >= 1_000_000 {
            self.last_sweep = now;
            self.sweep(now);
        }
    }

    /// Timers: retransmit inserted bytes S has not acked, insert blocks that were waiting for
    /// window. Call every few milliseconds.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Emit>) {
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.unacked.is_empty() || !c.pending.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let Some(mut c) = self.conns.remove(&k) else {
                continue;
            };
            self.retransmit_due(now, &mut c, out);
            if let Some(next) = c.r.next {
                if c.r.framer.at_boundary() {
                    self.insert_at(now, &mut c, next, out);
                }
            }
            self.conns.insert(k, c);
        }
    }

    fn release(&mut self, c: &mut Conn) {
        self.queued_bytes = self.queued_bytes.saturating_sub(c.queued_bytes);
        c.queued_bytes = 0;
    }

    /// Drop connections idle past the timeout: the only way a slot frees up (live
    /// connections are never evicted, so a spliced one keeps its translation).
    fn sweep(&mut self, now: u64) {
        let idle = self.cfg.idle_timeout_secs.saturating_mul(1_000_000);
        let mut freed = 0;
        self.conns.retain(|_, c| {
            let keep = now.saturating_sub(c.last_seen) < idle;
            if !keep {
                freed += c.queued_bytes;
            }
            keep
        });
        self.queued_bytes = self.queued_bytes.saturating_sub(freed);
    }

    fn stop_serving(&mut self, c: &mut Conn, why: Bypass) {
        if c.bypass.is_none() {
            c.bypass = Some(why);
            *self
                .counters
                .connections_bypassed
                .entry(why.as_str().into())
                .or_default() += 1;
        }
    }

    fn on_subscriber_frame(
        &mut self,
        now: u64,
        key: &ConnKey,
        c: &mut Conn,
        frame: &[u8],
        t: &TcpFrame,
        out: &mut Vec<Emit>,
    ) {
        if t.has(SYN) {
            c.s.on_syn(t, frame);
            c.settle_options();
            out.push(Emit::Original);
            return;
        }
        if !c.s.syn {
            self.stop_serving(c, Bypass::Midstream);
        }
        if let Some((val, _)) = t.timestamps(frame) {
            c.s.tsval = val;
        }
        let payload = t.payload(frame);
        let mut subst: Vec<usize> = Vec::new();
        // In-order tracking of S's stream: REQUESTs and CANCELs.
        if let Some(next) = c.s.next {
            let off = t.seq.diff(next);
            if off > 0 && !payload.is_empty() {
                c.s.next = None;
                self.stop_serving(c, Bypass::Gap);
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
                                c.replaced.push_back(t.seq + at as u32);
                            }
                        }
                        Item::Boundary { .. } => {}
                    }
                }
                self.items = items;
                if c.s.framer.broken() {
                    self.stop_serving(c, Bypass::NotBittorrent);
                }
            }
            if t.has(FIN) {
                c.s.fin = true;
            }
        }
        // S retransmitting bytes we replaced before: replace them again.
        let (lo, hi) = (t.seq, t.seq + payload.len() as u32);
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
        if t.has(ACK) {
            let ack = t.ack;
            let win = u32::from(t.window) << c.s.wscale.min(14);
            if let Some(sent_end) = c.r.next.map(|n| c.s_of(n) + u32::from(c.r.fin)) {
                if ack > sent_end && c.translating() {
                    self.stop_serving(c, Bypass::UnexpectedAck);
                }
            }
            self.on_sub_ack(now, c, ack, win, payload.is_empty(), out);
            if c.translating() {
                let a = c.r_of_ack(ack);
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
            let mut w = Rewrite::new(frame, *t);
            for at in &subst {
                w.set_payload(*at, &NOOP17);
            }
            if let Some(a) = ack_r {
                w.set_ack(a);
                // R may fill S's window up to (a + window) in its own space, which is later in
                // S's space by what we inserted and S has not acked yet: shrink the window by
                // that much so R does not overrun S.
                let excess = (a + c.total_delta()).diff(t.ack).max(0) as u32;
                if excess > 0 {
                    let scale = c.s.wscale.min(14);
                    let bytes = (u32::from(t.window) << scale).saturating_sub(excess);
                    w.set_window((bytes >> scale).min(u32::from(u16::MAX)) as u16);
                }
                w.map_sack(|e| c.r_of_ack(e));
            }
            self.counters.rewritten_segments += 1;
            out.push(Emit::Frame(Port::Upstream, w.finish()));
        }
        // Blocks just answered go in now if R's stream is at a message boundary.
        if !c.pending.is_empty() {
            if let Some(next) = c.r.next {
                if c.r.framer.at_boundary() {
                    self.insert_at(now, c, next, out);
                }
            }
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
            let ours = c.answered.iter().rev().any(|b| *b == block);
            if !ours {
                return None;
            }
            let mut dropped = 0;
            c.pending.retain(|p| {
                let keep = p.block != block;
                if !keep {
                    dropped += p.data.len();
                }
                keep
            });
            c.queued_bytes = c.queued_bytes.saturating_sub(dropped);
            self.queued_bytes = self.queued_bytes.saturating_sub(dropped);
            let at = start?;
            self.counters.cancels_absorbed += 1;
            return Some(at);
        }
        self.counters.requests += 1;
        let ih = match c.servable() {
            Ok(ih) => ih,
            Err(b) => {
                self.counters.bypass(b);
                return None;
            }
        };
        if self.overloaded {
            self.counters.bypass(Bypass::Overload);
            return None;
        }
        let len = block.length as usize;
        if c.queued_bytes + len > self.cfg.max_queued_bytes_per_connection
            || self.queued_bytes + len > self.cfg.max_queued_bytes
            || c.inserts.len() >= INSERTS_MAX
        {
            self.counters.bypass(Bypass::QueueFull);
            return None;
        }
        let flow = FlowContext {
            subscriber: key.sub,
            upstream: key.rem,
            vlan: key.vlan,
        };
        match self.source.lookup(&ih, block, &flow) {
            Lookup::Hit(data) if data.len() == len => {
                c.queued_bytes += len;
                self.queued_bytes += len;
                if c.answered.len() >= ANSWERED_MAX {
                    c.answered.pop_front();
                }
                c.answered.push_back(block);
                c.pending.push_back(Pending { block, data });
                match start {
                    Some(at) => Some(at),
                    None => {
                        // Its first bytes already went upstream: it cannot be hidden from R
                        // any more. Answer it anyway (a remote that went silent must not
                        // stall the download); if R answers too, S gets the block twice and
                        // drops the second copy as unrequested.
                        self.counters.split_requests_answered += 1;
                        None
                    }
                }
            }
            Lookup::Hit(_) => {
                self.counters.read_failures += 1;
                None
            }
            Lookup::Miss => {
                self.counters.misses += 1;
                self.counters.miss_bytes += u64::from(block.length);
                None
            }
            Lookup::Refused => {
                self.counters.bypass(Bypass::Policy);
                None
            }
        }
    }

    /// S acked up to `ack` with `win` bytes of window: retire inserted bytes, fast
    /// retransmit on three duplicate acks, remember the window.
    fn on_sub_ack(
        &mut self,
        now: u64,
        c: &mut Conn,
        ack: SeqNum,
        win: u32,
        pure: bool,
        out: &mut Vec<Emit>,
    ) {
        let advanced = c.s_ack.is_none_or(|a| ack > a);
        if advanced {
            c.s_ack = Some(ack);
            c.dupacks = 0;
        } else if c.s_ack == Some(ack) && pure && c.unacked.front().is_some_and(|i| i.seq == ack) {
            c.dupacks += 1;
            if c.dupacks == 3 {
                if let Some(first) = c.unacked.front_mut() {
                    first.sent = 0; // due now
                }
                self.retransmit_due(now, c, out);
            }
        }
        c.s_win = win;
        while let Some(front) = c.unacked.front() {
            if front.seq + front.payload.len() as u32 <= ack {
                let n = front.payload.len();
                c.unacked.pop_front();
                c.queued_bytes = c.queued_bytes.saturating_sub(n);
                self.queued_bytes = self.queued_bytes.saturating_sub(n);
            } else {
                break;
            }
        }
        // Insertion points R can no longer send below fold into the base shift.
        if let Some(una) = c.r_una {
            while c.inserts.len() >= 2 && c.inserts[1].0 <= una {
                if let Some((_, d)) = c.inserts.pop_front() {
                    c.base_delta = d;
                }
            }
        }
    }

    fn on_upstream_frame(
        &mut self,
        now: u64,
        c: &mut Conn,
        frame: &[u8],
        t: &TcpFrame,
        out: &mut Vec<Emit>,
    ) {
        if t.has(SYN) {
            c.r.on_syn(t, frame);
            c.settle_options();
        }
        if !c.r.syn {
            self.stop_serving(c, Bypass::Midstream);
        }
        if t.has(ACK) && (!c.r_ack_seen || t.ack > c.r_ack) {
            c.r_ack = t.ack;
            c.r_ack_seen = true;
        }
        c.r_win = t.window;
        if let Some((val, _)) = t.timestamps(frame) {
            c.r.tsval = val;
        }
        if c.template.is_none() || !t.has(SYN) {
            c.template = Some((frame[..t.l4].to_vec(), *t));
        }
        let payload = t.payload(frame);
        let len = payload.len();
        // In-order tracking of R's stream: where its messages end.
        let mut points: Vec<usize> = Vec::new();
        if !t.has(SYN) {
            if let Some(next) = c.r.next {
                let off = t.seq.diff(next);
                if off > 0 && len > 0 {
                    c.r.next = None;
                    self.stop_serving(c, Bypass::Gap);
                } else if len > 0 && (-off) < len as i32 {
                    let skip = (-off) as usize;
                    if skip == 0 && c.r.framer.at_boundary() {
                        points.push(0);
                    }
                    let mut items = std::mem::take(&mut self.items);
                    items.clear();
                    c.r.framer.feed(&payload[skip..], &mut items);
                    for it in &items {
                        match *it {
                            Item::Handshake { info_hash, end } => {
                                c.r.info_hash = Some(info_hash);
                                points.push(end + skip);
                            }
                            Item::Boundary { end } => points.push(end + skip),
                            Item::Request { .. } => {}
                        }
                    }
                    self.items = items;
                    c.r.next = Some(next + (len - skip) as u32);
                    if c.r.framer.broken() {
                        self.stop_serving(c, Bypass::NotBittorrent);
                    }
                }
                if t.has(FIN) {
                    c.r.fin = true;
                }
            }
        }
        // Where to insert the blocks waiting (the first boundary inside this segment; the
        // end of the segment is handled after it, as "R's stream is at a boundary").
        let insert_here = if !c.pending.is_empty() {
            points.iter().copied().find(|&p| p < len)
        } else {
            None
        };
        if insert_here.is_none() && !c.translating() {
            out.push(Emit::Original);
        } else {
            self.emit_upstream_segment(now, c, frame, t, insert_here, out);
        }
        if !c.pending.is_empty() {
            if let Some(next) = c.r.next {
                if c.r.framer.at_boundary() && insert_here.is_none() {
                    self.insert_at(now, c, next, out);
                }
            }
        }
    }

    /// An R→S segment, translated into S's space, split at insertion points inside it (and
    /// at `insert_here`, where the waiting blocks go in).
    fn emit_upstream_segment(
        &mut self,
        now: u64,
        c: &mut Conn,
        frame: &[u8],
        t: &TcpFrame,
        insert_here: Option<usize>,
        out: &mut Vec<Emit>,
    ) {
        let len = t.end - t.data;
        let a = t.seq;
        // Cut points: existing insertion points strictly inside the payload, plus ours.
        let mut cuts: Vec<usize> = c
            .inserts
            .iter()
            .filter_map(|&(p, _)| {
                let d = p.diff(a);
                (d > 0 && (d as usize) < len).then_some(d as usize)
            })
            .collect();
        if let Some(q) = insert_here {
            if q > 0 && !cuts.contains(&q) {
                cuts.push(q);
            }
        }
        cuts.sort_unstable();
        if !cuts.is_empty() && !t.checksum_ok(frame) {
            self.counters.bad_checksum_dropped += 1;
            return;
        }
        let mut start = 0;
        let mut bounds = cuts.clone();
        bounds.push(len);
        if insert_here == Some(0) {
            self.insert_at(now, c, a, out);
        }
        for end in bounds {
            let piece_seq = a + start as u32;
            let s_seq = c.s_of(piece_seq);
            if cuts.is_empty() {
                let mut w = Rewrite::new(frame, *t);
                w.set_seq(s_seq);
                self.counters.rewritten_segments += 1;
                out.push(Emit::Frame(Port::Subscriber, w.finish()));
            } else {
                out.push(Emit::Frame(
                    Port::Subscriber,
                    frame::slice_segment(frame, t, start..end, s_seq),
                ));
            }
            if insert_here == Some(end) && end > 0 && end < len {
                self.insert_at(now, c, a + end as u32, out);
            }
            start = end;
        }
        if !cuts.is_empty() {
            self.counters.split_segments += 1;
        }
    }

    /// Insert as many waiting blocks as S's window allows at R's sequence point `p` (a
    /// message boundary of R's stream, at or after every earlier insertion point).
    fn insert_at(&mut self, now: u64, c: &mut Conn, p: SeqNum, out: &mut Vec<Emit>) {
        // Nothing goes after R's FIN, nor into a connection being reset.
        if c.pending.is_empty() || c.inserts.len() >= INSERTS_MAX || c.r.fin || c.closed {
            return;
        }
        let (Some(s_ack), Some((tmpl, tt))) = (c.s_ack, c.template.as_ref()) else {
            return;
        };
        if c.inserts.back().is_some_and(|&(q, _)| p < q) {
            return;
        }
        let before = c.delta_at(p);
        let s_start = p + before;
        let right = s_ack + c.s_win;
        let mut bytes: Vec<u8> = Vec::new();
        let mut blocks = 0u64;
        let mut payload_bytes = 0u64;
        while let Some(b) = c.pending.front() {
            let msg_len = 13 + b.data.len();
            if (s_start + (bytes.len() + msg_len) as u32) > right {
                break;
            }
            let Some(b) = c.pending.pop_front() else {
                break;
            };
            bytes.extend_from_slice(&(9 + b.data.len() as u32).to_be_bytes());
            bytes.push(7);
            bytes.extend_from_slice(&b.block.index.to_be_bytes());
            bytes.extend_from_slice(&b.block.begin.to_be_bytes());
            bytes.extend_from_slice(&b.data);
            // The queue charge moves from the block to its header-carrying segments.
            c.queued_bytes += 13;
            self.queued_bytes += 13;
            blocks += 1;
            payload_bytes += b.data.len() as u64;
        }
        if bytes.is_empty() {
            return;
        }
        let total = before + bytes.len() as u32;
        match c.inserts.back_mut() {
            Some(last) if last.0 == p => last.1 = total,
            _ => c.inserts.push_back((p, total)),
        }
        let ts = (c.s.ts && c.r.ts).then_some((c.r.tsval, c.s.tsval));
        let opt = if ts.is_some() { 12 } else { 0 };
        let seg = usize::from(c.s.mss).saturating_sub(opt).max(64);
        let mut seq = s_start;
        let (tmpl, tt) = (tmpl.clone(), *tt);
        for chunk in bytes.chunks(seg) {
            let f = frame::build(
                &tmpl,
                &tt,
                &SegmentSpec {
                    seq,
                    ack: c.r_ack,
                    flags: ACK | PSH,
                    window: c.r_win,
                    ts,
                    payload: chunk,
                },
            );
            out.push(Emit::Frame(Port::Subscriber, f));
            c.unacked.push_back(Injected {
                seq,
                payload: chunk.to_vec(),
                sent: now,
                rto: self.cfg.rto_ms.saturating_mul(1000).max(1000),
                tries: 0,
            });
            self.counters.injected_segments += 1;
            seq = seq + chunk.len() as u32;
        }
        if !c.spliced {
            c.spliced = true;
            self.counters.connections_spliced += 1;
        }
        self.counters.served_blocks += blocks;
        self.counters.served_bytes += payload_bytes;
    }

    fn retransmit_due(&mut self, now: u64, c: &mut Conn, out: &mut Vec<Emit>) {
        let Some((tmpl, tt)) = c.template.as_ref() else {
            return;
        };
        let ts = (c.s.ts && c.r.ts).then_some((c.r.tsval, c.s.tsval));
        let mut abandoned = 0;
        for inj in c.unacked.iter_mut() {
            if now < inj.sent.saturating_add(inj.rto) {
                continue;
            }
            if inj.tries >= self.cfg.max_retransmits {
                abandoned += 1;
                continue;
            }
            inj.tries += 1;
            inj.sent = now;
            inj.rto = (inj.rto * 2).min(4_000_000);
            out.push(Emit::Frame(
                Port::Subscriber,
                frame::build(
                    tmpl,
                    tt,
                    &SegmentSpec {
                        seq: inj.seq,
                        ack: c.r_ack,
                        flags: ACK | PSH,
                        window: c.r_win,
                        ts,
                        payload: &inj.payload,
                    },
                ),
            ));
            self.counters.retransmitted_segments += 1;
            self.counters.retransmitted_bytes += inj.payload.len() as u64;
        }
        if abandoned > 0 {
            let max = self.cfg.max_retransmits;
            let mut freed = 0;
            c.unacked.retain(|i| {
                let keep = i.tries < max || now < i.sent.saturating_add(i.rto);
                if !keep {
                    freed += i.payload.len();
                }
                keep
            });
            c.queued_bytes = c.queued_bytes.saturating_sub(freed);
            self.queued_bytes = self.queued_bytes.saturating_sub(freed);
            self.counters.retransmits_abandoned += abandoned;
        }
    }
}

#[cfg(test)]
mod tests;
