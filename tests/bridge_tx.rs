//! The inline bridge's batched transmit (issue 16, `capture::tx`): on a veth pair the test
//! creates, queued frames arrive at the other end byte-identical and in order, in as many
//! sendmmsg calls as the batch size implies; a packet tap on the sending port (tcpdump)
//! sees every one of them, unless `inline.qdisc_bypass` is on, when it sees none. Frames
//! carry the local experimental EtherType 0x88b5, so nothing else on the link is counted.
//!
//! Fanout (`capture::fanout`, `inline.workers`): with three workers' sockets on each end of
//! a veth pair, every IPv4 and IPv6 frame (VLAN-tagged too) reaches the worker the IP pair
//! predicts, the same one in both directions, exactly once; frames without IP reach
//! worker 0. The IP headers carry a bad checksum and the frames a foreign MAC, so the
//! kernel's own stack drops them.
//!
//! Needs root (CAP_NET_RAW, creating links).

mod common;

use std::time::{Duration, Instant};

use std::net::IpAddr;

use peercache::capture::bridge::BridgePort;
use peercache::capture::fanout::{worker_of, Group};
use peercache::capture::tx::{TxQueue, MAX_BATCH};

/// A veth pair in the test's own namespace (no addresses: nothing is routed); removed when
/// dropped.
struct Veth(&'static str);

impl Veth {
    fn new(a: &'static str, b: &str) -> Veth {
        let _ = common::ip(&["link", "del", a]);
        common::ip(&["link", "add", a, "type", "veth", "peer", "name", b])
            .expect("a veth pair (the test needs root)");
        let v = Veth(a);
        for i in [a, b] {
            // No IPv6 autoconfiguration chatter, then up.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
            common::ip(&["link", "set", i, "up"]).unwrap();
        }
        // Frames sent before both ends are operationally up are dropped by the kernel.
        let t0 = Instant::now();
        while [a, b].iter().any(|i| {
            std::fs::read_to_string(format!("/sys/class/net/{i}/operstate"))
                .map_or(true, |s| s.trim() != "up")
        }) {
            assert!(t0.elapsed() < Duration::from_secs(10), "veth pair not up");
            std::thread::sleep(Duration::from_millis(10));
        }
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = common::ip(&["link", "del", self.0]);
    }
}

/// Frame `i`: broadcast, EtherType 0x88b5, `i` in the first payload bytes, a length that
/// varies from the Ethernet minimum to a full frame.
fn frame(i: usize) -> Vec<u8> {
    let len = 60 + (i * 97) % (1514 - 60);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&(i as u32).to_be_bytes());
    for (k, b) in f[18..].iter_mut().enumerate() {
        *b = (i + k) as u8;
    }
    f
}

/// A capture of the test frames on `iface` in `dir`, opened before anything is sent.
/// Non-blocking: in immediate mode libpcap may wait for a frame regardless of its timeout.
/// Nothing reads it while the test sends.
fn capture(iface: &str, dir: pcap::Direction) -> pcap::Capture<pcap::Active> {
    let c = pcap::Capture::from_device(iface)
        .unwrap()
        .immediate_mode(true)
        // Room for every test frame: the ring holds buffer / per-frame slot (snaplen).
        .snaplen(2048)
        .buffer_size(16 << 20)
        .open()
        .expect("pcap on the test's veth (root)");
    c.direction(dir).unwrap();
    let mut c = c.setnonblock().unwrap();
    c.filter("ether proto 0x88b5", true).unwrap();
    c
}

