//! Prometheus text exposition (format 0.0.4) of one snapshot. Every name starts with
//! `peercache_`; cumulative counts are counters ending in `_total`, current values are
//! gauges. Labels take values from small fixed sets only, except `info_hash` on the
//! top-swarms gauges, which is capped at `TOP_SWARMS` series so a busy link cannot blow up
//! the scraper's memory. The names are documented in docs/metrics.md.
//!
//! Counters are rendered from their declarations (`crate::counter::counters!`), group by
//! group; what is written out by hand here is what is not a declared counter: process
//! facts, decode errors by kind, ratios, per-rule and per-swarm labels, and the splice.

use std::fmt::{Display, Write};

use crate::stats::{Counter, Counters};

use super::top::top_swarms;
use super::Snapshot;

/// Swarms exported with an `info_hash` label, most requested first.
pub const TOP_SWARMS: usize = 20;

/// Decode error kinds the engine can count (docs/report.md). Emitted even at zero, so that
/// `rate()` has a series from the first scrape instead of appearing with the first error.
const DECODE_ERROR_KINDS: [&str; 8] = [
    "truncated",
    "link",
    "not_ip",
    "ipv4",
    "ipv6",
    "ip_extension",
    "tcp",
    "udp",
];

/// Builds the exposition text; one `family` call per metric name, then its samples.
struct Expo {
    out: String,
}

