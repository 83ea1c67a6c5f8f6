//! The sans-IO engine: fed `(timestamp, frame)`, it decodes, tracks flows, reassembles,
//! parses the peer wire and counts. It does no I/O and reads no clock: replay, tap and
//! inline differ only in where frames come from and what is done with the verdict.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sha1::{Digest, Sha1};

use crate::config::Config;
use crate::flow::ipfrag::{Defragmenter, FragResult};
use crate::flow::table::FlowTable;
use crate::flow::tcp::{Budget, Chunk, ReasmCounters, ReasmLimits, Reassembler};
use crate::flow::utp::{UtpCounters, UtpLimits, UtpReasm};
use crate::flow::{Dir, FlowKey};
use crate::peerwire::conn::{Class, ConnState};
use crate::peerwire::{Event, ParserLimits, StreamParser};
use crate::report::{hex, Stats, StreamRecord, SwarmStats};
use crate::swarm::metadata::MetadataAssembler;
use crate::swarm::pieces::FlowContext;
use crate::swarm::{MemorySink, PieceSink, Pieces, Registry, Source};
use crate::wire::link::{self, Decoded, LinkType, TcpSegment, Transport, UdpDatagram};
use crate::wire::peerwire::{self, Message};
use crate::wire::utp::{UtpPacket, UtpType};

/// What to do with the frame that was handed in. Replay and tap ignore it; inline obeys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward,
}

/// Sweep idle flows at most this often, in packet time.
const SWEEP_MICROS: u64 = 1_000_000;

pub struct Engine {
    core: Core,
    tcp: FlowTable<FlowKey, TcpFlow>,
    udp: FlowTable<FlowKey, UdpFlow>,
    defrag: Defragmenter,
    last_sweep: u64,
}

/// What engines (workers) share: metainfo learnt anywhere, and the piece cache.
#[derive(Clone)]
pub struct Shared {
    pub registry: Arc<Registry>,
    pub sink: Arc<dyn PieceSink + Send + Sync>,
    /// The policy rules in front of `sink` (the same object), when a rules file is in
    /// force: for reloads and the per-rule counts.
    pub rules: Option<Arc<crate::rules::RulesSink>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            registry: Arc::new(Registry::default()),
            sink: Arc::new(MemorySink::default()),
            rules: None,
        }
    }
}

struct Core {
    limits: ReasmLimits,
    ulimits: UtpLimits,
    budget: Budget,
    reasm: ReasmCounters,
    utp: UtpCounters,
    app: App,
}

/// Everything above reassembly: what the per-connection code needs while the flow table
/// and the reassemblers are borrowed.
struct App {
    cfg: Config,
    plim: ParserLimits,
    stats: Stats,
    blocks_tracked: usize,
    shared: Shared,
    pieces: Pieces,
    metadata: MetadataAssembler,
    /// Bytes of partly received blocks held over all connections.
    block_bytes: usize,
}

/// A PIECE message's block being received, kept until complete.
struct BlockBuf {
    index: u32,
    begin: u32,
    length: u32,
    data: Vec<u8>,
}

/// A UDP flow: being probed for uTP, followed as uTP, or not ours.
enum UdpFlow {
    Probe(Box<UtpProbe>),
    Utp(Box<UtpFlow>),
    /// A uTP connection that ended (or is not ours): its stragglers are only counted.
    UtpDone,
    Other,
}

/// Evidence gathered before calling a UDP flow uTP: a single plausible header is not
/// enough (DNS ids pass the header checks one time in fifty).
#[derive(Default)]
struct UtpProbe {
    /// uTP-looking packets seen.
    packets: u8,
    ids: [Option<u16>; 2],
    /// (sender, connection id, seq_nr) of a SYN.
    syn: Option<(Dir, u16, u16)>,
    /// Per direction: (connection id, last seq_nr, run length) of packets that agree.
    runs: [Option<(u16, u16, u8)>; 2],
    held: Vec<(Dir, Vec<u8>)>,
}

/// uTP-looking datagrams examined before a flow is given up as not uTP.
const UTP_PROBE_PACKETS: u8 = 8;

struct UtpFlow {
    reasm: [UtpReasm; 2],
    conn: Conn,
    /// The connection's start (SYN) was seen: both streams start at their first byte.
    syn_seen: bool,
    syn_id: Option<u16>,
    fin: [bool; 2],
}
enum TcpFlow {
    Active(Box<ActiveTcp>),
    /// Not ours (not BitTorrent, or encrypted): remembered only so its packets cost nothing.
    Ignored,
}

