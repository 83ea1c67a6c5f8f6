//! How long the HTTP service takes to stop (`HttpServer::shutdown`), with no client and
//! with idle clients holding connections open: a scraper's keep-alive connection and one
//! that never sends a request. Graceful shutdown closes idle connections at once; one busy
//! with a request gets the service's grace period (5 s), so that is the bound whatever
//! clients do. This was a timed assertion in tests/http.rs; timing belongs in a bench
//! (docs/benchmarks.md). `cargo bench --bench http_shutdown` prints the best and worst of
//! a few runs of each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peercache::http::serve;
use peercache::metrics::Live;

const RUNS: usize = 3;

fn once(idle_clients: bool) -> Duration {
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Live::new(1)),
        None,
        None,
    )
    .unwrap();
    let mut held = Vec::new();
    if idle_clients {
        let mut keep = TcpStream::connect(srv.local_addr).unwrap();
        write!(keep, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 256];
        let n = keep.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(keep);
        held.push(TcpStream::connect(srv.local_addr).unwrap());
    }
    let t = Instant::now();
    srv.shutdown();
    t.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects a
    // quick run: one of each then.
    let runs = if std::env::args().any(|a| a == "--bench") {
        RUNS
    } else {
        1
    };
    for (name, idle) in [("no clients", false), ("idle clients", true)] {
        let times: Vec<Duration> = (0..runs).map(|_| once(idle)).collect();
        let best = times.iter().min().unwrap();
        let worst = times.iter().max().unwrap();
        println!("http shutdown, {name}: best {best:?}, worst {worst:?} ({runs} runs)");
    }
}
