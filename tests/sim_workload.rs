//! `peercache sim workload`: the synthetic trace read back and checked against the model
//! (issue 18): determinism, valid requests, whole downloads at most once per subscriber,
//! Mandelbrot-Zipf popularity, time order, releases.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use clap::Parser;
use peercache::sim::trace::{Item, TraceReader};
use peercache::sim::workload::dist::MandelbrotZipf;
use peercache::sim::workload::{generate, Generator, WorkloadArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: WorkloadArgs,
}

/// The options as the command line would parse them (so the defaults are the CLI's).
fn args(extra: &str) -> WorkloadArgs {
    let mut v = vec!["t", "-o", "/dev/null"];
    v.extend(extra.split_whitespace());
    Cli::try_parse_from(v).expect("options parse").a
}

/// Small but with every feature: multi-block pieces (sizes above 32 MiB get 32 KiB pieces
/// or more), short last blocks, releases, endgames, overlapping downloads.
const SMALL: &str = "--torrents 40 --subscribers 30 --downloads 120 --size-median 8MiB \
     --size-sigma 1.5 --size-min 1 --size-max 100MiB --days 0.01 --new-share 0.3 \
     --half-life 0.005 --rate 1MiB --endgame-share 0.5 --endgame-blocks 5";

fn trace(extra: &str) -> Vec<u8> {
    let (_, bytes) = generate(&args(extra), Vec::new(), |_, _| {}).expect("generates");
    bytes
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = trace(&format!("{SMALL} --seed 7"));
    let b = trace(&format!("{SMALL} --seed 7"));
    let c = trace(&format!("{SMALL} --seed 8"));
    assert!(a.len() > 1000);
    assert!(a == b, "same seed, different traces");
    assert!(a != c, "different seeds, same trace");
}

/// Per (swarm, client): the distinct (piece, begin) requested, and the requests.
type Pairs = HashMap<(u32, u32), (HashSet<(u32, u32)>, u64)>;

#[test]
fn every_download_whole_and_once_and_every_request_valid() {
    let bytes = trace(SMALL);
    let mut r = TraceReader::new(&bytes[..]).expect("a trace");
    let mut swarms = Vec::new();
    let mut clients = Vec::new();
    let mut pairs: Pairs = HashMap::new();
    let range = ipnet::Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 15).expect("net");
    let mut multi_block_pieces = false;
    let mut short_last = 0;
    while let Some(item) = r.next_item().expect("reads") {
        match item {
            Item::Swarm(_, s) => {
                let pl = s.piece_length;
                assert!(
                    pl.is_power_of_two() && (16 << 10..=16 << 20).contains(&pl),
                    "{pl}"
                );
                let pieces = s.total_length.div_ceil(u64::from(pl));
                // Clients' choice: at most 2000 pieces, and more than 1000 unless the
                // piece length is already the smallest.
                assert!(pieces <= 2000, "{pieces} pieces of {pl}");
                assert!(pl == 16 << 10 || pieces > 1000, "{pieces} pieces of {pl}");
                multi_block_pieces |= pl > 16 << 10;
                swarms.push(s);
            }
            Item::Client(_, c) => {
                let IpAddr::V4(v4) = c else {
                    panic!("{c} is not IPv4")
                };
                assert!(range.contains(&v4), "{v4}");
                clients.push(c);
            }
            Item::Request(q) => {
                let s = swarms[q.swarm as usize];
                let pl = u64::from(s.piece_length);
                let pieces = s.total_length.div_ceil(pl);
                assert!(u64::from(q.piece) < pieces, "{q:?}");
                let plen = pl.min(s.total_length - u64::from(q.piece) * pl);
                assert_eq!(q.begin % 16384, 0, "{q:?}");
                assert!(u64::from(q.begin) < plen, "{q:?}");
                // 16 KiB, or what is left of the piece.
                assert_eq!(
                    u64::from(q.length),
                    16384.min(plen - u64::from(q.begin)),
                    "{q:?}"
                );
                if q.length < 16384 {
                    short_last += 1;
                }
                let e = pairs.entry((q.swarm, q.client)).or_default();
                e.0.insert((q.piece, q.begin));
                e.1 += 1;
            }
        }
    }
    assert!(
        multi_block_pieces,
        "no piece longer than a block: the sizes miss the point"
    );
    assert!(short_last > 0, "no short last block");
    // 120 downloads, each a distinct (torrent, subscriber) pair: a pair fetched twice
    // would leave fewer pairs than downloads.
    assert_eq!(pairs.len(), 120);
    let mut endgames = 0;
    for ((s, c), (blocks, requests)) in &pairs {
        let t = swarms[*s as usize];
        let pl = u64::from(t.piece_length);
        let pieces = t.total_length.div_ceil(pl);
        let want: u64 = (0..pieces)
            .map(|p| pl.min(t.total_length - p * pl).div_ceil(16384))
            .sum();
        assert_eq!(
            blocks.len() as u64,
            want,
            "swarm {s} client {c}: incomplete"
        );
        // Every block once, plus the endgame's copies of the last 5 (or of all, if fewer).
        let dup = requests - want;
        assert!(
            dup == 0 || dup == want.min(5),
            "swarm {s} client {c}: {dup} copies"
        );
        endgames += u64::from(dup > 0);
    }
    // --endgame-share 0.5 of 120: binomial sd 5.5; 4 of them.
    assert!((38..=82).contains(&endgames), "{endgames} endgames");
}