struct ActiveTcp {
    reasm: [Reassembler; 2],
    conn: Conn,
}

/// Engine-side view of a connection: the parsers, the protocol state, and bookkeeping.
struct Conn {
    key: FlowKey,
    parsers: [Option<StreamParser>; 2],
    blocks: [Option<BlockBuf>; 2],
    state: ConnState,
    /// Whether the sender of each direction is a subscriber.
    sub_sender: [bool; 2],
    counted_bt: bool,
    counted_enc: bool,
    counted_plain_after_enc: bool,
    /// Carried over uTP (counted as such) rather than TCP.
    utp: bool,
    hashers: Option<Box<[(Sha1, u64); 2]>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Expired,
    Evicted,
    Drained,
}

impl Engine {
    pub fn new(cfg: Config) -> Engine {
        Self::with_shared(cfg, Shared::default())
    }

    pub fn with_shared(cfg: Config, shared: Shared) -> Engine {
        let limits = ReasmLimits {
            max_ooo_bytes: cfg.reassembly.max_ooo_bytes_per_direction,
            max_ooo_segments: cfg.reassembly.max_ooo_segments_per_direction,
            conflict_window: cfg.reassembly.conflict_window,
            max_ahead: cfg.reassembly.max_ahead,
        };
        let plim = ParserLimits {
            max_message_len: cfg.peerwire.max_message_len,
            resync_window: cfg.peerwire.resync_window,
            probe_bytes: cfg.peerwire.probe_bytes,
        };
        let ulimits = UtpLimits {
            max_ooo_packets: cfg.utp.max_ooo_packets_per_direction,
            max_ooo_bytes: cfg.utp.max_ooo_bytes_per_direction,
        };
        Engine {
            tcp: FlowTable::new(
                cfg.flows.max_flows,
                cfg.flows.tcp_idle_timeout_secs.saturating_mul(1_000_000),
            ),
            udp: FlowTable::new(
                cfg.flows.max_flows,
                cfg.flows.udp_idle_timeout_secs.saturating_mul(1_000_000),
            ),
            defrag: Defragmenter::new(
                cfg.ip_fragments.max_datagrams,
                cfg.ip_fragments.max_bytes,
                cfg.ip_fragments.timeout_secs.saturating_mul(1_000_000),
            ),
            core: Core {
                budget: Budget::new(cfg.reassembly.max_ooo_bytes_total),
                limits,
                ulimits,
                reasm: ReasmCounters::default(),
                utp: UtpCounters::default(),
                app: App {
                    plim,
                    stats: Stats::default(),
                    blocks_tracked: 0,
                    pieces: {
                        let mut p = Pieces::new(
                            cfg.swarms.max_assembly_bytes,
                            cfg.swarms.max_quarantine_bytes,
                        );
                        (p.max_retry, p.max_copies) =
                            (cfg.swarms.max_retry_pieces, cfg.swarms.max_block_copies);
                        if cfg.swarms.verify_threads > 0 {
                            p.verify_on_threads(
                                cfg.swarms.verify_threads,
                                cfg.swarms.verify_ahead_bytes,
                            );
                        }
                        p
                    },
                    metadata: MetadataAssembler::new(cfg.swarms.max_metadata_swarms),
                    block_bytes: 0,
                    shared,
                    cfg,
                },
            },
            last_sweep: 0,
        }
    }

    /// Apply a new configuration to a running engine (SIGHUP): limits, caps and subscriber
    /// networks take effect for what comes next; flows and held data are kept. The cache
    /// directory and capacity are the caller's (they need the store reopened).
    pub fn reconfigure(&mut self, cfg: Config) {
        let core = &mut self.core;
        core.limits = ReasmLimits {
            max_ooo_bytes: cfg.reassembly.max_ooo_bytes_per_direction,
            max_ooo_segments: cfg.reassembly.max_ooo_segments_per_direction,
            conflict_window: cfg.reassembly.conflict_window,
            max_ahead: cfg.reassembly.max_ahead,
        };
        core.ulimits = UtpLimits {
            max_ooo_packets: cfg.utp.max_ooo_packets_per_direction,
            max_ooo_bytes: cfg.utp.max_ooo_bytes_per_direction,
        };
        core.budget.cap = cfg.reassembly.max_ooo_bytes_total;
        core.app.plim = ParserLimits {
            max_message_len: cfg.peerwire.max_message_len,
            resync_window: cfg.peerwire.resync_window,
            probe_bytes: cfg.peerwire.probe_bytes,
        };
        self.tcp.set_limits(
            cfg.flows.max_flows,
            cfg.flows.tcp_idle_timeout_secs.saturating_mul(1_000_000),
        );
        self.udp.set_limits(
            cfg.flows.max_flows,
            cfg.flows.udp_idle_timeout_secs.saturating_mul(1_000_000),
        );
        core.app.cfg = cfg;
    }

