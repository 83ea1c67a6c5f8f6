//! The `peercache` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ipnet::IpNet;

use std::sync::Arc;

use peercache::cache::{CommitPolicy, PieceStore, StoreWriter};
use peercache::config::Config;
use peercache::engine::Shared;
use peercache::metrics::Live;
use peercache::replay::{self, ReplayOptions};
use peercache::report::parse_hex20;
use peercache::report::Report;
use peercache::swarm::{Registry, Source};

#[derive(Parser)]
#[command(
    name = "peercache",
    version,
    about = "ISP-side cache for BitTorrent traffic",
    long_about = "peercache watches BitTorrent traffic (from capture files, a tap port, or inline \
                  on the link), reassembles unencrypted peer connections over TCP and recognises \
                  every piece that passes by.\n\nStart with `peercache replay FILE.pcap` to see \
                  what a capture holds: swarms, pieces, bytes a cache would save."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay pcap/pcapng files through the engine and report what was seen.
    ///
    /// Files are read in the order given, as one continuous capture. A file that cannot be
    /// read gets a one-line error on stderr; the others are still processed and the exit
    /// status is 1.
    Replay(ReplayArgs),
    /// Write a deterministic pcap of BitTorrent sessions with chosen impairments.
    ///
    /// Same seed and options give a byte-identical file. --truth-out writes what a correct
    /// engine must report for it (counts, gaps, stream digests); --torrent-out the .torrent.
    Synth(peercache::synth::SynthArgs),
    /// Inspect and maintain the verified piece cache (ls, get, verify, evict).
    Cache(peercache::cache::cli::CacheArgs),
    /// Capture live from a tap or SPAN port and fill the cache; never sends a frame.
    ///
    /// Runs until SIGINT or SIGTERM (finishes in-flight work, flushes the cache, exits 0).
    /// SIGHUP re-reads --config: a bad file is refused and the running configuration stays.
    /// Needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode), not root.
    Tap(TapArgs),
    /// Bridge two interfaces and answer subscribers' block requests from the cache.
    ///
    /// Placed in the path between subscribers and the Internet, the box forwards every frame
    /// between --subscriber-iface and --upstream-iface unchanged, except on plain BitTorrent
    /// TCP connections it saw open: a REQUEST for a block the cache holds verified is
    /// answered by the box (the remote peer gets no-op bytes instead), so that block does not
    /// cross the transit link. The cache keeps filling from what passes. Encrypted and
    /// unknown traffic is never touched; when the engine falls behind, or a connection's
    /// state is uncertain, the box forwards unchanged (fail-open).
    ///
    /// The ports must not have IP addresses in use, and GRO/LRO/TSO should be off on them
    /// (ethtool -K IF gro off lro off tso off gso off): frames are forwarded as captured.
    /// Runs until SIGINT or SIGTERM; SIGHUP re-reads the policy rules. Needs CAP_NET_RAW
    /// and CAP_NET_ADMIN.
    Inline(InlineArgs),
    /// Check a configuration file: errors name the line and column.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Check a policy rules file: errors name the line and column.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Parse and validate FILE (exit 0 when valid, 2 otherwise); prints the rules in
    /// evaluation order.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Parse and validate FILE; print the effective configuration with --print.
    Check {
        file: PathBuf,
        #[arg(long)]
        print: bool,
    },
}