#[test]
fn time_never_goes_back_and_downloads_overlap() {
    let mut g = Generator::new(&args(SMALL)).expect("options");
    let mut last = 0;
    let mut last_pair = None;
    let mut switches = 0u64;
    let mut n = 0u64;
    // Releases: no request for a torrent before it exists.
    while let Some(e) = g.next_event().expect("generates") {
        assert!(e.time_us >= last, "{} after {last}", e.time_us);
        last = e.time_us;
        let t = g.catalog().torrent(e.torrent).expect("torrent");
        if let Some(r) = t.release_us {
            assert!(
                e.time_us >= r,
                "torrent {} requested before release",
                e.torrent
            );
        }
        let pair = (e.torrent, e.client);
        if last_pair != Some(pair) {
            switches += 1;
            last_pair = Some(pair);
        }
        n += 1;
    }
    assert!(n > 10_000, "{n}");
    // Sequential downloads would switch exactly once per download; interleaved ones more.
    assert!(
        switches > 2 * 120,
        "{switches} switches: downloads do not overlap"
    );
    // Starts are uniform over 0.01 days = 864 s; downloads at 1 MiB/s run past it.
    assert!(last < 864_000_000 * 3, "{last}");
}

#[test]
fn no_subscriber_fetches_a_torrent_twice_even_when_nearly_all_have() {
    // 5 torrents x 10 subscribers = 50 pairs; 49 downloads force the sampler onto the
    // last ones, 51 cannot be done.
    let base = "--torrents 5 --subscribers 10 --size-min 1 --size-max 1 --new-share 0 \
                --endgame-share 0";
    let mut g = Generator::new(&args(&format!("{base} --downloads 49"))).expect("options");
    let mut pairs = HashSet::new();
    while let Some(e) = g.next_event().expect("generates") {
        assert!(
            pairs.insert((e.torrent, e.client)),
            "{:?} twice",
            (e.torrent, e.client)
        );
    }
    assert_eq!(pairs.len(), 49);
    assert!(Generator::new(&args(&format!("{base} --downloads 51"))).is_err());
}

/// Chi-square of observed per-rank download counts against the Mandelbrot-Zipf
/// expectation for `alpha`, `q`.
fn chi_square(counts: &[u64], alpha: f64, q: f64) -> f64 {
    let n: u64 = counts.iter().sum();
    let w: Vec<f64> = (1..=counts.len())
        .map(|i| MandelbrotZipf::weight(i, alpha, q))
        .collect();
    let total: f64 = w.iter().sum();
    counts
        .iter()
        .zip(&w)
        .map(|(&o, &wi)| {
            let e = n as f64 * wi / total;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// Popularity follows the Mandelbrot-Zipf parameters. With no releases and far more
/// subscribers than any torrent's downloads, each download is an independent draw, so the
/// per-rank counts are multinomial with p(i) ∝ 1/(i+q)^α exactly, and Pearson's chi-square
/// against those expectations (all ≥ 50 here, well above the rule-of-thumb 5) is χ² with
/// N-1 degrees of freedom. It tests the whole distribution, not just a log-log slope,
/// which q bends at the head and which has no sample-size-derived tolerance of its own.
/// The threshold is the 0.999 quantile (Wilson–Hilferty); the same counts must then fail
/// against α = 0.7 and against q = 25, so the test can tell parameters apart.
#[test]
fn download_counts_follow_mandelbrot_zipf() {
    let torrents = 1000;
    let a = args(&format!(
        "--torrents {torrents} --subscribers 131070 --downloads 100000 --alpha 0.6 --q 50 \
         --size-min 1 --size-max 1 --new-share 0 --endgame-share 0 --seed 11"
    ));
    let mut g = Generator::new(&a).expect("options");
    let mut counts = vec![0u64; torrents];
    while let Some(e) = g.next_event().expect("generates") {
        counts[e.torrent as usize] += 1;
    }
    assert_eq!(counts.iter().sum::<u64>(), 100_000);
    let k = (torrents - 1) as f64;
    let z = 3.090; // standard normal 0.999 quantile
    let c = 2.0 / (9.0 * k);
    let critical = k * (1.0 - c + z * c.sqrt()).powi(3);
    let fit = chi_square(&counts, 0.6, 50.0);
    eprintln!("chi-square {fit:.1}, critical {critical:.1} ({k} degrees of freedom)");
    assert!(
        fit < critical,
        "chi-square {fit:.0} >= {critical:.0} for the true parameters"
    );
    for (alpha, q) in [(0.7, 50.0), (0.6, 25.0)] {
        let other = chi_square(&counts, alpha, q);
        eprintln!("against alpha {alpha} q {q}: chi-square {other:.1}");
        assert!(
            other > critical,
            "alpha {alpha} q {q}: chi-square {other:.0} passes too"
        );
    }
}

#[test]
fn refuses_bad_options() {
    for bad in [
        "--torrents 0",
        "--subscribers 131071",
        "--alpha=-1",
        "--q=-1",
        "--days 0",
        "--new-share 1.5",
        "--size-min 2MiB --size-max 1MiB",
        "--rate 0",
    ] {
        assert!(Generator::new(&args(bad)).is_err(), "{bad} accepted");
    }
}