    pub fn config(&self) -> &Config {
        &self.core.app.cfg
    }

    /// One captured frame. `orig_len` is its length on the wire (may exceed `frame.len()`).
    pub fn handle(&mut self, ts: u64, link: LinkType, frame: &[u8], orig_len: u32) -> Verdict {
        let st = &mut self.core.app.stats;
        st.frames += 1;
        st.bytes += orig_len as u64;
        st.first_ts.get_or_insert(ts);
        st.last_ts = Some(st.last_ts.map_or(ts, |t| t.max(ts)));
        if ts.saturating_sub(self.last_sweep) >= SWEEP_MICROS {
            self.sweep(ts);
        }
        match link::decode(link, frame, orig_len) {
            Ok(Decoded::Packet(p)) => self.transport(ts, p.vlan, p.src, p.dst, p.transport),
            Ok(Decoded::Fragment(f)) => match self.defrag.offer(&f, ts) {
                FragResult::Complete(proto, data) => {
                    match link::transport_from_payload(proto, &data) {
                        Ok(t) => self.transport(ts, f.vlan, f.src, f.dst, t),
                        Err(e) => self.count_error(e.as_str()),
                    }
                }
                FragResult::Pending => {}
                FragResult::Dropped => {}
            },
            Ok(Decoded::NonIp) => {}
            Err(e) => self.count_error(e.as_str()),
        }
        Verdict::Forward
    }

    fn count_error(&mut self, kind: &'static str) {
        *self.core.app.stats.decode_errors.entry(kind).or_default() += 1;
    }

    fn sweep(&mut self, now: u64) {
        self.last_sweep = now;
        let core = &mut self.core;
        self.tcp.expire(now, |k, f| core.finish(k, f, End::Expired));
        self.udp
            .expire(now, |k, f| core.finish_udp(k, f, End::Expired));
    }

    fn transport(
        &mut self,
        ts: u64,
        vlan: Option<u16>,
        src: IpAddr,
        dst: IpAddr,
        t: Transport<'_>,
    ) {
        match t {
            Transport::Tcp(seg) => self.tcp_segment(ts, vlan, src, dst, &seg),
            Transport::Udp(u) => self.udp_datagram(ts, vlan, src, dst, &u),
            Transport::Other(_) => {}
        }
    }

