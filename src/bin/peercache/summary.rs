//! The readable reports: what replay, tap and inline print when `--json` is not given.

use peercache::inline::InlineOutcome;
use peercache::report::Report;

pub(crate) use peercache::size::human;

/// Inline mode's own lines, printed before the engine's summary.
pub(crate) fn print_inline_summary(out: &InlineOutcome) {
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
}

pub(crate) fn print_summary(r: &Report, subscribers: bool, on_disk: bool) {
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
