//! Prometheus text exposition (format 0.0.4) of one snapshot. Every name starts with
//! `peercache_`; cumulative counts are counters ending in `_total`, current values are
//! gauges. Labels take values from small fixed sets only, except `info_hash` on the
//! top-swarms gauges, which is capped at `TOP_SWARMS` series so a busy link cannot blow up
//! the scraper's memory. The names are documented in the README ("Metrics and dashboard").

use std::fmt::{Display, Write};

use super::top::top_swarms;
use super::Snapshot;

/// Swarms exported with an `info_hash` label, most requested first.
pub const TOP_SWARMS: usize = 20;

/// Decode error kinds the engine can count (README schema). Emitted even at zero, so that
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

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.one(name, "counter", help, value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.one(name, "gauge", help, value);
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
    reassembly(&mut e, s);
    inline(&mut e, s);
    top(&mut e, s);
    e.out
}

/// Inline mode only: what the splice answered, forwarded and retransmitted.
fn inline(e: &mut Expo, s: &Snapshot) {
    let Some(c) = &s.inline else { return };
    e.counter(
        "inline_connections_total",
        "TCP connections the bridge saw open and tracked.",
        c.connections,
    );
    e.counter(
        "inline_connections_spliced_total",
        "Connections into which at least one cached block was inserted.",
        c.connections_spliced,
    );
    e.counter(
        "inline_requests_total",
        "REQUESTs from subscribers on tracked connections.",
        c.requests,
    );
    e.counter(
        "inline_served_blocks_total",
        "REQUESTs answered from the cache (hits): blocks inserted toward subscribers.",
        c.served_blocks,
    );
    e.counter(
        "inline_served_bytes_total",
        "Block payload bytes served from the cache (bytes that did not cross transit).",
        c.served_bytes,
    );
    e.counter(
        "inline_misses_total",
        "REQUESTs for blocks the cache does not hold (forwarded upstream).",
        c.misses,
    );
    e.counter(
        "inline_miss_bytes_total",
        "Block bytes requested but not cached.",
        c.miss_bytes,
    );
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
    e.counter(
        "inline_injected_segments_total",
        "Segments sent toward subscribers carrying inserted bytes (first sends).",
        c.injected_segments,
    );
    e.counter(
        "inline_retransmitted_segments_total",
        "Inserted segments sent again because the subscriber had not acked them.",
        c.retransmitted_segments,
    );
    e.counter(
        "inline_retransmitted_bytes_total",
        "Bytes of inserted segments sent again.",
        c.retransmitted_bytes,
    );
    e.counter(
        "inline_retransmits_abandoned_total",
        "Inserted segments given up after inline.max_retransmits.",
        c.retransmits_abandoned,
    );
    e.counter(
        "inline_rewritten_segments_total",
        "Segments rewritten in place (sequence/ack translation, substitutions).",
        c.rewritten_segments,
    );
    e.counter(
        "inline_split_segments_total",
        "Remote segments split at an insertion point.",
        c.split_segments,
    );
    e.counter(
        "inline_split_requests_answered_total",
        "REQUESTs split across segments: answered from the cache and also left to the remote.",
        c.split_requests_answered,
    );
    e.counter(
        "inline_cancels_absorbed_total",
        "CANCELs of answered blocks replaced by no-ops.",
        c.cancels_absorbed,
    );
    e.counter(
        "inline_bad_checksum_dropped_total",
        "Remote segments that had to be split but arrived with a bad checksum (dropped).",
        c.bad_checksum_dropped,
    );
    e.counter(
        "inline_read_failures_total",
        "Cached blocks that could not be read back verified (not served).",
        c.read_failures,
    );
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
    e.counter("frames_total", "Frames handed to the engine.", r.frames);
    e.counter(
        "bytes_total",
        "Bytes on the wire of those frames (original length).",
        r.bytes,
    );
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
    let c = &s.capture;
    e.counter(
        "capture_received_frames_total",
        "Frames the capture layer received (live capture only).",
        c.received,
    );
    e.family(
        "capture_dropped_frames_total",
        "counter",
        "Frames lost before the engine: kernel (buffer full), interface (NIC/driver), engine (queue full).",
    );
    for (reason, n) in [
        ("kernel", c.kernel_dropped),
        ("interface", c.interface_dropped),
        ("engine", c.engine_dropped),
    ] {
        e.sample("capture_dropped_frames_total", &[("reason", reason)], n);
    }
    e.family(
        "flows_total",
        "counter",
        "Flows seen, by transport protocol.",
    );
    e.sample("flows_total", &[("proto", "tcp")], r.flows.tcp);
    e.sample("flows_total", &[("proto", "udp")], r.flows.udp);
    e.counter(
        "flows_evicted_total",
        "Flows pushed out of a full flow table (flows.max_flows).",
        r.flows.evicted,
    );
    e.counter(
        "flows_expired_total",
        "Flows finished after their idle timeout.",
        r.flows.expired,
    );
    e.counter(
        "flows_ignored_total",
        "TCP flows found not to be plain BitTorrent and no longer followed.",
        r.flows.ignored,
    );
    let f = &r.ip_fragments;
    e.counter("ip_fragments_total", "IP fragments seen.", f.fragments);
    e.counter(
        "ip_fragments_reassembled_total",
        "IP datagrams reassembled from fragments.",
        f.reassembled,
    );
}