    fn tcp_segment(
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

    fn udp_datagram(
        &mut self,
        ts: u64,
        vlan: Option<u16>,
        src: IpAddr,
        dst: IpAddr,
        u: &UdpDatagram<'_>,
    ) {
        let (key, dir) = FlowKey::new(
            17,
            vlan,
            SocketAddr::new(src, u.src_port),
            SocketAddr::new(dst, u.dst_port),
        );
        let core = &mut self.core;
        let flow = match self.udp.get_mut(&key, ts) {
            Some(f) => f,
            None => {
                core.app.stats.flows.udp += 1;
                let f = UdpFlow::Probe(Box::default());
                self.udp
                    .insert(key, f, ts, |k, f| core.finish_udp(k, f, End::Evicted))
            }
        };
        match flow {
            UdpFlow::Other => {}
            UdpFlow::UtpDone => match UtpPacket::new_checked(u.payload) {
                Some(p) if p.kind == UtpType::Syn => {
                    // A new connection on the same ports.
                    let mut probe = Box::<UtpProbe>::default();
                    probe.observe(dir, u.payload);
                    *flow = UdpFlow::Probe(probe);
                }
                Some(_) => core.utp.packets += 1,
                None => {}
            },
            UdpFlow::Probe(p) => {
                let Some(initiator) = p.observe(dir, u.payload) else {
                    // Non-uTP datagrams do not condemn a flow: libtorrent sends DHT and uTP
                    // from one socket. Only uTP-looking packets that never pair up do.
                    if p.packets >= UTP_PROBE_PACKETS {
                        *flow = UdpFlow::Other;
                    }
                    return;
                };
                // Confirmed: replay what the probe held through a uTP flow.
                let held = std::mem::take(&mut p.held);
                let syn_seen = p.syn.is_some();
                let syn_id = p.syn.map(|(_, id, _)| id);
                core.utp.flows += 1;
                let start = Some(initiator).filter(|_| syn_seen);
                let mut f = UtpFlow {
                    reasm: [UtpReasm::default(), UtpReasm::default()],
                    conn: Conn::new(key, start, &core.app.cfg),
                    syn_seen,
                    syn_id,
                    fin: [false; 2],
                };
                f.conn.utp = true;
                f.conn.state = ConnState::for_utp(start);
                for (d, bytes) in &held {
                    if let Some(pkt) = UtpPacket::new_checked(bytes) {
                        core.utp_packet(&mut f, *d, &pkt);
                    }
                }
                *flow = UdpFlow::Utp(Box::new(f));
            }
            UdpFlow::Utp(f) => {
                let Some(pkt) = UtpPacket::new_checked(u.payload) else {
                    return;
                };
                if pkt.kind == UtpType::Syn && f.syn_id != Some(pkt.conn_id) {
                    // A new connection on the same ports: the old one is over.
                    let old = std::mem::replace(flow, UdpFlow::Probe(Box::default()));
                    core.finish_udp(key, old, End::Closed);
                    if let UdpFlow::Probe(p) = flow {
                        p.observe(dir, u.payload);
                    }
                    return;
                }
                core.utp_packet(f, dir, &pkt);
                let closed = f.fin == [true, true] || pkt.kind == UtpType::Reset;
                if f.conn.ignorable() || closed {
                    let old = std::mem::replace(flow, UdpFlow::UtpDone);
                    core.finish_udp(key, old, End::Closed);
                }
            }
        }
    }

    /// Live capture: piece verdicts already made take effect now (see `Pieces::settle_ready`).
    /// Returns whether pieces are still being verified, so an idle loop can come back soon.
    pub fn settle_ready(&mut self) -> bool {
        let sink = self.core.app.shared.sink.clone();
        self.core.app.pieces.settle_ready(&*sink);
        self.core.app.pieces.verifying()
    }

    /// End of input: finish every flow and hand back the counters.
    pub fn finish(mut self) -> Stats {
        let core = &mut self.core;
        self.tcp.drain(|k, f| core.finish(k, f, End::Drained));
        self.udp.drain(|k, f| core.finish_udp(k, f, End::Drained));
        let sink = self.core.app.shared.sink.clone();
        self.core.app.pieces.settle(&*sink);
        let stats = std::mem::take(&mut self.core.app.stats);
        self.fold(stats)
    }

    /// The counters so far, without block sets: for live metrics while frames keep coming.
    pub fn snapshot(&self) -> Stats {
        self.fold(self.core.app.stats.counters())
    }

    /// Add what lives outside `Stats` (piece verification, reassembly, fragments).
    fn fold(&self, mut stats: Stats) -> Stats {
        let app = &self.core.app;
        let max_swarms = app.cfg.swarms.max_swarms;
        for (ih, c) in &app.pieces.counters {
            swarm(&mut stats, Some(*ih), max_swarms).add_pieces(c);
        }
        stats.metadata_failed += app.metadata.failed;
        stats.metadata_refused += app.metadata.refused;
        stats.reassembly = self.core.reasm;
        stats.utp = self.core.utp;
        stats.ip_fragments = self.defrag.counters;
        stats
    }
}

impl Core {
    fn finish(&mut self, _key: FlowKey, flow: TcpFlow, end: End) {
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

    fn finish_udp(&mut self, _key: FlowKey, flow: UdpFlow, end: End) {
        match end {
            End::Expired => self.app.stats.flows.expired += 1,
            End::Evicted => self.app.stats.flows.evicted += 1,
            End::Closed | End::Drained => {}
        }
        let UdpFlow::Utp(mut f) = flow else {
            return;
        };
        let UtpFlow {
            reasm,
            conn,
            syn_seen,
            ..
        } = &mut *f;
        let Core {
            budget,
            utp,
            app: ctx,
            ..
        } = self;
        for d in [Dir::LoToHi, Dir::HiToLo] {
            let at_start = *syn_seen;
            reasm[d.idx()].flush(utp, budget, &mut |c| conn.on_chunk(d, at_start, c, ctx));
        }
        conn.close(ctx);
    }

    /// One uTP packet of a confirmed flow.
    fn utp_packet(&mut self, f: &mut UtpFlow, dir: Dir, pkt: &UtpPacket<'_>) {
        let Core {
            ulimits,
            budget,
            utp: c,
            app: ctx,
            ..
        } = self;
        let UtpFlow {
            reasm,
            conn,
            syn_seen,
            fin,
            ..
        } = f;
        c.packets += 1;
        let at_start = *syn_seen;
        match pkt.kind {
            UtpType::Syn => {
                // The initiator's first DATA carries the SYN's seq_nr + 1.
                reasm[dir.idx()].start_at(pkt.seq.wrapping_add(1));
                return;
            }
            UtpType::Reset => {
                c.resets += 1;
                return;
            }
            UtpType::Fin => fin[dir.idx()] = true,
            UtpType::Data | UtpType::State => {}
        }
        let rd = dir.rev();
        reasm[rd.idx()].ack(pkt.ack, c, budget, &mut |ch| {
            conn.on_chunk(rd, at_start, ch, ctx)
        });
        if pkt.kind == UtpType::Data {
            reasm[dir.idx()].data(pkt.seq, pkt.payload, ulimits, c, budget, &mut |ch| {
                conn.on_chunk(dir, at_start, ch, ctx)
            });
        }
    }
}

impl UtpProbe {
    /// Record one datagram; Some(initiator) once the flow is shown to be uTP.
    fn observe(&mut self, dir: Dir, payload: &[u8]) -> Option<Dir> {
        let p = UtpPacket::new_checked(payload)?;
        self.packets = self.packets.saturating_add(1);
        if self.held.len() < UTP_PROBE_PACKETS as usize {
            self.held.push((dir, payload.to_vec()));
        }
        if p.kind == UtpType::Syn {
            self.syn = Some((dir, p.conn_id, p.seq));
        }
        // A SYN answered by a STATE with the SYN's id, acking its seq_nr.
        if let Some((sd, id, seq)) = self.syn {
            if p.kind == UtpType::State && dir != sd && p.conn_id == id && p.ack == seq {
                return Some(sd);
            }
        }
        // Mid-stream: the initiator sends with id + 1, the responder with id.
        self.ids[dir.idx()] = Some(p.conn_id);
        if let (Some(a), Some(b), None) = (self.ids[dir.idx()], self.ids[dir.rev().idx()], self.syn)
        {
            if a == b.wrapping_add(1) {
                return Some(dir);
            }
            if b == a.wrapping_add(1) {
                return Some(dir.rev());
            }
        }
        // One direction only (a tap may see just one): a run of packets with one
        // connection id and nearby sequence numbers is not an accident.
        let run = &mut self.runs[dir.idx()];
        *run = match *run {
            Some((id, last, n))
                if id == p.conn_id && p.seq.wrapping_sub(last).wrapping_add(8) <= 24 =>
            {
                Some((id, p.seq, n + 1))
            }
            _ => Some((p.conn_id, p.seq, 1)),
        };
        if matches!(run, Some((_, _, n)) if *n >= 3) && self.syn.is_none() {
            // Which side opened the connection is unknown: both streams are mid-stream.
            return Some(dir);
        }
        // A plaintext BitTorrent handshake as the first payload.
        if p.kind == UtpType::Data && p.payload.starts_with(&peerwire::PROTOCOL[..]) {
            return Some(dir);
        }
        None
    }
}

impl Conn {
    /// The connection ends: release its buffers, decide on a pending first flight, record
    /// its streams.
    fn close(&mut self, ctx: &mut App) {
        let conn = self;
        let key = conn.key;
        for b in conn.blocks.iter_mut().filter_map(Option::take) {
            ctx.block_bytes = ctx.block_bytes.saturating_sub(b.length as usize);
        }
        if let Some(v) = conn.state.end_flight() {
            conn.verdict(v, ctx);
        }
        if !conn.counted_bt && !conn.counted_enc && !conn.utp {
            ctx.stats.flows.ignored += 1;
        }
        if let Some(h) = conn.hashers.take() {
            let c2s = conn.state.initiator.unwrap_or(Dir::LoToHi);
            let [a, b] = *h;
            let (cs, sc) = if c2s == Dir::LoToHi { (a, b) } else { (b, a) };
            ctx.stats.streams.push(StreamRecord {
                client: key.src(c2s).to_string(),
                server: key.src(c2s.rev()).to_string(),
                c2s_bytes: cs.1,
                c2s_sha1: hex(&cs.0.finalize()),
                s2c_bytes: sc.1,
                s2c_sha1: hex(&sc.0.finalize()),
            });
        }
    }
}

fn swarm(stats: &mut Stats, ih: Option<[u8; 20]>, max: usize) -> &mut SwarmStats {
    let Some(ih) = ih else {
        return &mut stats.unattributed;
    };
    if !stats.swarms.contains_key(&ih) && stats.swarms.len() >= max {
        stats.swarms_overflow += 1;
        return &mut stats.unattributed;
    }
    stats.swarms.entry(ih).or_default()
}

impl Conn {
    fn new(key: FlowKey, initiator: Option<Dir>, cfg: &Config) -> Conn {
        Conn {
            key,
            parsers: [None, None],
            blocks: [None, None],
            state: ConnState::new(initiator),
            sub_sender: [
                cfg.is_subscriber(key.lo.ip()),
                cfg.is_subscriber(key.hi.ip()),
            ],
            counted_bt: false,
            counted_enc: false,
            counted_plain_after_enc: false,
            utp: false,
            hashers: cfg
                .record_streams
                .then(|| Box::new([(Sha1::new(), 0), (Sha1::new(), 0)])),
        }
    }

