//! Inline serving: the splice (docs/design.md, "Inline serving"). A sans-IO state
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
//!
//! The parts: `seqmap` (R's numbers in S's space and S's acks back, pure and generic so uTP
//! can use it), `inject` (blocks waiting, inserted segments, retransmission), `conn` (one
//! connection and its `State`), `conns` (the table: cap, expiry, deadlines), `subscriber`
//! and `upstream` (each direction's frames), `counters`. This file ties them together: the
//! `Splicer` takes frames and time, and says when it next needs time (`poll_timeout`).

pub mod counters;
pub mod framer;
pub mod ledger;
pub mod mse;
pub mod seqmap;
pub mod source;

mod answers;
mod conn;
mod conns;
mod inject;
mod request;
mod subscriber;
mod upstream;
mod utp;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::swarm::pieces::FlowContext;
use crate::wire::peerwire::BlockRef;
use crate::wire::seq::SeqNum;
use crate::wire::tcpframe::TcpFrame;
use crate::wire::udpframe::UdpFrame;
use conn::Conn;
use conns::ConnTable;
pub use counters::ServeCounters;
use framer::Item;

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

/// Inline workers share one source (the piece store and its memory of served pieces).
impl<S: BlockSource + ?Sized> BlockSource for std::sync::Arc<S> {
    fn lookup(&self, info_hash: &[u8; 20], block: BlockRef, flow: &FlowContext) -> Lookup {
        (**self).lookup(info_hash, block, flow)
    }
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
    /// upstream (counted as bypass `queue_full`). The default leaves room for libtorrent's
    /// default request pipeline (up to 500 blocks, 8 MiB): a REQUEST forwarded to a remote
    /// that has gone quiet stalls that block until the client's request timeout.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_queued_bytes_per_connection: usize,
    /// The same, over all connections.
    #[serde(deserialize_with = "crate::size::bytes")]
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
    #[serde(deserialize_with = "crate::size::bytes")]
    pub piece_memory_bytes: usize,
    /// Answered blocks remembered per connection so that the subscriber's CANCELs of them
    /// can be hidden from the remote; beyond it the oldest is forgotten (counted as
    /// `answered_evicted`).
    pub max_answered_per_connection: usize,
    /// Insertion points kept per connection (each is a shift in the sequence translation);
    /// at the cap new REQUESTs go upstream (counted as `insertion_points_full`). Points the
    /// remote can no longer send below are folded away as it is acked.
    pub max_insertion_points: usize,
    /// Payload bytes of a packet the box inserts into a uTP connection, unless the remote
    /// already sent larger ones there. The default fits the IPv6 minimum MTU (1280) with
    /// IPv6, UDP and uTP headers, so it passes any access line; set it to what the
    /// subscriber side carries (1500-byte Ethernet: 1432 over IPv4).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub utp_packet_bytes: usize,
    /// Frames the bridge sends skip the host's queueing discipline (PACKET_QDISC_BYPASS):
    /// a little faster, but then packet taps on the port (tcpdump, a `peercache tap`
    /// beside the box) no longer see what the box sends. Off by default: an operator's
    /// tcpdump must show the truth.
    pub qdisc_bypass: bool,
    /// Inserted uTP packets unacked at once, at most (the box's own congestion window
    /// grows up to it; see docs/inline.md).
    pub utp_max_inflight_packets: u32,
    /// Forwarding workers, each a thread with its own share of the connections (by IP
    /// address pair, through a kernel fanout group per port), its own splice and its own
    /// analysis thread. 1 (the default) forwards on one thread; each worker wants about a
    /// core under load, and its analysis thread part of another. See docs/inline.md.
    #[serde(deserialize_with = "at_least_one_worker")]
    pub workers: usize,
}

/// `workers: 0` would forward nothing: refused where it is written, as the config's other
/// caps that 0 would turn off.
fn at_least_one_worker<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "workers: 0 is not allowed (it would turn the work off entirely); give at least 1",
        )),
        n => Ok(n),
    }
}

