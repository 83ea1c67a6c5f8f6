//! The direct classic-pcap reader against libpcap: on every classic pcap of the public corpus
//! and the lab recordings, and on variants of one written here (big-endian, nanosecond,
//! a small declared snapshot length, cut short), both must yield the same records (timestamp,
//! bytes, wire length) and stop at the same place.

mod common;

use common::*;
use peercache::capture::classic::Reader;
use std::path::{Path, PathBuf};

type Record = (u64, Vec<u8>, u32);

fn libpcap_records(path: &Path) -> (Vec<Record>, bool) {
    let mut cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Micro)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    loop {
        match cap.next_packet() {
            Ok(p) => {
                let ts = p.header.ts.tv_sec as u64 * 1_000_000 + p.header.ts.tv_usec as u64;
                out.push((ts, p.data.to_vec(), p.header.len));
            }
            Err(pcap::Error::NoMorePackets) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

/// None when the reader leaves the file to libpcap.
fn direct_records(path: &Path) -> Option<(Vec<Record>, bool)> {
    let mut r = Reader::open(std::fs::File::open(path).unwrap()).unwrap()?;
    let mut out = Vec::new();
    loop {
        match r.read_record() {
            Ok(Some(rec)) => out.push((rec.ts_micros, rec.data.to_vec(), rec.orig_len)),
            Ok(None) => return Some((out, false)),
            Err(_) => return Some((out, true)),
        }
    }
}

fn same_as_libpcap(path: &Path) -> usize {
    let name = path.display();
    let direct = direct_records(path).unwrap_or_else(|| panic!("{name}: not read directly"));
    let lib = libpcap_records(path);
    assert_eq!(direct.0.len(), lib.0.len(), "{name}: record count");
    for (i, (a, b)) in direct.0.iter().zip(&lib.0).enumerate() {
        assert_eq!(a, b, "{name}: record {i}");
    }
    assert_eq!(direct.1, lib.1, "{name}: error at the end");
    direct.0.len()
}

fn classic_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in [repo().join("../shared/pcaps-public"), repo().join("pcaps")] {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let magic = std::fs::read(&p)
                .ok()
                .and_then(|b| b.get(..4).map(|m| m.to_vec()));
            if p.is_file() && magic.as_deref() == Some(&[0xd4, 0xc3, 0xb2, 0xa1]) {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn every_classic_capture_reads_as_libpcap_reads_it() {
    if !have_public() {
        return;
    }
    let files = classic_files();
    // The public corpus has 22 classic pcaps (the rest is pcapng and one NetMon file), and
    // every lab recording is classic pcap (pcaps/README.md).
    let public_dir = repo().join("../shared/pcaps-public");
    let lab: Vec<_> = std::fs::read_dir(repo().join("pcaps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.starts_with(&public_dir)).count(),
        22,
        "public classic pcaps"
    );
    assert_eq!(files.len(), 22 + lab.len(), "{files:?}");
    // tcp-plain, tcp-magnet, tcp-encrypted, tcp-aria2, utp-plain, utp-magnet, tcp-poison,
    // and webseed-clients (HTTP: the web seed's clients, tests/lab/webseed_record.sh)
    assert_eq!(lab.len(), 8, "lab recordings");
    let mut records = 0;
    for f in &files {
        records += same_as_libpcap(f);
    }
    assert!(records > 10_000, "{records}");
}

/// The lab capture with its headers rewritten: byte order, timestamp unit, snapshot length.
/// Also where the last record starts.
fn variant(name: &str, big_endian: bool, nanos: bool, snaplen: Option<u32>) -> (PathBuf, usize) {
    let src = std::fs::read(repo().join("pcaps/lab-tcp-plain.pcap")).unwrap();
    let u32_at = |i: usize| u32::from_le_bytes(src[i..i + 4].try_into().unwrap());
    let put = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    let mut out = Vec::new();
    put(&mut out, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    for i in [4usize, 6] {
        let v = u16::from_le_bytes(src[i..i + 2].try_into().unwrap());
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }
    put(&mut out, u32_at(8));
    put(&mut out, u32_at(12));
    put(&mut out, snaplen.unwrap_or(u32_at(16)));
    put(&mut out, u32_at(20));
    let mut i = 24;
    let mut last = 0;
    while i + 16 <= src.len() {
        last = out.len();
        let caplen = u32_at(i + 8) as usize;
        put(&mut out, u32_at(i));
        // Microseconds become nanoseconds plus a remainder libpcap drops when it scales.
        put(
            &mut out,
            if nanos {
                u32_at(i + 4) * 1000 + 999
            } else {
                u32_at(i + 4)
            },
        );
        put(&mut out, u32_at(i + 8));
        put(&mut out, u32_at(i + 12));
        out.extend_from_slice(&src[i + 16..i + 16 + caplen]);
        i += 16 + caplen;
    }
    let path = std::env::temp_dir().join(format!("peercache-{}-{name}.pcap", std::process::id()));
    std::fs::write(&path, out).unwrap();
    (path, last)
}

#[test]
fn byte_order_timestamp_unit_snapshot_and_truncation_as_libpcap() {
    let n = same_as_libpcap(&repo().join("pcaps/lab-tcp-plain.pcap"));
    for (name, be, ns, snap) in [
        ("be", true, false, None),
        ("ns", false, true, None),
        ("be-ns", true, true, None),
        ("snap100", false, false, Some(100)),
        ("snap0", false, false, Some(0)),
    ] {
        let (p, last) = variant(name, be, ns, snap);
        assert_eq!(same_as_libpcap(&p), n, "{name}");
        // Cut inside the last record's data, then inside its header.
        let bytes = std::fs::read(&p).unwrap();
        for cut in [bytes.len() - 1, last + 7] {
            let q = p.with_extension(format!("cut{cut}.pcap"));
            std::fs::write(&q, &bytes[..cut]).unwrap();
            assert_eq!(same_as_libpcap(&q), n - 1, "{name} cut at {cut}");
            std::fs::remove_file(&q).unwrap();
        }
        std::fs::remove_file(&p).unwrap();
    }
}