/// Everything `c` captures until `want` frames arrived or 2 s passed.
fn read(c: &mut pcap::Capture<pcap::Active>, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let t0 = Instant::now();
    while got.len() < want && t0.elapsed() < Duration::from_secs(2) {
        match c.next_packet() {
            Ok(p) => got.push(p.data.to_vec()),
            Err(pcap::Error::TimeoutExpired) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
    }
    got
}

#[test]
fn queued_frames_leave_in_order_in_batches_and_taps_see_them() {
    common::require_root();
    let _veth = Veth::new("pc-tx0", "pc-tx1");
    // 2.5 batches: two sent by `queue` as they fill, the rest by `flush`.
    let n = MAX_BATCH * 2 + MAX_BATCH / 2;
    let want: Vec<Vec<u8>> = (0..n).map(frame).collect();

    let mut far = capture("pc-tx1", pcap::Direction::In);
    let mut tap = capture("pc-tx0", pcap::Direction::Out);
    let mut tx = TxQueue::open("pc-tx0", false).unwrap();
    for f in &want {
        tx.queue(f);
    }
    assert_eq!(tx.pending(), n - 2 * MAX_BATCH);
    tx.flush();
    assert_eq!(tx.pending(), 0);
    assert_eq!((tx.sent, tx.send_errors, tx.batches), (n as u64, 0, 3));
    assert!(!tx.qdisc_bypass);
    // The far end gets every frame, byte-identical, in order; so does a tap on the port.
    let got = read(&mut far, n);
    let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
    assert!(
        got == want,
        "frames differ at the far end: {} of {n} arrived, first difference at {first_bad:?}",
        got.len()
    );
    assert!(
        read(&mut tap, n) == want,
        "a tap on the sending port must see what is sent"
    );

    // With the qdisc bypassed the frames still arrive, but the tap sees none of them.
    let mut tx = TxQueue::open("pc-tx0", true).unwrap();
    if !tx.qdisc_bypass {
        eprintln!("NOTICE: this kernel refuses PACKET_QDISC_BYPASS; that half is skipped");
        return;
    }
    for f in &want[..10] {
        tx.queue(f);
    }
    tx.flush();
    assert_eq!((tx.sent, tx.batches), (10, 1));
    assert!(
        read(&mut far, 10) == want[..10],
        "frames differ at the far end (bypass)"
    );
    assert_eq!(read(&mut tap, 1).len(), 0, "bypass skips the port's taps");
}

/// A port that does not exist, named as such.
#[test]
fn a_missing_port_is_named() {
    match TxQueue::open("pc-no-such-if0", false) {
        Err(e) => assert_eq!(e.to_string(), "pc-no-such-if0: no such network interface"),
        Ok(_) => panic!("opened a port that does not exist"),
    }
}

/// Frame `id` from `src` to `dst` (IPv4 or IPv6; VLAN-tagged when `vlan`), or without IP
/// when there are no addresses. The payload starts with "PCFO" and the id.
fn ip_frame(id: u32, ips: Option<(IpAddr, IpAddr)>, vlan: bool) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x01];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    let mut payload = b"PCFO".to_vec();
    payload.extend_from_slice(&id.to_be_bytes());
    match ips {
        Some((IpAddr::V4(s), IpAddr::V4(d))) => {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
            // id, fragment, TTL 64, UDP, a wrong header checksum: the IP layer drops it.
            f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0xde, 0xad]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        Some((IpAddr::V6(s), IpAddr::V6(d))) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            f.extend_from_slice(&[17, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        Some(_) => unreachable!("one family per pair"),
        None => f.extend_from_slice(&[0x88, 0xb5]),
    }
    f.extend_from_slice(&payload);
    f.resize(f.len().max(60), 0);
    f
}

/// The ids of the test frames each worker's socket read, until `want` arrived in all or
/// 2 s passed.
fn read_workers(ports: &mut [BridgePort], want: usize) -> Vec<Vec<u32>> {
    let mut got = vec![Vec::new(); ports.len()];
    let t0 = Instant::now();
    while got.iter().map(Vec::len).sum::<usize>() < want && t0.elapsed() < Duration::from_secs(2) {
        let mut idle = true;
        for (w, p) in ports.iter_mut().enumerate() {
            // Straight from each socket's capture ring.
            while p
                .next_with(|_ts, frame, _tx| {
                    if let Some(at) = frame.windows(4).position(|x| x == b"PCFO") {
                        let id = u32::from_be_bytes(frame[at + 4..at + 8].try_into().unwrap());
                        got[w].push(id);
                    }
                })
                .unwrap()
            {
                idle = false;
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    got
}

#[test]
fn fanout_gives_both_directions_of_an_ip_pair_to_one_worker() {
    common::require_root();
    let _veth = Veth::new("pc-fo0", "pc-fo1");
    const W: usize = 3;
    let (mut g0, mut g1) = (Group::new(), Group::new());
    let mut end0: Vec<BridgePort> = (0..W)
        .map(|_| BridgePort::open("pc-fo0", 4 << 20, false, Some(&mut g0)).unwrap())
        .collect();
    let mut end1: Vec<BridgePort> = (0..W)
        .map(|_| BridgePort::open("pc-fo1", 4 << 20, false, Some(&mut g1)).unwrap())
        .collect();

    // IPv4 pairs from 198.18.0.0/15, IPv6 pairs from the documentation prefix, a few
    // VLAN-tagged, and frames without IP.
    let mut pairs: Vec<(Option<(IpAddr, IpAddr)>, bool)> = Vec::new();
    for i in 0..40u32 {
        let s = IpAddr::from([198, 18, (i % 7) as u8, (i * 13 % 251) as u8]);
        let d = IpAddr::from([198, 19, (i % 3) as u8, (i * 29 % 253) as u8]);
        pairs.push((Some((s, d)), i % 10 == 0));
    }
    for i in 0..12u16 {
        let s = IpAddr::from([0x2001, 0xdb8, 0, i, 0, 0, 0, 1]);
        let d = IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, i * 7, 2]);
        pairs.push((Some((s, d)), false));
    }
    for _ in 0..4 {
        pairs.push((None, false));
    }
    let predicted: Vec<usize> = pairs
        .iter()
        .map(|(ips, _)| ips.map_or(0, |(s, d)| worker_of(s, d, W)))
        .collect();
    for w in 0..W {
        assert!(
            predicted.contains(&w),
            "the test pairs leave worker {w} idle"
        );
    }

    // Each pair one way from pc-fo0 (read at pc-fo1), the other way from pc-fo1.
    let mut tx0 = TxQueue::open("pc-fo0", false).unwrap();
    let mut tx1 = TxQueue::open("pc-fo1", false).unwrap();
    for (id, (ips, vlan)) in pairs.iter().enumerate() {
        tx0.queue(&ip_frame(id as u32, *ips, *vlan));
        tx1.queue(&ip_frame(id as u32, ips.map(|(s, d)| (d, s)), *vlan));
    }
    tx0.flush();
    tx1.flush();
    assert_eq!((tx0.send_errors, tx1.send_errors), (0, 0));

    for (side, ports) in [("pc-fo1", &mut end1), ("pc-fo0", &mut end0)] {
        let got = read_workers(ports, pairs.len());
        let mut seen = vec![0usize; pairs.len()];
        for (w, ids) in got.iter().enumerate() {
            for &id in ids {
                let id = id as usize;
                seen[id] += 1;
                assert_eq!(
                    w, predicted[id],
                    "{side}: frame {id} ({:?}) reached worker {w}, not {}",
                    pairs[id], predicted[id]
                );
            }
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "{side}: every frame exactly once: {seen:?}"
        );
    }
}