impl Default for InlineConfig {
    fn default() -> Self {
        InlineConfig {
            max_connections: 65_536,
            idle_timeout_secs: 900,
            max_queued_bytes_per_connection: 16 << 20,
            max_queued_bytes: 256 << 20,
            rto_ms: 200,
            max_retransmits: 12,
            overload_queue_frames: 6_144,
            engine_queue_frames: 8_192,
            piece_memory_bytes: 64 << 20,
            max_answered_per_connection: 1024,
            max_insertion_points: 4096,
            utp_packet_bytes: 1200,
            utp_max_inflight_packets: 512,
            qdisc_bypass: false,
            workers: 1,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ConnKey {
    sub: SocketAddr,
    rem: SocketAddr,
    /// Outermost VLAN id: the same addresses on two VLANs are two connections.
    vlan: Option<u16>,
}

impl ConnKey {
    fn of(from: Port, t: &TcpFrame) -> ConnKey {
        let (src, dst) = (
            SocketAddr::new(t.src(), t.tcp().src_port()),
            SocketAddr::new(t.dst(), t.tcp().dst_port()),
        );
        let (sub, rem) = match from {
            Port::Subscriber => (src, dst),
            Port::Upstream => (dst, src),
        };
        ConnKey {
            sub,
            rem,
            vlan: t.vlan(),
        }
    }
}

/// The splice over all connections of the bridge. Sans-IO: time comes in with every call
/// (microseconds, any monotonic clock), frames to send go out in `out`.
pub struct Splicer<S: BlockSource> {
    cfg: InlineConfig,
    source: S,
    conns: ConnTable<ConnKey, Conn>,
    /// uTP connections (the same caps, a table of their own).
    utp: ConnTable<utp::UtpKey, utp::Conn>,
    /// Bytes held by all connections (answered, inserted and not acked yet).
    queued_bytes: usize,
    overloaded: bool,
    counters: ServeCounters,
    /// Reused buffer for what the framers report.
    items: Vec<Item>,
}

impl<S: BlockSource> Splicer<S> {
    pub fn new(cfg: InlineConfig, source: S) -> Splicer<S> {
        Splicer {
            conns: ConnTable::new(cfg.max_connections, cfg.idle_timeout_secs),
            utp: ConnTable::new(cfg.max_connections, cfg.idle_timeout_secs),
            cfg,
            source,
            queued_bytes: 0,
            overloaded: false,
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

    /// Connections tracked (TCP and uTP).
    pub fn connections(&self) -> usize {
        self.conns.len() + self.utp.len()
    }

    /// The engine's queue is over its threshold: answer nothing new (fail-open).
    pub fn set_overloaded(&mut self, on: bool) {
        self.overloaded = on;
    }

    /// One frame received on `from` at `now`.
    pub fn on_frame(&mut self, now: u64, from: Port, frame: &[u8], out: &mut Vec<Emit>) {
        let Some(t) = TcpFrame::new_checked(frame) else {
            match UdpFrame::new_checked(frame) {
                Some(u) => self.on_udp_frame(now, from, &u, out),
                None => out.push(Emit::Original),
            }
            return;
        };
        let key = ConnKey::of(from, &t);
        if !self.conns.contains(&key) {
            // Only a first SYN opens a connection we can follow.
            let flags = t.tcp().flags();
            if !flags.syn || flags.ack {
                out.push(Emit::Original);
                return;
            }
            let (room, freed) = self.conns.make_room(now);
            self.queued_bytes = self.queued_bytes.saturating_sub(freed);
            if !room {
                self.counters.connection_bypassed(Bypass::TableFull);
                out.push(Emit::Original);
                return;
            }
            self.counters.connections += 1;
            self.conns.put(key, Conn::new(now), None);
        }
        let Some(mut c) = self.conns.take(&key) else {
            out.push(Emit::Original);
            return;
        };
        c.last_seen = now;
        match from {
            Port::Subscriber => self.on_subscriber_frame(now, &key, &mut c, &t, out),
            Port::Upstream => self.on_upstream_frame(now, &mut c, &t, out),
        }
        let closed = t.tcp().flags().rst || c.finished();
        self.file(now, key, c, closed);
        let freed = self.conns.periodic_sweep(now);
        self.queued_bytes = self.queued_bytes.saturating_sub(freed);
    }

    /// The earliest time the splice needs [`Splicer::handle_timeout`]: an inserted segment
    /// due for retransmission, or blocks that can go in. None: only frames wake it.
    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.conns.next_deadline(), self.utp.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers due at `now`: retransmit inserted bytes S has not acked, insert blocks that
    /// were waiting for a boundary or for window.
    pub fn handle_timeout(&mut self, now: u64, out: &mut Vec<Emit>) {
        for k in self.conns.due(now) {
            let Some(mut c) = self.conns.take(&k) else {
                continue;
            };
            let max_retransmits = self.cfg.max_retransmits;
            let (inj, to) = c.parts();
            inj.retransmit_due(
                now,
                to.as_ref(),
                max_retransmits,
                &mut self.queued_bytes,
                &mut self.counters,
                out,
            );
            if let Some(next) = c.r.boundary() {
                self.insert_into(now, &mut c, next, out);
            }
            self.file(now, k, c, false);
        }
        self.handle_utp_timeout(now, out);
    }

    /// Back into the table with its next deadline, or gone if it closed (only a frame
    /// closes a connection).
    fn file(&mut self, now: u64, key: ConnKey, mut c: Conn, closed: bool) {
        if closed {
            c.inj.release(&mut self.queued_bytes);
        } else {
            let deadline = c.deadline(now, &self.cfg);
            self.conns.put(key, c, deadline);
        }
    }

    /// Waiting blocks of `c` go in at R's point `p`, as far as S's window allows.
    fn insert_into(&mut self, now: u64, c: &mut Conn, p: SeqNum, out: &mut Vec<Emit>) {
        c.insert_at(
            now,
            p,
            &self.cfg,
            &mut self.queued_bytes,
            &mut self.counters,
            out,
        );
    }
}

#[cfg(test)]
mod tests;
