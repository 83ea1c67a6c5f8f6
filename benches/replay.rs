//! Engine throughput on frames already in memory (no file I/O): the recorded plain-TCP
//! capture, and the large lab recording when present (PEERCACHE_BENCH_PCAP or
//! pcaps/large/lab-large.pcap). Throughput is reported in bytes/s of captured frames.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peercache::capture::PcapFile;
use peercache::config::Config;
use peercache::engine::Engine;
use peercache::wire::link::LinkType;

fn load(path: &Path) -> (LinkType, Vec<(u64, Vec<u8>, u32)>) {
    let mut f = PcapFile::open(path).expect("open capture");
    let link = f.link;
    let mut v = Vec::new();
    while let Some(fr) = f.next_frame().expect("read") {
        v.push((fr.ts_micros, fr.data.to_vec(), fr.orig_len));
    }
    (link, v)
}

fn bench_file(c: &mut Criterion, name: &str, path: &Path) {
    let (link, frames) = load(path);
    let bytes: u64 = frames.iter().map(|f| f.1.len() as u64).sum();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut e = Engine::new(Config::default());
            for (ts, data, len) in &frames {
                e.handle(*ts, link, data, *len);
            }
            e.finish()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    bench_file(c, "lab-tcp-plain", &root.join("pcaps/lab-tcp-plain.pcap"));
    let large = std::env::var_os("PEERCACHE_BENCH_PCAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("pcaps/large/lab-large.pcap"));
    if large.exists() {
        bench_file(c, "lab-large", &large);
    } else {
        eprintln!(
            "{} not found: run tests/lab/lab.sh large for the large bench",
            large.display()
        );
    }
}

criterion_group!(group, benches);
criterion_main!(group);