impl Expo {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // HELP text escapes only backslash and newline (format 0.0.4).
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP peercache_{name} {help}");
        let _ = writeln!(self.out, "# TYPE peercache_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        let _ = write!(self.out, "peercache_{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.one(name, "gauge", help, value);
    }

    /// Every exported field of a declared group: one family per metric name (in order of
    /// first appearance), one sample per field of it.
    fn group<C: Counters>(&mut self, c: &C) {
        let mut samples: Vec<(&'static Counter, u64)> = Vec::with_capacity(C::DECLARED.len());
        c.for_each(&mut |d, v| {
            if d.kind.prometheus_type().is_some() {
                samples.push((d, v));
            }
        });
        for (i, (d, _)) in samples.iter().enumerate() {
            let Some(kind) = d.kind.prometheus_type() else {
                continue;
            };
            if samples[..i].iter().any(|(p, _)| p.metric == d.metric) {
                continue; // family already written
            }
            self.family(d.metric, kind, d.help);
            for (p, v) in samples.iter().filter(|(p, _)| p.metric == d.metric) {
                self.sample(p.metric, p.labels, v);
            }
        }
    }
}

/// Label values may come from the wire (mode and source do not today, but a future label
/// might): escape what the format requires.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Prometheus floats: Rust prints NaN and infinities differently from Go.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

pub fn render(s: &Snapshot) -> String {
    let mut e = Expo {
        out: String::with_capacity(16 << 10),
    };
    process(&mut e, s);
    traffic(&mut e, s);
    bittorrent(&mut e, s);
    cache(&mut e, s);
    rules(&mut e, s);
    proven_bad(&mut e, s);
    // The box's own metadata fetches (tap and inline, when enabled).
    if let Some(f) = &s.report.metainfo_fetch {
        e.group(f);
    }
    // What left the box, by route; the content listener when it is on.
    if let Some(c) = &s.report.served {
        e.group(c);
    }
    if let Some(c) = &s.report.content {
        e.group(c);
    }
    // The request trace (--requests-out), when one is being written.
    if let Some(c) = &s.report.requests_out {
        e.group(c);
    }
    reassembly(&mut e, s);
    inline(&mut e, s);
    top(&mut e, s);
    e.out
}

/// Inline mode only: what the splice answered, forwarded and retransmitted; the by-reason
/// maps by hand (a reason's series appears with its first count).
fn inline(e: &mut Expo, s: &Snapshot) {
    let Some(c) = &s.inline else { return };
    e.group(&c.counts);
    e.family(
        "inline_bypassed_requests_total",
        "counter",
        "REQUESTs forwarded although they might have been answered, by reason.",
    );
    for (reason, n) in &c.bypassed {
        e.sample("inline_bypassed_requests_total", &[("reason", reason)], n);
    }
    e.family(
        "inline_bypassed_connections_total",
        "counter",
        "Connections that stopped being served (fail-open), by reason.",
    );
    for (reason, n) in &c.connections_bypassed {
        e.sample(
            "inline_bypassed_connections_total",
            &[("reason", reason)],
            n,
        );
    }
    // The uTP share (the TCP share is the total less it).
    e.group(&c.utp);
    e.family(
        "inline_utp_bypassed_requests_total",
        "counter",
        "REQUESTs on uTP connections forwarded although they might have been answered, by reason.",
    );
    for (reason, n) in &c.utp_bypassed {
        e.sample(
            "inline_utp_bypassed_requests_total",
            &[("reason", reason)],
            n,
        );
    }
    e.family(
        "inline_utp_bypassed_connections_total",
        "counter",
        "uTP connections that stopped being served (fail-open), by reason.",
    );
    for (reason, n) in &c.utp_connections_bypassed {
        e.sample(
            "inline_utp_bypassed_connections_total",
            &[("reason", reason)],
            n,
        );
    }
}

fn process(e: &mut Expo, s: &Snapshot) {
    e.family(
        "info",
        "gauge",
        "Always 1; the labels say which mode and version run.",
    );
    e.sample(
        "info",
        &[("mode", &s.mode), ("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.gauge(
        "start_time_seconds",
        "UNIX time the run started.",
        float(s.started_unix),
    );
    e.gauge(
        "snapshot_time_seconds",
        "UNIX time of the snapshot these values come from (published about once a second).",
        float(s.unix_time),
    );
    e.gauge(
        "finished",
        "1 once the input is exhausted (replay done), else 0.",
        u8::from(s.finished),
    );
    e.gauge(
        "input_read_bytes",
        "Bytes of the input files read so far (replay).",
        s.input_read_bytes,
    );
    e.gauge(
        "input_size_bytes",
        "Bytes of all input files (replay; 0 on a live interface).",
        s.input_total_bytes,
    );
}

fn traffic(e: &mut Expo, s: &Snapshot) {
    let r = &s.report;
    e.group(&r.totals());
    e.family(
        "decode_errors_total",
        "counter",
        "Frames skipped because they could not be decoded, by kind.",
    );
    for kind in DECODE_ERROR_KINDS {
        let n = r.decode_errors.get(kind).copied().unwrap_or(0);
        e.sample("decode_errors_total", &[("kind", kind)], n);
    }
    // Kinds added to the engine later still show up (their names are static strings).
    for (kind, n) in &r.decode_errors {
        if !DECODE_ERROR_KINDS.contains(kind) {
            e.sample("decode_errors_total", &[("kind", kind)], n);
        }
    }
    e.group(&s.capture);
    e.group(&r.flows);
    e.group(&r.ip_fragments);
}

fn bittorrent(e: &mut Expo, s: &Snapshot) {
    let r = &s.report;
    e.group(&r.bittorrent);
    e.group(&r.peerwire);
    e.gauge(
        "swarms",
        "Swarms (info-hashes) seen so far, up to swarms.max_swarms.",
        r.swarms.len(),
    );
    // Per-swarm counters, summed over the identified swarms (not `unattributed`).
    let mut sum = crate::stats::SwarmCounters::default();
    for w in &r.swarms {
        sum.merge(&w.counters());
    }
    e.group(&sum);
}

fn cache(e: &mut Expo, s: &Snapshot) {
    let c = &s.report.cache;
    e.group(&c.store);
    if let Some(cap) = s.cache_capacity_bytes {
        e.gauge(
            "cache_capacity_bytes",
            "Configured capacity of the piece cache.",
            cap,
        );
    }
    e.group(&c.hit_counters());
    e.gauge(
        "cache_hit_ratio",
        "hits / (hits + misses) over the run, by requests; 0 before any request.",
        float(c.hit_ratio),
    );
    e.gauge(
        "cache_hit_ratio_bytes",
        "hit_bytes / (hit_bytes + miss_bytes) over the run; 0 before any request.",
        float(c.hit_ratio_bytes),
    );
}

/// Peers proven to have sent bad blocks, over all swarms: their number, and the bytes of
/// the worst `PROVEN_BAD_SERIES` of them by address (a label per peer, so bounded: a swarm
/// full of liars must not blow up the scrape).
const PROVEN_BAD_SERIES: usize = 32;

fn proven_bad(e: &mut Expo, s: &Snapshot) {
    let mut by_peer: std::collections::BTreeMap<&str, u64> = Default::default();
    for sw in &s.report.swarms {
        for (p, b) in &sw.proven_bad_peers {
            *by_peer.entry(p.as_str()).or_default() += b.bytes;
        }
    }
    e.gauge(
        "proven_bad_peers",
        "Peers proven to have sent bad blocks (differing from their verified piece), over all swarms.",
        by_peer.len().to_string(),
    );
    let mut worst: Vec<(&str, u64)> = by_peer.into_iter().collect();
    worst.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    worst.truncate(PROVEN_BAD_SERIES);
    e.family(
        "peer_proven_bad_bytes_total",
        "counter",
        "Bytes of bad blocks proven per peer (the 32 worst peers; all of them in the report's proven_bad_peers).",
    );
    for (p, v) in worst {
        e.sample("peer_proven_bad_bytes_total", &[("peer", p)], v);
    }
}

/// Policy rule decisions: verified pieces each rule cached, refused or ignored, and bytes
/// its takedowns purged. Absent without a rules file.
fn rules(e: &mut Expo, s: &Snapshot) {
    if let Some(p) = &s.report.policy {
        e.group(p);
    }

    let r = &s.report.rules;
    if r.is_empty() {
        return;
    }
    e.family(
        "rule_decisions_total",
        "counter",
        "Verified pieces decided by each policy rule, by decision (cached, refused, ignored).",
    );
    for (name, c) in r {
        let ignored = c.matched.saturating_sub(c.cached + c.refused);
        for (d, v) in [
            ("cached", c.cached),
            ("refused", c.refused),
            ("ignored", ignored),
        ] {
            e.sample(
                "rule_decisions_total",
                &[("rule", name), ("decision", d)],
                v,
            );
        }
    }
    e.family(
        "rule_purged_bytes_total",
        "counter",
        "Bytes removed from the cache by a rule (blocklist takedowns).",
    );
    for (name, c) in r {
        e.sample("rule_purged_bytes_total", &[("rule", name)], c.purged_bytes);
    }
}

fn reassembly(e: &mut Expo, s: &Snapshot) {
    e.group(&s.report.reassembly);
    e.group(&s.report.utp);
}

fn top(e: &mut Expo, s: &Snapshot) {
    let top = top_swarms(&s.report, TOP_SWARMS);
    e.family(
        "top_swarm_requests",
        "gauge",
        "REQUEST messages of the 20 most requested swarms (popularity), by info-hash.",
    );
    for w in &top {
        e.sample(
            "top_swarm_requests",
            &[("info_hash", &w.info_hash)],
            w.request_messages,
        );
    }
    e.family(
        "top_swarm_piece_bytes",
        "gauge",
        "PIECE bytes seen for the same 20 swarms, by info-hash.",
    );
    for w in &top {
        e.sample(
            "top_swarm_piece_bytes",
            &[("info_hash", &w.info_hash)],
            w.piece_bytes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn floats_use_prometheus_spelling() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.5), "0.5");
    }
}

/// The declared counters reach both the JSON and `/metrics`.
#[cfg(test)]
mod declared {
    use serde_json::Value;

    use super::*;
    use crate::flow::{ipfrag::FragCounters, tcp::ReasmCounters, utp::UtpCounters};
    use crate::metrics::CaptureCounters;
    use crate::report::Report;
    use crate::serve::{
        counters::{SpliceCounts, UtpSpliceCounts},
        ServeCounters,
    };
    use crate::stats::*;

    /// Every declaration, by group.
    fn groups() -> Vec<(&'static str, &'static [Counter])> {
        vec![
            ("EngineCounters", EngineCounters::DECLARED),
            ("FlowCounters", FlowCounters::DECLARED),
            ("BtCounters", BtCounters::DECLARED),
            ("PeerwireCounters", PeerwireCounters::DECLARED),
            ("HitCounters", HitCounters::DECLARED),
            ("SwarmCounters", SwarmCounters::DECLARED),
            ("StoreCounters", StoreCounters::DECLARED),
            ("PolicyCounters", PolicyCounters::DECLARED),
            ("FetchCounters", crate::fetch::FetchCounters::DECLARED),
            ("ReasmCounters", ReasmCounters::DECLARED),
            ("UtpCounters", UtpCounters::DECLARED),
            ("FragCounters", FragCounters::DECLARED),
            ("CaptureCounters", CaptureCounters::DECLARED),
            ("SpliceCounts", SpliceCounts::DECLARED),
            ("UtpSpliceCounts", UtpSpliceCounts::DECLARED),
        ]
    }

    /// Gives every field of `c` a value no other field has, and records it.
    fn fill<C: Counters>(c: &mut C, next: &mut u64, out: &mut Vec<(&'static Counter, u64)>) {
        c.for_each_mut(&mut |d, v| {
            *next += 1;
            *v = 1000 + *next;
            out.push((d, *v));
        });
    }

    /// A snapshot in which every declared counter has a distinct value (one swarm, rules
    /// installed, a store), and those values.
    fn full_snapshot() -> (Snapshot, Vec<(&'static Counter, u64)>) {
        let (mut n, mut want) = (0, Vec::new());
        let mut st = crate::report::Stats::default();
        fill(&mut st.totals, &mut n, &mut want);
        fill(&mut st.flows, &mut n, &mut want);
        fill(&mut st.bittorrent, &mut n, &mut want);
        fill(&mut st.peerwire, &mut n, &mut want);
        fill(&mut st.hits, &mut n, &mut want);
        fill(&mut st.reassembly, &mut n, &mut want);
        fill(&mut st.utp, &mut n, &mut want);
        fill(&mut st.ip_fragments, &mut n, &mut want);
        let mut sw = SwarmStats::default();
        fill(&mut sw.counts, &mut n, &mut want);
        st.swarms.insert([7; 20].into(), sw);
        let mut r = Report::new(&st, Vec::new());
        fill(&mut r.cache.store, &mut n, &mut want);
        let mut policy = PolicyCounters::default();
        fill(&mut policy, &mut n, &mut want);
        r.policy = Some(policy);
        let mut fetch = crate::fetch::FetchCounters::default();
        fill(&mut fetch, &mut n, &mut want);
        r.metainfo_fetch = Some(fetch);
        let mut capture = CaptureCounters::default();
        fill(&mut capture, &mut n, &mut want);
        let mut serve = ServeCounters::default();
        fill(&mut serve.counts, &mut n, &mut want);
        fill(&mut serve.utp, &mut n, &mut want);
        let snap = Snapshot {
            mode: "replay".into(),
            unix_time: 2.0,
            started_unix: 1.0,
            source: "test".into(),
            input_read_bytes: 0,
            input_total_bytes: 0,
            capture,
            cache_capacity_bytes: Some(1),
            report: r,
            finished: true,
            inline: Some(serve),
        };
        (snap, want)
    }

    /// Whether some object in `v` has `key` with value `n`.
    fn has(v: &Value, key: &str, n: u64) -> bool {
        match v {
            Value::Object(m) => {
                m.get(key).and_then(Value::as_u64) == Some(n) || m.values().any(|x| has(x, key, n))
            }
            Value::Array(a) => a.iter().any(|x| has(x, key, n)),
            _ => false,
        }
    }

    #[test]
    fn every_declared_counter_is_in_the_json() {
        let (snap, want) = full_snapshot();
        assert_eq!(
            want.len(),
            groups().iter().map(|(_, g)| g.len()).sum::<usize>(),
            "full_snapshot must fill every group"
        );
        let json = serde_json::to_value(&snap).unwrap();
        for (d, v) in want {
            assert!(has(&json, d.key, v), "{} = {v} is not in the JSON", d.key);
        }
    }

    #[test]
    fn every_declared_counter_is_in_the_exposition() {
        let (snap, want) = full_snapshot();
        let text = render(&snap);
        for (d, v) in want {
            if matches!(d.kind, Kind::TotalOf | Kind::Elsewhere) {
                continue;
            }
            let labels: Vec<String> = d
                .labels
                .iter()
                .map(|(k, l)| format!("{k}=\"{l}\""))
                .collect();
            let line = if labels.is_empty() {
                format!("peercache_{} {v}\n", d.metric)
            } else {
                format!("peercache_{}{{{}}} {v}\n", d.metric, labels.join(","))
            };
            assert!(text.contains(&line), "{} missing: {line}", d.key);
            let kind = d.kind.prometheus_type().unwrap();
            let ty = format!("# TYPE peercache_{} {kind}\n", d.metric);
            assert!(text.contains(&ty), "{ty}");
        }
        // One HELP and TYPE per family, however many groups and fields feed it.
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n, "a family is written twice");
    }

    #[test]
    fn declarations_are_consistent() {
        let all = groups();
        for (g, decl) in &all {
            for d in decl.iter() {
                assert!(!d.help.is_empty() && !d.metric.is_empty(), "{g}.{}", d.key);
                let family: Vec<&Counter> = decl
                    .iter()
                    .filter(|x| {
                        x.metric == d.metric && !matches!(x.kind, Kind::TotalOf | Kind::Elsewhere)
                    })
                    .collect();
                if d.kind == Kind::Elsewhere {
                    // Another group exports the family.
                    assert!(
                        all.iter().any(|(h, other)| h != g
                            && other
                                .iter()
                                .any(|x| x.metric == d.metric && x.kind == Kind::Counter)),
                        "{g}.{}: {} is exported by no other group",
                        d.key,
                        d.metric
                    );
                    continue;
                }
                if d.kind == Kind::TotalOf {
                    // The total of a family declared beside it, whose series are labelled.
                    assert!(family.len() > 1, "{g}.{}: no labelled family", d.key);
                    continue;
                }
                assert!(
                    d.metric.ends_with("_total") == (d.kind == Kind::Counter),
                    "{g}.{}",
                    d.key
                );
                for x in family {
                    assert_eq!((x.kind, x.help), (d.kind, d.help), "{g}.{}", x.key);
                    assert!(x.labels != d.labels || std::ptr::eq(x, d), "{g}.{}", x.key);
                }
                // A family belongs to one group.
                for (h, other) in &all {
                    if h != g {
                        assert!(
                            other
                                .iter()
                                .all(|x| x.metric != d.metric || x.kind == Kind::Elsewhere),
                            "{g}/{h}: {}",
                            d.metric
                        );
                    }
                }
            }
        }
    }
}

/// The inline counters render as they did before they were declared: the JSON byte for
/// byte, `/metrics` family by family (HELP, TYPE, samples); the expected texts were captured
/// from the hand-written rendering. New counts add keys and families, nothing else changes.
#[cfg(test)]
mod inline_unchanged {
    use super::*;
    use crate::serve::ServeCounters;
    use crate::stats::Counters;

    /// The inline report's object as the hand-written code produced it (every count distinct;
    /// the last two keys were counted but not shown then, and are here as the code writes
    /// them now).
    const JSON: &str = r#"{
  "connections": 104,
  "connections_spliced": 105,
  "requests": 112,
  "served_blocks": 117,
  "served_bytes": 118,
  "misses": 110,
  "miss_bytes": 109,
  "bypassed": {
    "a\"b": 3,
    "overload": 7,
    "queue_full": 9
  },
  "connections_bypassed": {
    "overload": 13,
    "rst": 11
  },
  "split_requests_answered": 119,
  "cancels_absorbed": 103,
  "injected_segments": 107,
  "retransmitted_segments": 115,
  "retransmitted_bytes": 114,
  "retransmits_abandoned": 113,
  "rewritten_segments": 116,
  "split_segments": 120,
  "bad_checksum_dropped": 102,
  "read_failures": 111,
  "engine_dropped": 106,
  "answered_evicted": 101,
  "insertion_points_full": 108,
  "mse_connections_served": 121,
  "mse_served_blocks": 122,
  "utp": {
    "connections": 201,
    "connections_spliced": 202,
    "requests": 203,
    "served_blocks": 204,
    "served_bytes": 205,
    "misses": 206,
    "injected_packets": 207,
    "retransmitted_packets": 208,
    "retransmitted_bytes": 209,
    "retransmits_abandoned": 210,
    "acks_absorbed": 211,
    "rewritten_packets": 212,
    "bypassed": {
      "gap": 5
    },
    "connections_bypassed": {
      "gap": 2
    }
  }
}"#;

    /// The inline families as the hand-written code rendered the same counts.
    const EXPOSITION: &str = r#"# HELP peercache_inline_connections_total TCP connections the bridge saw open and tracked.
# TYPE peercache_inline_connections_total counter
peercache_inline_connections_total 104
# HELP peercache_inline_connections_spliced_total Connections into which at least one cached block was inserted.
# TYPE peercache_inline_connections_spliced_total counter
peercache_inline_connections_spliced_total 105
# HELP peercache_inline_requests_total REQUESTs from subscribers on tracked connections.
# TYPE peercache_inline_requests_total counter
peercache_inline_requests_total 112
# HELP peercache_inline_served_blocks_total REQUESTs answered from the cache (hits): blocks inserted toward subscribers.
# TYPE peercache_inline_served_blocks_total counter
peercache_inline_served_blocks_total 117
# HELP peercache_inline_served_bytes_total Block payload bytes served from the cache (bytes that did not cross transit).
# TYPE peercache_inline_served_bytes_total counter
peercache_inline_served_bytes_total 118
# HELP peercache_inline_misses_total REQUESTs for blocks the cache does not hold (forwarded upstream).
# TYPE peercache_inline_misses_total counter
peercache_inline_misses_total 110
# HELP peercache_inline_miss_bytes_total Block bytes requested but not cached.
# TYPE peercache_inline_miss_bytes_total counter
peercache_inline_miss_bytes_total 109
# HELP peercache_inline_bypassed_requests_total REQUESTs forwarded although they might have been answered, by reason.
# TYPE peercache_inline_bypassed_requests_total counter
peercache_inline_bypassed_requests_total{reason="a\"b"} 3
peercache_inline_bypassed_requests_total{reason="overload"} 7
peercache_inline_bypassed_requests_total{reason="queue_full"} 9
# HELP peercache_inline_bypassed_connections_total Connections that stopped being served (fail-open), by reason.
# TYPE peercache_inline_bypassed_connections_total counter
peercache_inline_bypassed_connections_total{reason="overload"} 13
peercache_inline_bypassed_connections_total{reason="rst"} 11
# HELP peercache_inline_injected_segments_total Segments sent toward subscribers carrying inserted bytes (first sends).
# TYPE peercache_inline_injected_segments_total counter
peercache_inline_injected_segments_total 107
# HELP peercache_inline_retransmitted_segments_total Inserted segments sent again because the subscriber had not acked them.
# TYPE peercache_inline_retransmitted_segments_total counter
peercache_inline_retransmitted_segments_total 115
# HELP peercache_inline_retransmitted_bytes_total Bytes of inserted segments sent again.
# TYPE peercache_inline_retransmitted_bytes_total counter
peercache_inline_retransmitted_bytes_total 114
# HELP peercache_inline_retransmits_abandoned_total Inserted segments given up after inline.max_retransmits.
# TYPE peercache_inline_retransmits_abandoned_total counter
peercache_inline_retransmits_abandoned_total 113
# HELP peercache_inline_rewritten_segments_total Segments rewritten in place (sequence/ack translation, substitutions).
# TYPE peercache_inline_rewritten_segments_total counter
peercache_inline_rewritten_segments_total 116
# HELP peercache_inline_split_segments_total Remote segments split at an insertion point.
# TYPE peercache_inline_split_segments_total counter
peercache_inline_split_segments_total 120
# HELP peercache_inline_split_requests_answered_total REQUESTs split across segments: answered from the cache and also left to the remote.
# TYPE peercache_inline_split_requests_answered_total counter
peercache_inline_split_requests_answered_total 119
# HELP peercache_inline_cancels_absorbed_total CANCELs of answered blocks replaced by no-ops.
# TYPE peercache_inline_cancels_absorbed_total counter
peercache_inline_cancels_absorbed_total 103
# HELP peercache_inline_bad_checksum_dropped_total Remote segments that had to be split but arrived with a bad checksum (dropped).
# TYPE peercache_inline_bad_checksum_dropped_total counter
peercache_inline_bad_checksum_dropped_total 102
# HELP peercache_inline_read_failures_total Cached blocks that could not be read back verified (not served).
# TYPE peercache_inline_read_failures_total counter
peercache_inline_read_failures_total 111
"#;

    /// The series the counts declared since add (the two that used to reach no exposition,
    /// then the MSE/PE ones).
    const NEW: &str = r#"# HELP peercache_inline_answered_evicted_total Answered blocks forgotten because a connection already remembered inline.max_answered_per_connection of them.
# TYPE peercache_inline_answered_evicted_total counter
peercache_inline_answered_evicted_total 101
# HELP peercache_inline_insertion_points_full_total REQUESTs forwarded because their connection had inline.max_insertion_points insertion points outstanding.
# TYPE peercache_inline_insertion_points_full_total counter
peercache_inline_insertion_points_full_total 108
# HELP peercache_inline_mse_connections_served_total Connections that opened with MSE/PE and negotiated plaintext, served (at least one block inserted).
# TYPE peercache_inline_mse_connections_served_total counter
peercache_inline_mse_connections_served_total 121
# HELP peercache_inline_mse_served_blocks_total Blocks served on connections that opened with MSE/PE and negotiated plaintext.
# TYPE peercache_inline_mse_served_blocks_total counter
peercache_inline_mse_served_blocks_total 122
# HELP peercache_inline_utp_connections_total uTP connections the bridge saw open (SYN) and tracked.
# TYPE peercache_inline_utp_connections_total counter
peercache_inline_utp_connections_total 201
# HELP peercache_inline_utp_connections_spliced_total uTP connections into which at least one cached block was inserted.
# TYPE peercache_inline_utp_connections_spliced_total counter
peercache_inline_utp_connections_spliced_total 202
# HELP peercache_inline_utp_requests_total REQUESTs from subscribers on tracked uTP connections.
# TYPE peercache_inline_utp_requests_total counter
peercache_inline_utp_requests_total 203
# HELP peercache_inline_utp_served_blocks_total REQUESTs on uTP connections answered from the cache.
# TYPE peercache_inline_utp_served_blocks_total counter
peercache_inline_utp_served_blocks_total 204
# HELP peercache_inline_utp_served_bytes_total Block payload bytes served from the cache over uTP.
# TYPE peercache_inline_utp_served_bytes_total counter
peercache_inline_utp_served_bytes_total 205
# HELP peercache_inline_utp_misses_total REQUESTs on uTP connections for blocks the cache does not hold.
# TYPE peercache_inline_utp_misses_total counter
peercache_inline_utp_misses_total 206
# HELP peercache_inline_utp_injected_packets_total uTP DATA packets the box sent toward subscribers carrying inserted bytes (first sends).
# TYPE peercache_inline_utp_injected_packets_total counter
peercache_inline_utp_injected_packets_total 207
# HELP peercache_inline_utp_retransmitted_packets_total Inserted uTP packets sent again (timeout, or the subscriber's selective ack showed one missing).
# TYPE peercache_inline_utp_retransmitted_packets_total counter
peercache_inline_utp_retransmitted_packets_total 208
# HELP peercache_inline_utp_retransmitted_bytes_total Payload bytes of inserted uTP packets sent again.
# TYPE peercache_inline_utp_retransmitted_bytes_total counter
peercache_inline_utp_retransmitted_bytes_total 209
# HELP peercache_inline_utp_retransmits_abandoned_total Inserted uTP packets given up after inline.max_retransmits.
# TYPE peercache_inline_utp_retransmits_abandoned_total counter
peercache_inline_utp_retransmits_abandoned_total 210
# HELP peercache_inline_utp_acks_absorbed_total Subscriber STATE packets that only acked inserted packets, kept from the remote (it would read them as duplicate acks).
# TYPE peercache_inline_utp_acks_absorbed_total counter
peercache_inline_utp_acks_absorbed_total 211
# HELP peercache_inline_utp_rewritten_packets_total uTP packets rewritten in place (numbers, acks, selective acks, window, substitutions).
# TYPE peercache_inline_utp_rewritten_packets_total counter
peercache_inline_utp_rewritten_packets_total 212
# HELP peercache_inline_utp_bypassed_requests_total REQUESTs on uTP connections forwarded although they might have been answered, by reason.
# TYPE peercache_inline_utp_bypassed_requests_total counter
peercache_inline_utp_bypassed_requests_total{reason="gap"} 5
# HELP peercache_inline_utp_bypassed_connections_total uTP connections that stopped being served (fail-open), by reason.
# TYPE peercache_inline_utp_bypassed_connections_total counter
peercache_inline_utp_bypassed_connections_total{reason="gap"} 2
"#;

    /// Counters holding the values of `JSON`.
    fn counters() -> ServeCounters {
        let v: serde_json::Value = serde_json::from_str(JSON).unwrap();
        let reasons = |k: &str| {
            v[k].as_object()
                .unwrap()
                .iter()
                .map(|(r, n)| (r.clone(), n.as_u64().unwrap()))
                .collect()
        };
        let mut c = ServeCounters {
            bypassed: reasons("bypassed"),
            connections_bypassed: reasons("connections_bypassed"),
            ..ServeCounters::default()
        };
        c.counts
            .for_each_mut(&mut |d, x| *x = v[d.key].as_u64().unwrap());
        let u = &v["utp"];
        c.utp
            .for_each_mut(&mut |d, x| *x = u[d.key].as_u64().unwrap());
        let ureasons = |k: &str| {
            u[k].as_object()
                .unwrap()
                .iter()
                .map(|(r, n)| (r.clone(), n.as_u64().unwrap()))
                .collect()
        };
        c.utp_bypassed = ureasons("bypassed");
        c.utp_connections_bypassed = ureasons("connections_bypassed");
        c
    }

    /// The exposition cut into families (HELP line, TYPE line, samples), sorted: Prometheus
    /// reads families in any order.
    fn families(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("# HELP ") || out.is_empty() {
                out.push(String::new());
            }
            let f = out.last_mut().unwrap();
            f.push_str(line);
            f.push('\n');
        }
        out.sort();
        out
    }

    #[test]
    fn the_inline_json_is_unchanged() {
        let c = counters();
        assert_eq!(serde_json::to_string_pretty(&c).unwrap(), JSON);
        // Every declared count went through `for_each_mut` from a distinct value.
        let mut seen = Vec::new();
        c.counts.for_each(&mut |_, v| seen.push(v));
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen.len(),
            crate::serve::counters::SpliceCounts::DECLARED.len()
        );
    }

    #[test]
    fn the_inline_exposition_is_unchanged_plus_the_new_counts() {
        let mut e = Expo { out: String::new() };
        let snap = Snapshot {
            mode: "inline".into(),
            unix_time: 2.0,
            started_unix: 1.0,
            source: "test".into(),
            input_read_bytes: 0,
            input_total_bytes: 0,
            capture: Default::default(),
            cache_capacity_bytes: None,
            report: crate::report::Report::new(&crate::report::Stats::default(), Vec::new()),
            finished: false,
            inline: Some(counters()),
        };
        inline(&mut e, &snap);
        assert_eq!(families(&e.out), families(&format!("{EXPOSITION}{NEW}")));
        // And in the whole page, once.
        let page = render(&snap);
        for f in families(&format!("{EXPOSITION}{NEW}")) {
            assert_eq!(page.matches(&f).count(), 1, "{f}");
        }
    }
}
