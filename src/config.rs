//! Every cap and timeout of every stage, with its default. One YAML file configures every
//! mode; unknown keys are refused so a typo does not silently leave a default in force.
//!
//! Each default is written once: here, or in the `Default` of the stage's own limits struct
//! when the stage has one (`ReasmLimits`, `UtpLimits`, `ParserLimits`, `RuleLimits`,
//! `InlineConfig`), which the sections below then take their defaults from. Hitting any cap
//! is counted (see `crate::stats`).

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
}

/// Caps that 0 would turn into "do nothing at all" (no flows, no swarms, no cache): refused
/// where they are written, naming the key (the YAML error adds where: the line and column of
/// its section).
macro_rules! at_least_one {
    ($($key:ident),*) => {
        mod at_least_one {
            $(
                pub(super) fn $key<'de, D, T>(d: D) -> Result<T, D::Error>
                where
                    D: serde::Deserializer<'de>,
                    T: serde::Deserialize<'de> + Default + PartialEq,
                {
                    let v = T::deserialize(d)?;
                    if v == T::default() {
                        return Err(serde::de::Error::custom(concat!(
                            stringify!($key),
                            ": 0 is not allowed (it would turn the work off entirely); give at least 1"
                        )));
                    }
                    Ok(v)
                }
            )*
        }
    };
}
at_least_one!(max_flows, max_swarms);

/// The cache's capacity: a size with a unit, and not 0 (as [`at_least_one!`]).
fn capacity_bytes<'de, D>(d: D) -> Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match crate::size::bytes(d)? {
        0 => Err(serde::de::Error::custom(
            "capacity_bytes: 0 is not allowed (it would turn the work off entirely); give at least 1",
        )),
        n => Ok(n),
    }
}

/// The store's policy: any the simulator knows except P2P-aware admission (see
/// [`crate::cache::policy::PolicySpec::store_can_run`]).
fn store_policy<'de, D>(d: D) -> Result<crate::cache::policy::PolicySpec, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let p = crate::cache::policy::PolicySpec::deserialize(d)?;
    if !p.store_can_run() {
        return Err(serde::de::Error::custom(crate::cache::CacheError::Policy(
            p.to_string(),
        )));
    }
    Ok(p)
}

/// Networks as CIDR, without host bits: 198.18.0.1/16 is refused, since what was meant
/// (198.18.0.0/16, or the host 198.18.0.1/32) cannot be known.
fn networks<'de, D>(d: D) -> Result<Vec<IpNet>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let nets = Vec::<IpNet>::deserialize(d)?;
    match nets.iter().find(|n| n.trunc() != **n) {
        Some(n) => Err(serde::de::Error::custom(host_bits(n))),
        None => Ok(nets),
    }
}