#[derive(clap::Args)]
struct TapArgs {
    /// Interface to capture on (promiscuous).
    #[arg(long)]
    iface: String,
    /// BPF filter applied in the kernel (overrides the config).
    #[arg(long)]
    filter: Option<String>,
    /// Print the final report as JSON on stdout when stopped.
    #[arg(long)]
    json: bool,
    /// Metrics, JSON API and dashboard address (overrides the config's http.listen,
    /// 127.0.0.1:9750 by default).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct InlineArgs {
    /// Port toward the subscribers (their REQUESTs arrive here; answers leave here).
    #[arg(long, value_name = "IF")]
    subscriber_iface: String,
    /// Port toward the transit link / the rest of the Internet.
    #[arg(long, value_name = "IF")]
    upstream_iface: String,
    /// Print the final report (engine report plus "inline" and "bridge") as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also write that JSON report to FILE when stopping.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Metrics, JSON API and dashboard address (overrides the config's http.listen,
    /// 127.0.0.1:9750 by default).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Capture files (pcap or pcapng; Ethernet, 802.1Q/QinQ, Linux SLL/SLL2, raw IP).
    #[arg(required = true, value_name = "PCAP")]
    files: Vec<PathBuf>,
    /// Print one JSON document on stdout instead of the readable summary (schema: README).
    #[arg(long)]
    json: bool,
    /// Worker threads; frames are sharded by a symmetric hash of the address pair.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Do not draw a progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// Serve metrics, the JSON API and the dashboard at ADDR while the replay runs.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// With --http: keep serving after the replay finished, until Ctrl-C.
    #[arg(long, requires = "http")]
    http_linger: bool,
    /// Include the length and SHA-1 of every reassembled TCP stream in the JSON report.
    #[arg(long)]
    record_streams: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// What replay and tap both take: the configuration file and the options that override it.
#[derive(clap::Args)]
struct EngineArgs {
    /// YAML configuration (caps, timeouts, networks, cache); defaults otherwise. Tap mode
    /// re-reads it on SIGHUP.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A subscriber-side network (repeatable; adds to the config). PIECE bytes to and from
    /// these addresses, and their REQUESTs, are what a box in the path would see.
    #[arg(long = "subscriber-net", value_name = "CIDR")]
    subscriber_nets: Vec<IpNet>,
    /// Directory of .torrent files: their swarms' pieces are verified from the start
    /// (metainfo also arrives on the wire through ut_metadata, BEP 9).
    #[arg(long, value_name = "DIR")]
    metainfo: Option<PathBuf>,
    /// Piece cache directory: verified pieces are stored there (created if missing), and
    /// REQUESTs from subscribers count as hits against it.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Cache capacity (e.g. 500GiB); least recently used pieces are evicted past it.
    #[arg(long, value_name = "BYTES")]
    cache_capacity: Option<peercache::synth::ByteSize>,
    /// Policy rules file (overrides the config's `rules`; tap re-reads it on SIGHUP).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
}

impl EngineArgs {
    /// The configuration file (or the defaults) with the command-line overrides applied.
    fn config(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        cfg.subscriber_nets
            .extend(self.subscriber_nets.iter().copied());
        if self.metainfo.is_some() {
            cfg.metainfo_dir = self.metainfo.clone();
        }
        if self.cache_dir.is_some() {
            cfg.cache.dir = self.cache_dir.clone();
        }
        if let Some(c) = &self.cache_capacity {
            cfg.cache.capacity_bytes = c.0;
        }
        if self.rules.is_some() {
            cfg.rules = self.rules.clone();
        }
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("peercache: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Replay(a) => run_replay(a),
        Cmd::Cache(a) => Ok(peercache::cache::cli::run(&a)?),
        Cmd::Tap(a) => run_tap(a),
        Cmd::Inline(a) => run_inline(a),
        Cmd::Config {
            cmd: ConfigCmd::Check { file, print },
        } => {
            let cfg = Config::load(&file)?;
            if print {
                print!("{}", serde_yaml::to_string(&cfg).context("printing")?);
            }
            eprintln!("peercache: {}: OK", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rules {
            cmd: RulesCmd::Check { file },
        } => {
            let r = peercache::rules::Rules::load(&file)?;
            eprintln!(
                "peercache: {}: OK, rules in order: {}",
                file.display(),
                r.names().join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Synth(a) => {
            let t = peercache::synth::run(&a)?;
            eprintln!(
                "peercache: wrote {} ({} flows, info-hash {}, {} PIECE messages)",
                a.output.display(),
                t.flows,
                t.info_hash,
                t.piece_messages
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = a.engine.config()?;
    cfg.record_streams |= a.record_streams;
    let shared = shared_with_rules(&cfg, &mut |l| eprintln!("peercache: {l}"))?;
    let live = a.http.map(|_| Arc::new(Live::new(3600)));
    let server = match (a.http, &live) {
        (Some(addr), Some(live)) => {
            let srv = peercache::http::serve(addr, live.clone())?;
            eprintln!(
                "peercache: dashboard and metrics at http://{}/",
                srv.local_addr
            );
            Some(srv)
        }
        _ => None,
    };
    let opts = ReplayOptions {
        workers: a.workers.max(1),
        progress: !a.no_progress && !a.json,
        live: live.clone(),
    };
    let out = replay::replay_with(&a.files, &cfg, &opts, &shared);
    for e in &out.errors {
        eprintln!("peercache: {e}");
    }
    if a.json {
        let s = serde_json::to_string_pretty(&out.report).context("serialising the report")?;
        println!("{s}");
    } else {
        print_summary(
            &out.report,
            !cfg.subscriber_nets.is_empty(),
            cfg.cache.dir.is_some(),
        );
    }
    if let Some(srv) = server {
        if a.http_linger {
            eprintln!(
                "peercache: replay done; serving http://{}/ until Ctrl-C",
                srv.local_addr
            );
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone())
                    .context("installing signal handlers")?;
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        srv.shutdown();
    }
    Ok(if out.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn log_line(msg: String) {
    eprintln!("peercache[{:.3}]: {msg}", peercache::metrics::now_unix());
}

fn run_tap(a: TapArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = a.engine.config()?;
    if a.filter.is_some() {
        cfg.capture.filter = a.filter.clone();
    }
    let shared = shared_with_rules(&cfg, &mut log_line)?;
    load_metainfo(&cfg, &shared);
    match &cfg.cache.dir {
        Some(d) => log_line(format!(
            "cache {} (capacity {})",
            d.display(),
            human(cfg.cache.capacity_bytes)
        )),
        None => log_line("no cache directory: pieces are verified and counted only".into()),
    }
    let ctl = signal_control()?;
    let live = Arc::new(Live::new(3600));
    let server = start_http(a.http.or(cfg.http.listen), &live)?;
    let out = peercache::tap::run(
        &a.iface,
        cfg.clone(),
        a.engine.config.clone(),
        &shared,
        Some(&live),
        &ctl,
        &mut log_line,
    )?;
    if let Some(srv) = server {
        srv.shutdown();
    }
    let mut report = Report::new(&out.stats, Vec::new());
    report.annotate(&shared);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serialising the report")?
        );
    } else {
        print_summary(
            &report,
            !cfg.subscriber_nets.is_empty(),
            cfg.cache.dir.is_some(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The .torrent files of `metainfo_dir` into the registry; each bad file gets a log line.
fn load_metainfo(cfg: &Config, shared: &Shared) {
    if let Some(dir) = &cfg.metainfo_dir {
        let (n, errors) = shared.registry.load_dir(dir);
        for e in &errors {
            log_line(e.clone());
        }
        log_line(format!("{n} .torrent files loaded from {}", dir.display()));
    }
}

/// Stop on SIGINT/SIGTERM, reload on SIGHUP (the long-running modes).
fn signal_control() -> anyhow::Result<peercache::tap::Control> {
    let ctl = peercache::tap::Control::default();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, ctl.stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, ctl.reload.clone())
        .context("installing SIGHUP handler")?;
    Ok(ctl)
}

/// The metrics, JSON API and dashboard service at `addr`, when one is configured.
fn start_http(
    addr: Option<std::net::SocketAddr>,
    live: &Arc<Live>,
) -> anyhow::Result<Option<peercache::http::HttpServer>> {
    let Some(addr) = addr else { return Ok(None) };
    let srv = peercache::http::serve(addr, live.clone())?;
    log_line(format!(
        "dashboard and metrics at http://{}/",
        srv.local_addr
    ));
    Ok(Some(srv))
}

fn run_inline(a: InlineArgs) -> anyhow::Result<ExitCode> {
    let cfg = a.engine.config()?;
    if cfg.cache.dir.is_none() {
        anyhow::bail!(
            "inline mode needs a cache directory (--cache-dir DIR, or cache.dir in the config)"
        );
    }
    let (shared, store) = shared_with_rules_and_store(&cfg, &mut log_line)?;
    let Some(store) = store else {
        anyhow::bail!("inline mode needs a cache directory");
    };
    load_metainfo(&cfg, &shared);
    log_line(format!(
        "cache {} (capacity {}, {} pieces held)",
        cfg.cache
            .dir
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display(),
        human(cfg.cache.capacity_bytes),
        store
            .swarms()
            .iter()
            .map(|s| u64::from(s.pieces_cached))
            .sum::<u64>()
    ));
    let ctl = signal_control()?;
    let live = Arc::new(Live::new(3600));
    let server = start_http(a.http.or(cfg.http.listen), &live)?;
    let source = peercache::serve::source::StoreBlocks::new(
        store,
        shared.rules.clone(),
        cfg.inline.piece_memory_bytes,
    );
    let started = peercache::metrics::now_unix();
    let out = peercache::inline::run(
        &a.subscriber_iface,
        &a.upstream_iface,
        cfg.clone(),
        &shared,
        source,
        Some(&live),
        &ctl,
        a.engine.config.clone(),
        &mut log_line,
    )?;
    let mut snap = peercache::tap::snapshot(
        "inline",
        &format!("{}<->{}", a.subscriber_iface, a.upstream_iface),
        started,
        &out.stats.counters(),
        &shared,
        out.capture,
        &cfg,
        (0, 0),
        true,
    );
    snap.inline = Some(out.serve.clone());
    live.publish(snap);
    if let Some(srv) = server {
        srv.shutdown();
    }
    let mut report = Report::new(&out.stats, Vec::new());
    report.annotate(&shared);
    let mut doc = serde_json::to_value(&report).context("serialising the report")?;
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("inline".into(), serde_json::to_value(&out.serve)?);
        obj.insert("bridge".into(), serde_json::to_value(&out.bridge)?);
    }
    let text = serde_json::to_string_pretty(&doc).context("serialising the report")?;
    if let Some(path) = &a.report {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if a.json {
        println!("{text}");
    } else {
        let s = &out.serve;
        println!(
            "inline: {} connections ({} spliced); {} requests: {} served from cache ({}), {} misses ({})",
            s.connections,
            s.connections_spliced,
            s.requests,
            s.served_blocks,
            human(s.served_bytes),
            s.misses,
            human(s.miss_bytes)
        );
        let by: Vec<String> = s.bypassed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !by.is_empty() {
            println!("forwarded instead of served: {}", by.join(", "));
        }
        println!(
            "retransmitted {} segments ({}); forwarded {} frames to subscribers, {} upstream; send errors {}",
            s.retransmitted_segments,
            human(s.retransmitted_bytes),
            out.bridge.subscriber.sent,
            out.bridge.upstream.sent,
            out.bridge.subscriber.send_errors + out.bridge.upstream.send_errors
        );
        print_summary(&report, !cfg.subscriber_nets.is_empty(), true);
    }
    Ok(ExitCode::SUCCESS)
}

/// The metainfo registry and the piece sink: the disk cache when configured (its metainfo
/// preloaded), otherwise an in-memory record of verified pieces; and the store itself when
/// there is one (inline mode reads from it).
fn shared_state_and_store(cfg: &Config) -> anyhow::Result<(Shared, Option<Arc<PieceStore>>)> {
    let Some(dir) = &cfg.cache.dir else {
        return Ok((Shared::default(), None));
    };
    let store = PieceStore::open(dir, cfg.cache.capacity_bytes)
        .with_context(|| format!("opening cache {}", dir.display()))?;
    let registry = Registry::default();
    for s in store.swarms() {
        let m = parse_hex20(&s.info_hash).and_then(|ih| store.metainfo(&ih));
        if let Some(m) = m {
            registry.insert((*m).clone(), Source::Cache);
        }
    }
    let store = Arc::new(store);
    Ok((
        Shared {
            registry: Arc::new(registry),
            sink: Arc::new(StoreWriter::new(
                store.clone(),
                cfg.cache.write_queue_pieces,
                CommitPolicy {
                    bytes: cfg.cache.commit_bytes.max(1),
                    interval: std::time::Duration::from_millis(cfg.cache.commit_interval_ms),
                },
            )),
            rules: None,
        },
        Some(store),
    ))
}

/// `shared_state_and_store`, then the policy rules named by the config in front of its sink.
fn shared_with_rules(cfg: &Config, log: &mut dyn FnMut(String)) -> anyhow::Result<Shared> {
    Ok(shared_with_rules_and_store(cfg, log)?.0)
}

fn shared_with_rules_and_store(
    cfg: &Config,
    log: &mut dyn FnMut(String),
) -> anyhow::Result<(Shared, Option<Arc<PieceStore>>)> {
    let (mut shared, store) = shared_state_and_store(cfg)?;
    if let Some(path) = &cfg.rules {
        let r = peercache::rules::install_with_limits(&mut shared, path, cfg.policy)?;
        log(format!("rules {}: {r}", path.display()));
    }
    Ok((shared, store))
}

fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn print_summary(r: &Report, subscribers: bool, on_disk: bool) {
    println!(
        "frames {}  bytes {}  span {:.1}s",
        r.frames,
        human(r.bytes),
        r.duration_secs
    );
    if !r.decode_errors.is_empty() {
        let errs: Vec<String> = r
            .decode_errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("decode errors: {}", errs.join(", "));
    }
    println!(
        "flows: tcp {}  udp {}  (evicted {}, expired {}, not BitTorrent {})",
        r.flows.tcp, r.flows.udp, r.flows.evicted, r.flows.expired, r.flows.ignored
    );
    let b = &r.bittorrent;
    println!(
        "BitTorrent connections: tcp {} (mid-stream {})  utp {}  encrypted {}",
        b.tcp_connections, b.midstream_connections, b.utp_connections, b.encrypted_connections
    );
    let x = &r.reassembly;
    println!(
        "reassembly: gaps {} ({})  overlaps {} (conflicting {})  out-of-order {}  cap evictions {}",
        x.gaps,
        human(x.gap_bytes),
        x.overlaps,
        x.conflicting_overlaps,
        x.out_of_order,
        x.evictions
    );
    println!("swarms: {}", r.swarms.len());
    for s in r.swarms.iter().take(20) {
        print!(
            "  {}  conns {:>3}  pieces {:>6} ({:>10})  requests {:>6}  blocks {:>6}",
            s.info_hash,
            s.connections,
            s.piece_messages,
            human(s.piece_bytes),
            s.request_messages,
            s.distinct_blocks
        );
        if subscribers {
            print!("  to subscribers {}", human(s.subscriber_piece_bytes_in));
        }
        println!();
        if let (Some(name), Some(pieces)) = (&s.name, s.pieces) {
            println!(
                "      {name}: verified {}/{pieces}, failed {}, cached {} (metainfo: {})",
                s.pieces_verified, s.pieces_failed, s.pieces_cached, s.metainfo
            );
        }
        for (peer, n) in &s.failed_by_peer {
            println!("      hash failures from {peer}: {n}");
        }
    }
    if r.swarms.len() > 20 {
        println!("  ... {} more (use --json for all)", r.swarms.len() - 20);
    }
    let c = &r.cache;
    if c.stored_bytes > 0 {
        if on_disk {
            println!(
                "cache: stored {}  evicted {}",
                human(c.stored_bytes),
                human(c.evicted_bytes)
            );
        } else {
            println!(
                "verified pieces: {} (no --cache-dir: nothing written)",
                human(c.stored_bytes)
            );
        }
    }
    if c.hits + c.misses > 0 {
        println!(
            "would-be hits: {}/{} subscriber requests ({:.1}%), {} of {} served locally",
            c.hits,
            c.hits + c.misses,
            100.0 * c.hit_ratio,
            human(c.hit_bytes),
            human(c.hit_bytes + c.miss_bytes)
        );
    }
    for (name, c) in &r.rules {
        println!(
            "rule {name}: matched {}  cached {}  refused {}  purged {}",
            c.matched,
            c.cached,
            c.refused,
            human(c.purged_bytes)
        );
    }
    let u = &r.unattributed;
    if u.piece_messages + u.request_messages + u.connections > 0 {
        println!(
            "  (info-hash unknown)  conns {:>3}  pieces {:>6} ({:>10})  requests {:>6}",
            u.connections,
            u.piece_messages,
            human(u.piece_bytes),
            u.request_messages
        );
    }
}
