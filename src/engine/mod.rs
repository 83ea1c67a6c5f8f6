//! The sans-IO engine: fed `(timestamp, frame)`, it decodes, tracks flows, reassembles,
//! parses the peer wire and counts. It does no I/O and reads no clock: replay, tap and
//! inline differ only in where frames come from and what is done with the verdict.
//!
//! Here: the engine and its dispatch of frames to flows. Below it, per transport: `tcp`
//! (segments through the reassemblers), `udp` (uTP flows) with `utp_probe` (deciding that
//! a UDP flow is uTP); `conn` (one connection's parsers and protocol state) and `handler`
//! (what each peer-wire event does to the counters, the pieces and the sink).

mod conn;
mod handler;
mod tcp;
mod udp;
mod utp_probe;

use std::net::IpAddr;

use crate::config::Config;
use crate::flow::ipfrag::{Defragmenter, FragResult};
use crate::flow::table::FlowTable;
use crate::flow::tcp::{Budget, ReasmCounters, ReasmLimits};
use crate::flow::utp::{UtpCounters, UtpLimits};
use crate::flow::FlowKey;
use crate::peerwire::ParserLimits;
use crate::report::Stats;
use crate::runtime::Shared;
// Re-exported for `report.rs` until its `annotate` gives way to `runtime::annotate`.
use crate::swarm::metadata::MetadataAssembler;
use crate::swarm::Pieces;
use crate::wire::link::{self, Decoded, LinkType, Transport};

use handler::swarm;
use tcp::TcpFlow;
use udp::UdpFlow;

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
    /// Swarms that need metainfo and the peers seen in them, when a fetcher takes offers.
    trigger: Option<crate::fetch::Trigger>,
    /// The registry's generation last looked at (see `Engine::registry_moved`).
    registry_gen: u64,
    /// The timestamp of the frame being handled (packet time, microseconds): the time of
    /// what it completes (a REQUEST written to `--requests-out`).
    now: u64,
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
                        p.max_attempts = cfg.swarms.max_hash_attempts_per_piece;
                        p.max_alt_bytes = cfg.swarms.max_alternative_bytes;
                        p.max_blame_pieces = cfg.swarms.max_blame_pieces;
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
                    trigger: shared
                        .fetch
                        .as_ref()
                        .map(|w| crate::fetch::Trigger::new(w.trigger_limits())),
                    registry_gen: shared.registry.generation(),
                    now: 0,
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
        self.core.app.now = ts;
        if ts.saturating_sub(self.last_sweep) >= SWEEP_MICROS {
            self.sweep(ts);
        }
        self.registry_moved();
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

    /// Metainfo learnt elsewhere since the last look (a fetch, a post, another worker, a
    /// file dropped in): the swarms it covers leave quarantine now, and stop being watched
    /// for a fetch.
    fn registry_moved(&mut self) {
        let app = &mut self.core.app;
        let gen = app.shared.registry.generation();
        if gen == app.registry_gen {
            return;
        }
        app.registry_gen = gen;
        let (registry, sink) = (app.shared.registry.clone(), app.shared.sink.clone());
        app.pieces
            .release_known(|ih| registry.get(ih).map(|(m, _)| m), &*sink);
        if let Some(t) = app.trigger.as_mut() {
            t.retain_unknown(|ih| registry.get(ih).is_some());
        }
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

    /// Live capture: piece verdicts already made take effect now (see `Pieces::settle_ready`).
    /// Returns whether pieces are still being verified, so an idle loop can come back soon.
    pub fn settle_ready(&mut self) -> bool {
        self.registry_moved();
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
