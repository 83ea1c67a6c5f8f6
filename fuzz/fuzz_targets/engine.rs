//! The whole sans-IO engine: a run of captured frames, then `finish()`.
//!
//! Input: `[cfg]` then `[secs: u32 BE]` (or, with cfg bit 3, `[ts: u64 BE]` in micros),
//! then frames, each `[len: u16 BE][link][dt][len bytes]` (the last may be short):
//! - `cfg` bit 0: tiny caps (4 flows, 4 KiB reassembly per direction, small peer-wire
//!   limits, 2 swarms, short timeouts) so eviction, expiry and cap paths run; bit 1:
//!   record_streams; bit 2: 198.18.0.0/15 is the subscriber network (as in the lab pcaps);
//!   bit 3: raw 64-bit start timestamp (pcapng files can carry any);
//! - `link % 5` picks the link type (0 Ethernet, 1 LinuxSll, 2 LinuxSll2, 3 RawIp, 4 Null);
//!   `link & 0x80` declares the frame one byte longer on the wire than captured;
//! - `dt < 0xF0`: time advances by dt^2 ms (0 .. 65 s); `dt >= 0xF0`: it goes back by
//!   (dt - 0xF0) s, as it does in real captures now and then.
//!
//! Checks: no panic, no hang; every frame is counted; the stats are self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::config::Config;
use peercache::engine::Engine;
use peercache::wire::link::LinkType;

const LINKS: [LinkType; 5] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
];

fn config(flags: u8) -> Config {
    let mut cfg = Config::default();
    if flags & 1 != 0 {
        cfg.flows.max_flows = 4;
        cfg.flows.tcp_idle_timeout_secs = 5;
        cfg.flows.udp_idle_timeout_secs = 2;
        cfg.reassembly.max_ooo_bytes_per_direction = 4096;
        cfg.reassembly.max_ooo_segments_per_direction = 8;
        cfg.reassembly.max_ooo_bytes_total = 12288;
        cfg.reassembly.conflict_window = 64;
        cfg.reassembly.max_ahead = 1 << 16;
        cfg.ip_fragments.max_datagrams = 4;
        cfg.ip_fragments.max_bytes = 8192;
        cfg.ip_fragments.timeout_secs = 1;
        cfg.peerwire.max_message_len = 512;
        cfg.peerwire.resync_window = 2048;
        cfg.peerwire.probe_bytes = 4096;
        cfg.swarms.max_swarms = 2;
        cfg.swarms.max_distinct_blocks = 16;
    }
    cfg.record_streams = flags & 2 != 0;
    if flags & 4 != 0 {
        cfg.subscriber_nets = vec!["198.18.0.0/15".parse().expect("valid net")];
    }
    cfg
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut ts = if flags & 8 != 0 {
        let Some(b) = rest.get(..8) else { return };
        let ts = u64::from_be_bytes(b.try_into().expect("8 bytes"));
        rest = &rest[8..];
        ts
    } else {
        let Some(b) = rest.get(..4) else { return };
        let secs = u32::from_be_bytes(b.try_into().expect("4 bytes"));
        rest = &rest[4..];
        secs as u64 * 1_000_000
    };
    let cfg = config(flags);
    let max_swarms = cfg.swarms.max_swarms;
    let max_blocks = cfg.swarms.max_distinct_blocks;
    let mut engine = Engine::new(cfg);
    let mut frames = 0u64;
    while rest.len() >= 4 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let (link_b, dt) = (rest[2], rest[3]);
        rest = &rest[4..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        if dt >= 0xF0 {
            ts = ts.saturating_sub((dt - 0xF0) as u64 * 1_000_000);
        } else {
            ts = ts.saturating_add(dt as u64 * dt as u64 * 1000);
        }
        let link = LINKS[(link_b & 0x7F) as usize % LINKS.len()];
        let orig_len = frame.len() as u32 + (link_b >> 7) as u32;
        engine.handle(ts, link, frame, orig_len);
        frames += 1;
    }
    let stats = engine.finish();
    assert_eq!(stats.frames, frames);
    assert!(stats.swarms.len() <= max_swarms, "swarm cap exceeded");
    let blocks: usize = stats.swarms.values().map(|s| s.blocks.len()).sum::<usize>()
        + stats.unattributed.blocks.len();
    assert!(blocks <= max_blocks, "distinct-block cap exceeded: {blocks}");
    if let (Some(a), Some(b)) = (stats.first_ts, stats.last_ts) {
        assert!(a <= b || frames > 1);
    }
});
