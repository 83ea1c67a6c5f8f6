//! The inline splice, fed hostile frames from both ports.
//!
//! Input: `[cfg]` then frames, each `[len: u16 BE][ctl][dt][len bytes]` (the last may be
//! short):
//! - `cfg` bit 0: tiny caps (2 connections, 40 KiB queued, 1 retransmit) so the cap paths
//!   run; bit 1: the engine is overloaded (nothing new is answered);
//! - `ctl` bit 0: the frame arrives on the upstream port (else the subscriber port); bit 1:
//!   run the timers after it (`handle_timeout`, as if its deadline had come);
//! - `dt`: time advances by dt^2 ms.
//! The block source holds blocks of even pieces (and odd `begin`s), so hits and misses mix.
//!
//! Checks (no panic, and): a frame from a subscriber goes upstream with its length
//! unchanged, TCP and UDP alike (substitution never moves a sequence number or resizes a
//! datagram); everything emitted parses as a TCP frame or, since the splice also follows
//! uTP, as a UDP frame (`wire::udpframe::UdpFrame`), with a good checksum when the input's
//! was good (for UDP over IPv4, "none" (zero) counts as good and stays zero); after the
//! timers ran at `now` the next deadline is later than `now` (the bridge never spins on it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::serve::{BlockSource, Emit, InlineConfig, Lookup, Port, Splicer};
use peercache::swarm::pieces::FlowContext;
use peercache::wire::checksum::{self, PROTO_UDP};
use peercache::wire::peerwire::BlockRef;
use peercache::wire::tcpframe::TcpFrame;
use peercache::wire::udpframe::UdpFrame;

struct Source;

/// The block's bytes are a function of (index, begin, offset): checkable downstream.
fn byte(b: &BlockRef, k: u32) -> u8 {
    (b.index ^ b.begin.wrapping_add(k)) as u8
}

impl BlockSource for Source {
    fn lookup(&self, _ih: &[u8; 20], b: BlockRef, _f: &FlowContext) -> Lookup {
        if b.length == 0 || b.length > 1 << 17 {
            return Lookup::Miss;
        }
        if b.index % 2 == 0 || b.begin & 1 == 1 {
            Lookup::Hit((0..b.length).map(|k| byte(&b, k)).collect())
        } else {
            Lookup::Miss
        }
    }
}

/// The UDP checksum of a datagram in `frame` verifies, or is zero over IPv4 (none).
fn udp_checksum_ok(u: &UdpFrame, frame: &[u8]) -> bool {
    let payload = u.payload();
    let at = payload.as_ptr() as usize - frame.as_ptr() as usize;
    let Some(udp) = at
        .checked_sub(8)
        .and_then(|s| frame.get(s..at + payload.len()))
    else {
        return false;
    };
    if udp[6..8] == [0, 0] {
        return u.src().is_ipv4();
    }
    checksum::pseudo_header(u.src(), u.dst(), PROTO_UDP, udp.len())
        .is_some_and(|s| s.add_bytes(udp).verifies())
}

/// An emitted frame: TCP or UDP; its checksum verifies when `good`.
fn check_emitted(f: &[u8], good: bool) {
    if let Some(t) = TcpFrame::new_checked(f) {
        assert!(!good || t.checksum_ok(), "a good TCP frame stays good");
    } else {
        let u = UdpFrame::new_checked(f).expect("emitted frames parse as TCP or UDP");
        assert!(
            !good || udp_checksum_ok(&u, f),
            "a good UDP frame stays good"
        );
    }
}

/// The input frame's checksum is good (TCP, or UDP: zero over IPv4 counts as good).
fn input_good(frame: &[u8]) -> bool {
    match TcpFrame::new_checked(frame) {
        Some(t) => t.checksum_ok(),
        None => UdpFrame::new_checked(frame).is_some_and(|u| udp_checksum_ok(&u, frame)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let mut c = InlineConfig::default();
    if cfg & 1 != 0 {
        c.max_connections = 2;
        c.max_queued_bytes_per_connection = 40 << 10;
        c.max_queued_bytes = 60 << 10;
        c.max_retransmits = 1;
    }
    let mut sp = Splicer::new(c, Source);
    sp.set_overloaded(cfg & 2 != 0);
    let mut now = 0u64;
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let (ctl, dt) = (rest[2], rest[3]);
        rest = &rest[4..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        now += u64::from(dt) * u64::from(dt) * 1000;
        let from = if ctl & 1 != 0 {
            Port::Upstream
        } else {
            Port::Subscriber
        };
        let good = input_good(frame);
        sp.on_frame(now, from, frame, &mut out);
        for e in out.drain(..) {
            let Emit::Frame(port, f) = e else { continue };
            check_emitted(&f, good);
            if port == Port::Upstream {
                assert_eq!(from, Port::Subscriber);
                assert_eq!(f.len(), frame.len(), "substitution keeps the length");
            }
        }
        if ctl & 2 != 0 {
            sp.handle_timeout(now, &mut out);
            for e in out.drain(..) {
                if let Emit::Frame(_, f) = e {
                    // Retransmissions are built by the box: always a full checksum.
                    check_emitted(&f, true);
                }
            }
            assert!(sp.poll_timeout().is_none_or(|at| at > now), "deadline met");
        }
    }
});