    /// Nothing more to learn: every parser gave up and the first flight said "not MSE".
    fn ignorable(&self) -> bool {
        if self.hashers.is_some() {
            return false; // Tests want whole streams.
        }
        let mut created = self.parsers.iter().flatten().peekable();
        created.peek().is_some()
            && created.all(|p| p.is_dead())
            && self.state.flight_decided()
            && self.state.class != Class::BitTorrent
    }

    fn verdict(&mut self, class: Class, ctx: &mut App) {
        if class == Class::Encrypted && self.state.class == Class::Unknown {
            self.state.class = Class::Encrypted;
            if !self.counted_enc {
                self.counted_enc = true;
                let b = &mut ctx.stats.bittorrent;
                b.encrypted_connections += 1;
                if self.utp {
                    b.encrypted_utp_connections += 1;
                } else {
                    b.encrypted_tcp_connections += 1;
                }
            }
            // MSE may have negotiated plaintext (crypto_provide 0x01): look for framing in
            // what follows, within the probe budget.
            for p in &mut self.parsers {
                p.get_or_insert_with(StreamParser::midstream).hunt(true);
            }
        }
    }

    fn on_chunk(&mut self, dir: Dir, at_start: bool, chunk: Chunk<'_>, ctx: &mut App) {
        if let Chunk::Data(data) = chunk {
            if let Some(h) = &mut self.hashers {
                h[dir.idx()].0.update(data);
                h[dir.idx()].1 += data.len() as u64;
            }
            if let Some(v) = self.state.observe(dir, data) {
                self.verdict(v, ctx);
            }
        }
        let Conn {
            key,
            utp,
            parsers,
            blocks,
            state,
            sub_sender,
            counted_bt,
            counted_plain_after_enc,
            ..
        } = self;
        let parser = parsers[dir.idx()].get_or_insert_with(|| {
            if at_start {
                StreamParser::at_start()
            } else {
                StreamParser::midstream()
            }
        });
        let plim = ctx.plim;
        let mut h = Handler {
            utp: *utp,
            sender: key.src(dir),
            receiver: key.src(dir.rev()),
            vlan: key.vlan,
            block: &mut blocks[dir.idx()],
            state,
            ctx,
            dir,
            sub_sender,
            counted_bt,
            counted_plain_after_enc,
        };
        match chunk {
            Chunk::Data(data) => parser.feed(data, &plim, &mut |ev| h.event(ev)),
            Chunk::Gap(n) => parser.gap(n, &mut |ev| h.event(ev)),
            Chunk::Lost => parser.lost(&mut |ev| h.event(ev)),
        }
    }
}

/// Turns parser events into protocol state and counters.
struct Handler<'a> {
    utp: bool,
    sender: SocketAddr,
    receiver: SocketAddr,
    vlan: Option<u16>,
    block: &'a mut Option<BlockBuf>,
    state: &'a mut ConnState,
    ctx: &'a mut App,
    dir: Dir,
    sub_sender: &'a [bool; 2],
    counted_bt: &'a mut bool,
    counted_plain_after_enc: &'a mut bool,
}

impl Handler<'_> {
    fn start_block(&mut self, index: u32, begin: u32, length: u32) {
        self.drop_block();
        // Only blocks of a known, tracked swarm are held: others can never be verified, and
        // swarms past `max_swarms` must not grow per-swarm state elsewhere.
        match self.state.info_hash {
            Some(ih) if self.ctx.stats.swarms.contains_key(&ih) => {}
            _ => return,
        }
        let cap = self.ctx.cfg.swarms.max_block_buffer_bytes;
        if self.ctx.block_bytes + length as usize > cap {
            self.ctx.stats.blocks_unbuffered += 1;
            return;
        }
        self.ctx.block_bytes += length as usize;
        *self.block = Some(BlockBuf {
            index,
            begin,
            length,
            data: Vec::with_capacity(length as usize),
        });
    }

