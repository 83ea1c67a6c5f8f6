//! The whole sans-IO engine: a run of captured frames, then `finish()`.
//!
//! Input: `[cfg]` then `[secs: u32 BE]` (or, with cfg bit 3, `[ts: u64 BE]` in micros),
//! then frames, each `[len: u16 BE][link][dt][len bytes]` (the last may be short):
//! - `cfg` bit 0: tiny caps (4 flows, 4 KiB reassembly per direction, small peer-wire
//!   limits, 2 swarms, short timeouts) so eviction, expiry and cap paths run; bit 1:
//!   record_streams; bit 2: 198.18.0.0/15 is the subscriber network (as in the lab pcaps);
//!   bit 3: raw 64-bit start timestamp (pcapng files can carry any); bit 4: synthetic uTP
//!   records (below);
//! - `link % 5` picks the link type (0 Ethernet, 1 LinuxSll, 2 LinuxSll2, 3 RawIp, 4 Null);
//!   `link & 0x80` declares the frame one byte longer on the wire than captured;
//! - `dt < 0xF0`: time advances by dt^2 ms (0 .. 65 s); `dt >= 0xF0`: it goes back by
//!   (dt - 0xF0) s, as it does in real captures now and then.
//!
//! With cfg bit 4, a frame whose `link & 0x40` is set is not a raw frame but a synthetic
//! uTP datagram, built into an Ethernet/IPv4 (or IPv6) / UDP frame between one of four
//! endpoint pairs (an initiator 198.18.0.x:5000x and a responder 203.0.113.7:6881), from
//! `[ctl][pair][seq_delta: i8][ack_delta: i8][payload...]`:
//! - `ctl & 1` direction (0: initiator -> responder); `ctl >> 1 & 7` packet: 0 DATA, 1 FIN,
//!   2 STATE, 3 RESET, 4 SYN, 5 DATA whose payload starts with a BitTorrent handshake (fixed
//!   info-hash), 6 the payload alone (no uTP header: DHT or junk on the same ports), 7 SYN
//!   of a new connection (a new connection id on the same ports);
//! - `ctl & 0x10` the wrong connection id; `ctl & 0x20` IPv6; `ctl & 0x40` a 4-byte
//!   selective-ack extension; `ctl & 0x80` version 2 (not uTP);
//! - `pair & 3` the endpoint pair; seq_nr = the direction's previous seq_nr + seq_delta,
//!   ack_nr = the other direction's seq_nr + ack_delta; connection ids follow BEP 29 (SYN
//!   and responder: id, initiator: id + 1). Each pair starts near a seq_nr wrap.
//! So a few bytes make a SYN / STATE / DATA exchange, reordering, loss and duplicates, and
//! the engine's uTP probe, reassembly and peer-wire paths run without guessing headers.
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

/// Generator state for synthetic uTP records.
struct Utp {
    conn: [u16; 4],
    seq: [[u16; 2]; 4],
}

impl Utp {
    fn new() -> Self {
        Utp {
            conn: [0x2000, 0x2100, 0x2200, 0xFFFF],
            seq: [[0xFFF8, 0x1000], [0x0001, 0xFFFE], [0x8000, 0x7FFF], [0xFFFF, 0x0000]],
        }
    }

    /// An Ethernet frame for `rec` (see the module comment).
    fn frame(&mut self, rec: &[u8]) -> Vec<u8> {
        let get = |i: usize| rec.get(i).copied().unwrap_or(0);
        let (ctl, pair) = (get(0), (get(1) & 3) as usize);
        let (sd, ad) = (get(2) as i8 as u16, get(3) as i8 as u16);
        let body = rec.get(4..).unwrap_or(&[]);
        let dir = (ctl & 1) as usize;
        let kind = ctl >> 1 & 7;
        let mut udp = Vec::new();
        if kind != 6 {
            if kind == 7 {
                self.conn[pair] = self.conn[pair].wrapping_add(2);
            }
            let seq = self.seq[pair][dir].wrapping_add(sd);
            self.seq[pair][dir] = seq;
            let ack = self.seq[pair][1 - dir].wrapping_add(ad);
            let t = match kind {
                5 => 0,
                7 => 4,
                k => k,
            };
            let mut id = self.conn[pair];
            if dir == 0 && t != 4 {
                id = id.wrapping_add(1);
            }
            if ctl & 0x10 != 0 {
                id ^= 0x0F0F;
            }
            let version = if ctl & 0x80 != 0 { 2 } else { 1 };
            udp.push(t << 4 | version);
            udp.push(if ctl & 0x40 != 0 { 1 } else { 0 });
            udp.extend_from_slice(&id.to_be_bytes());
            udp.extend_from_slice(&[0; 8]); // timestamps
            udp.extend_from_slice(&0x0010_0000u32.to_be_bytes());
            udp.extend_from_slice(&seq.to_be_bytes());
            udp.extend_from_slice(&ack.to_be_bytes());
            if ctl & 0x40 != 0 {
                udp.extend_from_slice(&[0, 4, get(2), get(3), 0, 0x80]);
            }
            if kind == 5 {
                udp.extend_from_slice(b"\x13BitTorrent protocol");
                udp.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
                udp.extend_from_slice(&[0xAB; 20]);
                udp.extend_from_slice(b"-FZ0001-");
                udp.extend_from_slice(&[dir as u8; 12]);
            }
        }
        udp.extend_from_slice(body);
        let (sport, dport) = if dir == 0 {
            (50000 + pair as u16, 6881u16)
        } else {
            (6881, 50000 + pair as u16)
        };
        let ulen = (udp.len() + 8) as u16;
        let mut l4 = Vec::with_capacity(udp.len() + 8);
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&ulen.to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(&udp);
        let mut f = vec![2, 0, 0, 0, 0, 1 + dir as u8, 2, 0, 0, 0, 0, 2 - dir as u8];
        let (a, b): (Vec<u8>, Vec<u8>) = if ctl & 0x20 != 0 {
            let mut a = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
            a[15] += pair as u8;
            let b = vec![0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
            (a, b)
        } else {
            (vec![198, 18, 0, 10 + pair as u8], vec![203, 0, 113, 7])
        };
        let (src, dst) = if dir == 0 { (a, b) } else { (b, a) };
        if ctl & 0x20 != 0 {
            f.extend_from_slice(&[0x86, 0xDD, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[17, 64]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((l4.len() + 20) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
        }
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&l4);
        f
    }
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
    let mut utp = (flags & 0x10 != 0).then(Utp::new);
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
        if let (Some(u), true) = (utp.as_mut(), link_b & 0x40 != 0) {
            let f = u.frame(frame);
            let orig_len = f.len() as u32 + (link_b >> 7) as u32;
            engine.handle(ts, LinkType::Ethernet, &f, orig_len);
            frames += 1;
            continue;
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
    assert!(stats.utp.flows <= frames, "more uTP flows than frames");
    assert!(stats.utp.packets <= frames, "more uTP packets than frames");
    assert!(stats.utp.data_packets <= stats.utp.packets, "uTP DATA not counted as packets");
    if let (Some(a), Some(b)) = (stats.first_ts, stats.last_ts) {
        assert!(a <= b || frames > 1);
    }
});