/// The complaint about a network written with host bits set.
pub fn host_bits(n: &IpNet) -> String {
    format!(
        "{n} has host bits set: write the network {} (or a host as /{})",
        n.trunc(),
        n.max_prefix_len()
    )
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Subscriber-side networks; traffic to and from them is what a box in the path saves.
    #[serde(deserialize_with = "networks")]
    pub subscriber_nets: Vec<IpNet>,
    pub flows: FlowConfig,
    pub reassembly: ReassemblyConfig,
    pub utp: UtpConfig,
    pub ip_fragments: FragConfig,
    pub peerwire: PeerwireConfig,
    pub swarms: SwarmConfig,
    pub cache: CacheConfig,
    pub capture: CaptureConfig,
    pub http: HttpConfig,
    /// The content listener (verified pieces over HTTP, the web seed): off by default.
    pub content: crate::content::ContentConfig,
    /// Inline mode: the splice's caps and timers.
    pub inline: crate::serve::InlineConfig,
    /// Caps of the policy rules' bookkeeping (popularity, audit log).
    pub policy: crate::rules::RuleLimits,
    /// Directory of .torrent files whose metainfo is known from the start.
    pub metainfo_dir: Option<PathBuf>,
    /// tap and inline look at `metainfo_dir` again while they run.
    pub metainfo_watch: MetainfoWatchConfig,
    /// tap and inline fetch the metainfo of swarms that show demand from their peers.
    pub metainfo_fetch: crate::fetch::FetchConfig,
    /// Policy rules file (YAML, `rules/default.yaml`); none caches every verified piece.
    /// Re-read on SIGHUP in tap mode.
    pub rules: Option<PathBuf>,
    /// Record SHA-1 and length of every reassembled TCP stream in the report (tests).
    pub record_streams: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MetainfoWatchConfig {
    /// Seconds between two looks at the .torrent directory for new or changed files (read
    /// without a restart); 0: read at start only.
    pub interval_secs: u64,
}

impl Default for MetainfoWatchConfig {
    fn default() -> Self {
        MetainfoWatchConfig { interval_secs: 5 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Kernel capture buffer (libpcap's default of 2 MiB drops on a busy link).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub buffer_bytes: usize,
    pub snaplen: u32,
    pub promiscuous: bool,
    /// BPF filter applied in the kernel, e.g. "tcp or udp".
    pub filter: Option<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            buffer_bytes: 256 << 20,
            snaplen: 65535,
            promiscuous: true,
            filter: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Metrics, JSON API and dashboard (tap and inline; replay only with --http).
    /// Loopback by default: expose it deliberately.
    pub listen: Option<std::net::SocketAddr>,
    /// Bearer token that `POST /api/v1/metainfo` must carry. Without one, posts are taken
    /// only while the service listens on loopback.
    pub metainfo_token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9750))),
            metainfo_token: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Directory of the piece cache; none means verified pieces are only counted.
    pub dir: Option<PathBuf>,
    /// Bytes of pieces kept; past it, `policy` decides which go.
    #[serde(deserialize_with = "capacity_bytes")]
    pub capacity_bytes: u64,
    /// Eviction (and admission) policy: lru, fifo, s3fifo, tinylfu, gdsf (docs/cache.md).
    #[serde(deserialize_with = "store_policy")]
    pub policy: crate::cache::policy::PolicySpec,
    /// Verified pieces waiting for the disk writer at most; memory is this times the piece
    /// length. When full, the engine waits for the disk (a replay never drops pieces).
    pub write_queue_pieces: usize,
    /// Group commit: written pieces are made durable (and only then indexed, so served)
    /// together once this many bytes are waiting ...
    #[serde(deserialize_with = "crate::size::bytes")]
    pub commit_bytes: u64,
    /// ... or this long after the first of them was written, whichever comes first.
    pub commit_interval_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let commit = crate::cache::CommitPolicy::default();
        CacheConfig {
            dir: None,
            capacity_bytes: 100 << 30,
            policy: crate::cache::policy::PolicySpec::store_default(),
            write_queue_pieces: 16,
            commit_bytes: commit.bytes,
            commit_interval_ms: u64::try_from(commit.interval.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Flows tracked at once (per worker); the least recently seen is evicted past it.
    #[serde(deserialize_with = "at_least_one::max_flows")]
    pub max_flows: usize,
    /// Idle time, in seconds of packet time, after which a TCP flow is finished.
    pub tcp_idle_timeout_secs: u64,
    /// Same for UDP.
    pub udp_idle_timeout_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReassemblyConfig {
    /// Out-of-order bytes held per direction before holes are given up on.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_ooo_bytes_per_direction: usize,
    /// Out-of-order segments (after coalescing) held per direction.
    pub max_ooo_segments_per_direction: usize,
    /// Out-of-order bytes held over all flows of one worker.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_ooo_bytes_total: usize,
    /// Delivered bytes remembered per direction to detect retransmissions with other bytes.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub conflict_window: usize,
    /// Segments starting further ahead than this are refused as implausible.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_ahead: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UtpConfig {
    /// Out-of-order uTP packets held per direction before holes are given up on.
    pub max_ooo_packets_per_direction: usize,
    /// Out-of-order uTP bytes held per direction (also within reassembly.max_ooo_bytes_total).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_ooo_bytes_per_direction: usize,
}

impl Default for UtpConfig {
    fn default() -> Self {
        let l = crate::flow::utp::UtpLimits::default();
        UtpConfig {
            max_ooo_packets_per_direction: l.max_ooo_packets,
            max_ooo_bytes_per_direction: l.max_ooo_bytes,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FragConfig {
    pub max_datagrams: usize,
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_bytes: usize,
    pub timeout_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerwireConfig {
    /// Largest non-PIECE message buffered (bitfield, extended); larger ones are skipped.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_message_len: u32,
    /// Bytes held while hunting for a message boundary after a gap or mid-stream.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub resync_window: usize,
    /// Bytes of a mid-stream flow searched for BitTorrent framing before giving up on it.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub probe_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmConfig {
    /// Info-hashes tracked (per worker); messages of further swarms count as unattributed.
    #[serde(deserialize_with = "at_least_one::max_swarms")]
    pub max_swarms: usize,
    /// Distinct (index, begin, length) blocks remembered per worker for `distinct_blocks`.
    pub max_distinct_blocks: usize,
    /// Bytes of blocks held for pieces being assembled (per worker); oldest piece out.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_assembly_bytes: usize,
    /// Of those, bytes of swarms whose metainfo is not known yet (quarantine).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_quarantine_bytes: usize,
    /// Threads hashing complete pieces beside parsing (per worker); 0 hashes on the
    /// worker's own thread.
    pub verify_threads: usize,
    /// Bytes held by complete pieces waiting for or under SHA-1 on those threads (per
    /// worker; at least one piece).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub verify_ahead_bytes: usize,
    /// Bytes of partly received blocks held over all connections (per worker).
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_block_buffer_bytes: usize,
    /// Swarms assembling BEP 9 metadata at once (per worker).
    pub max_metadata_swarms: usize,
    /// Verified pieces the policy rules refused for now (waiting for popularity) kept to be
    /// offered again when they next verify (per worker); past it such a piece is done.
    pub max_retry_pieces: usize,
    /// Different copies of one block kept while its piece is assembled (the piece hash
    /// decides which is right); further copies are dropped.
    pub max_block_copies: usize,
    /// Hashes spent on one piece searching combinations of its blocks' copies (poisoned
    /// swarms); past it only each sender's own complete set is still tried (one hash per
    /// sender), and the piece waits in assembly until the budget there needs its room.
    pub max_hash_attempts_per_piece: u32,
    /// Bytes of alternative block copies (beyond the first of each block start) held over
    /// all pieces (per worker); further alternatives are refused.
    #[serde(deserialize_with = "crate::size::bytes")]
    pub max_alternative_bytes: usize,
    /// Verified pieces whose blocks' digests are kept, so a copy arriving after its piece
    /// verified is still compared and a liar named (per worker); past it they are
    /// forgotten and start over. 0: late copies are not judged, and the digests are not
    /// taken (about 7 % of the hash thread's work).
    pub max_blame_pieces: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 262_144,
            tcp_idle_timeout_secs: 300,
            udp_idle_timeout_secs: 120,
        }
    }
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        let l = crate::flow::tcp::ReasmLimits::default();
        ReassemblyConfig {
            max_ooo_bytes_per_direction: l.max_ooo_bytes,
            max_ooo_segments_per_direction: l.max_ooo_segments,
            max_ooo_bytes_total: 512 << 20,
            conflict_window: l.conflict_window,
            max_ahead: l.max_ahead,
        }
    }
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            max_datagrams: 4096,
            max_bytes: 16 << 20,
            timeout_secs: 30,
        }
    }
}

impl Default for PeerwireConfig {
    fn default() -> Self {
        let l = crate::peerwire::ParserLimits::default();
        PeerwireConfig {
            max_message_len: l.max_message_len,
            resync_window: l.resync_window,
            probe_bytes: l.probe_bytes,
        }
    }
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            max_swarms: 65_536,
            max_distinct_blocks: 4_000_000,
            max_assembly_bytes: 256 << 20,
            max_quarantine_bytes: 16 << 20,
            verify_threads: 1,
            verify_ahead_bytes: 16 << 20,
            max_block_buffer_bytes: 64 << 20,
            max_metadata_swarms: 1024,
            max_retry_pieces: 1 << 20,
            max_block_copies: 8,
            max_hash_attempts_per_piece: 64,
            max_alternative_bytes: 64 << 20,
            max_blame_pieces: 65_536,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|msg| ConfigError::Parse {
            path: path.to_owned(),
            msg,
        })
    }

    /// Parse YAML; errors carry line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text).map_err(|e| {
            let msg = e.to_string();
            match e.location() {
                Some(l) if !msg.contains(" at line ") => {
                    format!("line {} column {}: {msg}", l.line(), l.column())
                }
                _ => msg,
            }
        })
    }

    pub fn is_subscriber(&self, ip: std::net::IpAddr) -> bool {
        self.subscriber_nets.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_caps_and_host_bits_are_refused_where_written() {
        for (yaml, key) in [
            ("flows:\n  max_flows: 0\n", "flows: max_flows"),
            ("inline:\n  workers: 0\n", "inline: workers"),
            (
                "cache:\n  dir: /tmp/x\n  capacity_bytes: 0\n",
                "cache: capacity_bytes",
            ),
            ("swarms:\n  max_swarms: 0\n", "swarms: max_swarms"),
        ] {
            let e = Config::parse(yaml).unwrap_err();
            assert!(
                e.contains(&format!("{key}: 0 is not allowed")) && e.contains("line 2 column 3"),
                "{e}"
            );
        }
        let e = Config::parse("subscriber_nets: [198.18.0.0/16, 198.19.0.1/16]\n").unwrap_err();
        assert!(
            e.contains("198.19.0.1/16 has host bits set: write the network 198.19.0.0/16")
                && e.contains("line 1"),
            "{e}"
        );
        assert!(Config::parse("subscriber_nets: [198.18.0.0/15, 198.18.0.1/32]\n").is_ok());
    }

    #[test]
    fn cache_policy_is_one_the_store_runs() {
        let c = Config::parse("cache:\n  policy: gdsf\n").unwrap();
        assert_eq!(c.cache.policy, crate::cache::policy::PolicySpec::Gdsf);
        assert_eq!(
            Config::default().cache.policy,
            crate::cache::policy::PolicySpec::store_default()
        );
        let e = Config::parse("cache:\n  policy: p2p-lru\n").unwrap_err();
        assert!(
            e.contains("policy p2p-lru: P2P-aware admission") && e.contains("line 2"),
            "{e}"
        );
        let e = Config::parse("cache:\n  policy: arc\n").unwrap_err();
        assert!(e.contains("\"arc\": policies are lru, fifo"), "{e}");
    }

    #[test]
    fn defaults_and_errors() {
        let c = Config::parse("flows:\n  max_flows: 10\n").unwrap();
        assert_eq!(c.flows.max_flows, 10);
        assert_eq!(c.flows.tcp_idle_timeout_secs, 300);
        let e = Config::parse("flows:\n  max_flow: 10\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// Every byte-count key takes a size with a unit: the example with each such value
    /// rewritten as KiB reads back the same.
    #[test]
    fn byte_keys_take_units() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/peercache.example.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rewritten = 0;
        let kib: Vec<String> = text
            .lines()
            .map(|l| {
                let Some((key, v)) = l.split_once(": ") else {
                    return l.to_string();
                };
                let byte_key = ["bytes", "window", "max_ahead", "_len", "_size"]
                    .iter()
                    .any(|w| key.trim().contains(w));
                match v.trim().parse::<u64>() {
                    Ok(n) if byte_key && !key.trim_start().starts_with('#') && n % 1024 == 0 => {
                        rewritten += 1;
                        format!("{key}: {}KiB", n / 1024)
                    }
                    _ => l.to_string(),
                }
            })
            .collect();
        assert!(rewritten >= 20, "{rewritten}");
        let a = Config::parse(&kib.join("\n")).unwrap();
        let b = Config::load(&path).unwrap();
        assert_eq!(
            serde_yaml::to_string(&a).unwrap(),
            serde_yaml::to_string(&b).unwrap()
        );
        // Refusals name the line and column.
        let e = Config::parse("cache:\n  capacity_bytes: 0GiB\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("at least 1"), "{e}");
        let e = Config::parse("reassembly:\n  max_ahead: 1.5\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("whole bytes"), "{e}");
    }

    /// The annotated example in deploy/ (the package's /etc/peercache/peercache.yaml) must
    /// state exactly the compiled-in defaults, but for the three paths of the installed
    /// service.
    #[test]
    fn example_config_is_the_defaults_but_the_service_paths() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/peercache.example.yaml");
        let mut c = Config::load(&path).unwrap();
        assert_eq!(c.cache.dir.take(), Some("/var/cache/peercache".into()));
        assert_eq!(
            c.metainfo_dir.take(),
            Some("/var/lib/peercache/torrents".into())
        );
        assert_eq!(c.rules.take(), Some("/etc/peercache/rules.yaml".into()));
        let a = serde_yaml::to_string(&c).unwrap();
        let b = serde_yaml::to_string(&Config::default()).unwrap();
        assert_eq!(a, b);
    }
}
