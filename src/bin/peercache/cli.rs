//! The command line's definitions: every subcommand and option, with the text `--help`
//! shows (the doc comments below are that text).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ipnet::IpNet;

use peercache::config::Config;

/// The version `--version` shows: the crate's, or what the build was given in
/// PEERCACHE_BUILD_VERSION (deploy/build-deb.sh gives the crate's version and the git
/// revision, so a package says what it was built from).
const VERSION: &str = match option_env!("PEERCACHE_BUILD_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

#[derive(Parser)]
#[command(
    name = "peercache",
    version = VERSION,
    about = "ISP-side cache for BitTorrent traffic",
    long_about = "peercache watches BitTorrent traffic (from capture files, a tap port, or inline \
                  on the link), reassembles unencrypted peer connections over TCP and recognises \
                  every piece that passes by.\n\nStart with `peercache replay FILE.pcap` to see \
                  what a capture holds: swarms, pieces, bytes a cache would save."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
    /// More log detail: -v debug, -vv trace (RUST_LOG, when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Less: -q warnings and errors only, -qq errors only.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) quiet: u8,
    /// Log lines on stderr as text (RFC 3339 UTC time, level, message) or JSON (one object
    /// per line, for a log shipper).
    #[arg(
        long,
        value_enum,
        default_value_t,
        global = true,
        value_name = "FORMAT"
    )]
    pub(crate) log_format: crate::logging::LogFormat,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
    /// Inspect and maintain the verified piece cache (ls, get, verify, evict, import).
    Cache(peercache::cache::cli::CacheArgs),
    /// Cache value: synthetic workloads, request traces through cache policies and the
    /// offline optimum (workload, run, csv).
    Sim(peercache::sim::SimArgs),
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
    /// Print a shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    ///
    /// The package installs bash, zsh and fish completions; by hand, e.g.
    /// `peercache completions bash > /etc/bash_completion.d/peercache`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (peercache.1, peercache-replay.1, ...) into DIR.
    Man {
        /// The directory (created if missing).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum RulesCmd {
    /// Parse and validate FILE (exit 0 when valid, 2 otherwise); prints the rules in
    /// evaluation order. The audit log it names must be writable (by the user running the
    /// check: `sudo -u peercache peercache rules check FILE` answers for the service).
    #[command(group = clap::ArgGroup::new("what").required(true))]
    Check {
        /// The rules file.
        #[arg(group = "what")]
        file: Option<PathBuf>,
        /// Check the rules file this configuration names (its `rules`).
        #[arg(long, value_name = "FILE", group = "what")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCmd {
    /// Parse and validate FILE, and every path it names as the daemon will use it: the
    /// cache directory writable (or creatable), the .torrent directory readable, the rules
    /// file valid and its audit log writable, by the user running the check (`sudo -u
    /// peercache peercache config check FILE` answers for the service). Exit 0 when all is
    /// well, 2 otherwise.
    #[command(group = clap::ArgGroup::new("what").required(true))]
    Check {
        /// The configuration file.
        #[arg(group = "what")]
        file: Option<PathBuf>,
        /// The same, as the other commands take it.
        #[arg(long, value_name = "FILE", group = "what")]
        config: Option<PathBuf>,
        /// Also print the effective configuration (every key, defaults filled in).
        #[arg(long)]
        print: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct TapArgs {
    /// Interface to capture on (promiscuous).
    #[arg(long)]
    pub(crate) iface: String,
    /// BPF filter applied in the kernel (overrides the config).
    #[arg(long)]
    pub(crate) filter: Option<String>,
    /// Print the final report as JSON on stdout when stopped.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write that JSON report to FILE when stopping.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Metrics, JSON API and dashboard address (overrides the config's http.listen,
    /// 127.0.0.1:9750 by default).
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

#[derive(clap::Args)]
pub(crate) struct InlineArgs {
    /// Port toward the subscribers (their REQUESTs arrive here; answers leave here).
    #[arg(long, value_name = "IF")]
    pub(crate) subscriber_iface: String,
    /// Port toward the transit link / the rest of the Internet.
    #[arg(long, value_name = "IF")]
    pub(crate) upstream_iface: String,
    /// Print the final report (engine report plus "inline" and "bridge") as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write that JSON report to FILE when stopping.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Metrics, JSON API and dashboard address (overrides the config's http.listen,
    /// 127.0.0.1:9750 by default).
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// Forwarding workers, each a thread with its share of the connections (by IP address
    /// pair) and its own analysis thread (overrides the config's inline.workers, 1 by
    /// default; see docs/inline.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) workers: Option<u16>,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// Capture files (pcap or pcapng; Ethernet, 802.1Q/QinQ, Linux SLL/SLL2, raw IP).
    #[arg(required = true, value_name = "PCAP")]
    pub(crate) files: Vec<PathBuf>,
    /// Print one JSON document on stdout instead of the readable summary (schema: docs/report.md).
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write that JSON report to FILE (with or without --json).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Worker threads; frames are sharded by a symmetric hash of the address pair.
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
    /// Do not draw a progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Serve metrics, the JSON API and the dashboard at ADDR while the replay runs.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// With --http: keep serving after the replay finished, until Ctrl-C.
    #[arg(long, requires = "http")]
    pub(crate) http_linger: bool,
    /// Include the length and SHA-1 of every reassembled TCP stream in the JSON report.
    #[arg(long)]
    pub(crate) record_streams: bool,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

/// What replay and tap both take: the configuration file and the options that override it.
#[derive(clap::Args)]
pub(crate) struct EngineArgs {
    /// YAML configuration (caps, timeouts, networks, cache); defaults otherwise. Tap mode
    /// re-reads it on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// A subscriber-side network (repeatable; adds to the config). PIECE bytes to and from
    /// these addresses, and their REQUESTs, are what a box in the path would see.
    #[arg(long = "subscriber-net", value_name = "CIDR")]
    pub(crate) subscriber_nets: Vec<IpNet>,
    /// Directory of .torrent files, or one .torrent file: their swarms' pieces are verified
    /// from the start (metainfo also arrives on the wire through ut_metadata, BEP 9). tap
    /// and inline look again every 5 s (metainfo_watch.interval_secs) and read files
    /// dropped in later.
    #[arg(long, value_name = "DIR|FILE")]
    pub(crate) metainfo: Option<PathBuf>,
    /// Piece cache directory: verified pieces are stored there (created if missing), and
    /// REQUESTs from subscribers count as hits against it.
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Cache capacity (e.g. 500GiB, 1.5TB: KiB, MiB... are powers of 1024, KB, MB... of
    /// 1000); past it, --cache-policy decides which pieces are evicted.
    #[arg(long, value_name = "BYTES")]
    pub(crate) cache_capacity: Option<peercache::size::ByteSize>,
    /// Cache eviction policy (overrides the config's cache.policy): lru, fifo, s3fifo,
    /// tinylfu or gdsf. The default is the one that measured best (docs/sim.md).
    #[arg(long, value_name = "POLICY")]
    pub(crate) cache_policy: Option<peercache::cache::policy::PolicySpec>,
    /// Policy rules file (overrides the config's `rules`; tap re-reads it on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub(crate) rules: Option<PathBuf>,
    /// Write every subscriber REQUEST seen (time, info-hash, piece, begin, length,
    /// subscriber, piece length) to FILE as a request trace for `peercache sim` (format:
    /// docs/sim.md; `peercache sim csv FILE` prints it). Needs --subscriber-net.
    #[arg(long, value_name = "FILE")]
    pub(crate) requests_out: Option<PathBuf>,
}

impl EngineArgs {
    /// `--requests-out FILE`: the trace created now (an error names the file) and handed
    /// to every engine through `shared`.
    pub(crate) fn open_requests(
        &self,
        cfg: &Config,
        shared: &mut peercache::runtime::Shared,
    ) -> anyhow::Result<()> {
        let Some(path) = &self.requests_out else {
            return Ok(());
        };
        if cfg.subscriber_nets.is_empty() {
            tracing::warn!(
                "--requests-out {}: no subscriber networks (--subscriber-net or subscriber_nets), so no REQUEST is a subscriber's and the trace stays empty",
                path.display()
            );
        }
        let log = peercache::runtime::RequestLog::create(path)
            .map_err(|e| anyhow::anyhow!("--requests-out {}: {e}", path.display()))?;
        shared.requests = Some(std::sync::Arc::new(log));
        Ok(())
    }

    /// The configuration file (or the defaults) with the command-line overrides applied.
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(n) = self.subscriber_nets.iter().find(|n| n.trunc() != **n) {
            anyhow::bail!("--subscriber-net {}", peercache::config::host_bits(n));
        }
        cfg.subscriber_nets
            .extend(self.subscriber_nets.iter().copied());
        if self.metainfo.is_some() {
            cfg.metainfo_dir = self.metainfo.clone();
        }
        if self.cache_dir.is_some() {
            cfg.cache.dir = self.cache_dir.clone();
        }
        if let Some(c) = &self.cache_capacity {
            if c.0 == 0 {
                anyhow::bail!("--cache-capacity 0 would keep nothing; give at least 1 byte");
            }
            cfg.cache.capacity_bytes = c.0;
        }
        if let Some(p) = &self.cache_policy {
            if !p.store_can_run() {
                anyhow::bail!(
                    "--cache-{}",
                    peercache::cache::CacheError::Policy(p.to_string())
                );
            }
            cfg.cache.policy = p.clone();
        }
        if self.rules.is_some() {
            cfg.rules = self.rules.clone();
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    /// `--help` explains everything: every option, argument and command has a line of help.
    #[test]
    fn every_option_and_command_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if a.get_help().is_none() && !["help", "version"].contains(&id) {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in c.get_subcommands() {
                let p = format!("{path} {}", s.get_name());
                if s.get_about().is_none() && s.get_name() != "help" {
                    missing.push(p.clone());
                }
                walk(s, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<super::Cli as clap::CommandFactory>::command(),
            "peercache",
            &mut missing,
        );
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