fn bittorrent(e: &mut Expo, s: &Snapshot) {
    let r = &s.report;
    let b = &r.bittorrent;
    e.family(
        "bt_connections_total",
        "counter",
        "Plain BitTorrent connections, by transport.",
    );
    e.sample(
        "bt_connections_total",
        &[("transport", "tcp")],
        b.tcp_connections,
    );
    e.sample(
        "bt_connections_total",
        &[("transport", "utp")],
        b.utp_connections,
    );
    e.family(
        "bt_encrypted_connections_total",
        "counter",
        "MSE/PE encrypted connections (not cacheable), by transport.",
    );
    e.sample(
        "bt_encrypted_connections_total",
        &[("transport", "tcp")],
        b.encrypted_tcp_connections,
    );
    e.sample(
        "bt_encrypted_connections_total",
        &[("transport", "utp")],
        b.encrypted_utp_connections,
    );
    e.counter(
        "bt_midstream_connections_total",
        "Plain TCP connections picked up mid-stream (start not captured).",
        b.midstream_connections,
    );
    e.counter(
        "bt_encrypted_then_plain_total",
        "MSE connections that negotiated plaintext and were parsed after it.",
        b.encrypted_then_plain,
    );
    e.counter(
        "peerwire_messages_total",
        "Peer-wire messages parsed, both directions.",
        r.peerwire.messages,
    );
    e.counter(
        "peerwire_resyncs_total",
        "Times the peer-wire parser lost framing and hunted for the next message.",
        r.peerwire.resyncs,
    );
    e.gauge(
        "swarms",
        "Swarms (info-hashes) seen so far, up to swarms.max_swarms.",
        r.swarms.len(),
    );
    e.counter(
        "swarms_overflow_messages_total",
        "Messages of swarms past swarms.max_swarms, counted as unattributed.",
        r.swarms_overflow,
    );
    let sum = |f: fn(&crate::report::SwarmReport) -> u64| r.swarms.iter().map(f).sum::<u64>();
    e.counter(
        "piece_bytes_total",
        "PIECE block bytes seen in identified swarms.",
        sum(|w| w.piece_bytes),
    );
    e.counter(
        "pieces_verified_total",
        "Pieces whose SHA-1 matched the info dictionary.",
        sum(|w| w.pieces_verified),
    );
    e.counter(
        "pieces_failed_total",
        "Pieces whose SHA-1 did not match (corrupt or hostile senders).",
        sum(|w| w.pieces_failed),
    );
    e.counter(
        "pieces_dropped_total",
        "Incomplete pieces dropped to stay within the assembly budget.",
        sum(|w| w.pieces_dropped),
    );
    e.counter(
        "quarantined_bytes_total",
        "Block bytes that waited in quarantine for metainfo.",
        sum(|w| w.quarantined_bytes),
    );
    e.counter(
        "metadata_failed_total",
        "BEP 9 metadata that assembled but did not hash to its info-hash.",
        r.cache.metadata_failed,
    );
}

fn cache(e: &mut Expo, s: &Snapshot) {
    let c = &s.report.cache;
    e.gauge(
        "cache_stored_bytes",
        "Bytes of verified pieces in the cache now.",
        c.stored_bytes,
    );
    if let Some(cap) = s.cache_capacity_bytes {
        e.gauge(
            "cache_capacity_bytes",
            "Configured capacity of the piece cache.",
            cap,
        );
    }
    e.counter(
        "cache_evicted_bytes_total",
        "Bytes of pieces evicted from the cache (LRU) to stay within capacity.",
        c.evicted_bytes,
    );
    e.counter(
        "cache_hits_total",
        "Subscriber REQUESTs for blocks of pieces in the cache.",
        c.hits,
    );
    e.counter(
        "cache_misses_total",
        "Subscriber REQUESTs for blocks of pieces not in the cache.",
        c.misses,
    );
    e.counter(
        "cache_hit_bytes_total",
        "Bytes of those hits: what a box in the path saves the transit link.",
        c.hit_bytes,
    );
    e.counter(
        "cache_miss_bytes_total",
        "Bytes of those misses: what still comes from upstream.",
        c.miss_bytes,
    );
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

/// Policy rule decisions: verified pieces each rule cached, refused or ignored, and bytes
/// its takedowns purged. Absent without a rules file.
fn rules(e: &mut Expo, s: &Snapshot) {
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
    let t = &s.report.reassembly;
    e.counter(
        "tcp_segments_total",
        "TCP data segments of BitTorrent flows.",
        t.segments,
    );
    e.counter(
        "tcp_gaps_total",
        "TCP holes proven permanent (capture loss) and skipped.",
        t.gaps,
    );
    e.counter("tcp_gap_bytes_total", "Bytes in those holes.", t.gap_bytes);
    e.counter(
        "tcp_overlaps_total",
        "TCP segments carrying bytes already received.",
        t.overlaps,
    );
    e.counter(
        "tcp_conflicting_overlaps_total",
        "Overlaps whose bytes differ from the first copy (evasion or poisoning signal).",
        t.conflicting_overlaps,
    );
    e.counter(
        "tcp_out_of_order_total",
        "TCP segments starting beyond the next expected byte.",
        t.out_of_order,
    );
    e.counter(
        "tcp_reassembly_evictions_total",
        "Holes skipped because a reassembly memory cap was reached.",
        t.evictions,
    );
    let u = &s.report.utp;
    e.counter("utp_flows_total", "UDP flows recognised as uTP.", u.flows);
    e.counter(
        "utp_data_packets_total",
        "uTP DATA packets.",
        u.data_packets,
    );
    e.counter(
        "utp_gaps_total",
        "uTP holes proven permanent and skipped.",
        u.gaps,
    );
    e.counter(
        "utp_duplicates_total",
        "uTP DATA packets already received.",
        u.duplicates,
    );
    e.counter(
        "utp_out_of_order_total",
        "uTP DATA packets beyond the next expected seq_nr.",
        u.out_of_order,
    );
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