    fn drop_block(&mut self) {
        if let Some(b) = self.block.take() {
            self.ctx.block_bytes = self.ctx.block_bytes.saturating_sub(b.length as usize);
        }
    }

    fn block_data(&mut self, index: u32, begin: u32, offset: u32, data: &[u8]) {
        let Some(b) = self.block.as_mut() else { return };
        if (b.index, b.begin, b.data.len()) != (index, begin, offset as usize) {
            self.drop_block();
            return;
        }
        b.data.extend_from_slice(data);
        if b.data.len() < b.length as usize {
            return;
        }
        let Some(b) = self.block.take() else { return };
        self.ctx.block_bytes = self.ctx.block_bytes.saturating_sub(b.length as usize);
        let Some(ih) = self.state.info_hash else {
            return;
        };
        let meta = self.ctx.shared.registry.get(&ih).map(|(m, _)| m);
        let sink = self.ctx.shared.sink.clone();
        self.ctx.pieces.block(
            ih,
            meta.as_ref(),
            b.index,
            b.begin,
            b.data,
            self.sender,
            &*sink,
        );
    }

    fn would_be_hit(&mut self, ih: [u8; 20], index: u32, length: u32) {
        // A piece being verified is cached or not by its verdict, as if it had come first.
        let sink = self.ctx.shared.sink.clone();
        self.ctx.pieces.settle_piece(&ih, index, &*sink);
        let h = &mut self.ctx.stats.hits;
        if self.ctx.shared.sink.contains(&ih, index) {
            self.ctx.shared.sink.touch(&ih, index);
            h.hits += 1;
            h.hit_bytes += length as u64;
        } else {
            h.misses += 1;
            h.miss_bytes += length as u64;
        }
    }

