//! The inline bridge's batched transmit (issue 16, `capture::tx`): on a veth pair the test
//! creates, queued frames arrive at the other end byte-identical and in order, in as many
//! sendmmsg calls as the batch size implies; a packet tap on the sending port (tcpdump)
//! sees every one of them, unless `inline.qdisc_bypass` is on, when it sees none. Frames
//! carry the local experimental EtherType 0x88b5, so nothing else on the link is counted.
//! Needs root (CAP_NET_RAW, creating links).

mod common;

use std::time::{Duration, Instant};

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