    fn metadata_piece(&mut self, ih: [u8; 20], u: peerwire::UtMetadata<'_>) {
        if self.ctx.shared.registry.get(&ih).is_some() {
            return;
        }
        if let Some(m) = self.ctx.metadata.data(ih, u.piece, u.total_size, u.data) {
            let m = self.ctx.shared.registry.insert(m, Source::Wire);
            let sink = self.ctx.shared.sink.clone();
            sink.learn(&m);
            self.ctx.pieces.metainfo_arrived(&m, &*sink);
        }
    }

    fn mark_bittorrent(&mut self) {
        if self.state.class == Class::Encrypted {
            if !*self.counted_plain_after_enc {
                *self.counted_plain_after_enc = true;
                self.ctx.stats.bittorrent.encrypted_then_plain += 1;
            }
            return;
        }
        self.state.class = Class::BitTorrent;
        if !*self.counted_bt {
            *self.counted_bt = true;
            if self.utp {
                self.ctx.stats.bittorrent.utp_connections += 1;
            } else {
                self.ctx.stats.bittorrent.tcp_connections += 1;
            }
            if self.state.midstream {
                self.ctx.stats.bittorrent.midstream_connections += 1;
            }
        }
    }

    fn event(&mut self, ev: Event<'_>) {
        let max_swarms = self.ctx.cfg.swarms.max_swarms;
        let sender_sub = self.sub_sender[self.dir.idx()];
        let receiver_sub = self.sub_sender[self.dir.rev().idx()];
        match ev {
            Event::Handshake(h) => {
                self.mark_bittorrent();
                self.ctx.stats.peerwire.handshakes += 1;
                let new = self.state.on_handshake(self.dir, &h);
                let sw = swarm(&mut self.ctx.stats, self.state.info_hash, max_swarms);
                if new {
                    sw.connections += 1;
                }
                *sw.messages.entry("handshake").or_default() += 1;
            }
            Event::Resynced { skipped } => {
                self.ctx.stats.peerwire.resyncs += 1;
                self.ctx.stats.peerwire.resync_skipped_bytes += skipped;
                if self.state.class != Class::BitTorrent {
                    self.mark_bittorrent();
                    if self.state.info_hash.is_none() && self.state.class == Class::BitTorrent {
                        let sw = swarm(&mut self.ctx.stats, None, max_swarms);
                        if !self.state.midstream_counted {
                            self.state.midstream_counted = true;
                            sw.connections += 1;
                        }
                    }
                }
            }
            Event::Message(m) => {
                self.ctx.stats.peerwire.messages += 1;
                let kind = m.kind();
                let ih = self.state.info_hash;
                if let Message::Extended { id, payload } = m {
                    let name = if id == 0 {
                        self.state.on_ext_handshake(self.dir, payload);
                        Some("handshake".to_string())
                    } else {
                        let ext = self.state.ext_name(self.dir, id).map(str::to_owned);
                        ext.as_deref().map(|n| match n {
                            "ut_metadata" => match peerwire::parse_ut_metadata(payload) {
                                Some(u) => match u.msg_type {
                                    1 if ih.is_some() => {
                                        if let Some(ih) = ih {
                                            self.metadata_piece(ih, u);
                                        }
                                        "ut_metadata_data".to_string()
                                    }
                                    0 => "ut_metadata_request".to_string(),
                                    1 => "ut_metadata_data".to_string(),
                                    2 => "ut_metadata_reject".to_string(),
                                    _ => "ut_metadata_other".to_string(),
                                },
                                None => "ut_metadata_invalid".to_string(),
                            },
                            // Only names we know become keys: peers choose these strings.
                            "ut_pex" | "lt_donthave" | "upload_only" | "ut_holepunch"
                            | "lt_tex" | "share_mode" | "ut_comment" => n.to_string(),
                            _ => "other".to_string(),
                        })
                    };
                    let pex = match name.as_deref() {
                        Some("ut_pex") => peerwire::pex_added(payload),
                        _ => None,
                    };
                    let md = self.state.metadata_size;
                    let sw = swarm(&mut self.ctx.stats, ih, max_swarms);
                    *sw.extended
                        .entry(name.unwrap_or_else(|| "unknown_id".into()))
                        .or_default() += 1;
                    if let Some(n) = pex {
                        *sw.extended.entry("ut_pex_added_peers".into()).or_default() += n;
                    }
                    if id == 0 && md.is_some() {
                        sw.metadata_size = md;
                    }
                }
                let sw = swarm(&mut self.ctx.stats, ih, max_swarms);
                *sw.messages.entry(kind.as_str()).or_default() += 1;
                if let Message::Request(b) = m {
                    sw.request_messages += 1;
                    if sender_sub {
                        sw.subscriber_requests += 1;
                        if let Some(ih) = ih {
                            // Policy rules learn popularity and the flow from here. Verdicts
                            // due before this REQUEST take effect first, as if hashed inline:
                            // that of the piece asked for (and those before it), and all of
                            // the swarm's when the rules watch REQUESTs.
                            let sink = self.ctx.shared.sink.clone();
                            self.ctx.pieces.settle_piece(&ih, b.index, &*sink);
                            if sink.watches_requests() {
                                self.ctx.pieces.settle_swarm(&ih, &*sink);
                            }
                            self.ctx.shared.sink.requested(
                                &ih,
                                &FlowContext {
                                    subscriber: self.sender,
                                    upstream: self.receiver,
                                    vlan: self.vlan,
                                },
                            );
                            self.would_be_hit(ih, b.index, b.length);
                        }
                    }
                }
            }
            Event::Piece {
                index,
                begin,
                length,
            } => {
                self.ctx.stats.peerwire.messages += 1;
                let cap = self.ctx.cfg.swarms.max_distinct_blocks;
                let tracked = self.ctx.blocks_tracked;
                let ih = self.state.info_hash;
                let sw = swarm(&mut self.ctx.stats, ih, max_swarms);
                sw.piece_messages += 1;
                sw.piece_bytes += length as u64;
                *sw.messages.entry("piece").or_default() += 1;
                if receiver_sub {
                    sw.subscriber_piece_bytes_in += length as u64;
                }
                if sender_sub {
                    sw.subscriber_piece_bytes_out += length as u64;
                }
                self.start_block(index, begin, length);
                let sw = swarm(&mut self.ctx.stats, ih, max_swarms);
                let b = (index, begin, length);
                if !sw.blocks.contains(&b) {
                    if tracked < cap {
                        sw.blocks.insert(b);
                        sw.distinct += 1;
                        self.ctx.blocks_tracked += 1;
                    } else {
                        sw.blocks_overflow += 1;
                    }
                }
            }
            Event::BlockData {
                index,
                begin,
                offset,
                data,
            } => self.block_data(index, begin, offset, data),
            Event::BlockLost { len, .. } => {
                self.drop_block();
                let ih = self.state.info_hash;
                swarm(&mut self.ctx.stats, ih, max_swarms).piece_bytes_lost += len as u64;
            }
            Event::Skipped { .. } => self.ctx.stats.peerwire.skipped_messages += 1,
            Event::NotBitTorrent => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timestamps are input: a pcapng can say anything, up to u64::MAX after conversion.
    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let mut e = Engine::new(Config::default());
        for ts in [u64::MAX, u64::MAX, 0, u64::MAX - 1, 1] {
            e.handle(ts, LinkType::Ethernet, &[0u8; 14], 14);
        }
        let s = e.finish();
        assert_eq!(s.frames, 5);
    }
}
