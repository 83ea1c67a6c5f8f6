//! `peercache sim run`: the offline bound against brute force and against every policy,
//! block-level admission by hand, the JSON report's shape, and a Zipf trace generator for
//! the performance figures (ignored by default).

use std::collections::HashMap;
use std::net::IpAddr;

use peercache::sim::bound::min_hits;
use peercache::sim::run::{simulate_bytes, BoundMode, Capacity, Options, Report};
use peercache::sim::trace::TraceWriter;
use peercache::wire::infohash::InfoHash;
use proptest::prelude::*;

const BLOCK: u32 = 16 * 1024;

/// One request: (swarm, client, piece, block).
type Req = (u8, u8, u32, u32);

/// A trace of 16 KiB requests; swarm s has piece length `piece_blocks[s]` × 16 KiB.
fn trace(piece_blocks: &[u32], reqs: &[Req]) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new()).unwrap();
    for (t, &(s, c, piece, block)) in reqs.iter().enumerate() {
        let ih = InfoHash::from([s + 1; 20]);
        let client = IpAddr::from([10, 0, 0, c]);
        let pl = piece_blocks[s as usize] * BLOCK;
        w.request(t as u64, &ih, pl, 0, client, piece, block * BLOCK, BLOCK)
            .unwrap();
    }
    w.finish().unwrap()
}

fn options(capacity: Vec<Capacity>, policies: &str) -> Options {
    Options {
        capacity,
        policy: policies.split(',').map(|p| p.parse().unwrap()).collect(),
        p2p_min_clients: 2,
        bound: BoundMode::Bypass,
    }
}

fn row<'a>(r: &'a Report, policy: &str) -> &'a peercache::sim::run::Row {
    r.results.iter().find(|x| x.policy == policy).unwrap()
}

/// The best hit count over every admission and eviction choice (memoised on the cache's
/// contents): with bypass a missed block may stay out; without, it must enter.
fn brute(seq: &[u8], cap: usize, bypass: bool) -> u64 {
    fn go(
        seq: &[u8],
        i: usize,
        cache: Vec<u8>,
        cap: usize,
        bypass: bool,
        memo: &mut HashMap<(usize, Vec<u8>), u64>,
    ) -> u64 {
        if i == seq.len() {
            return 0;
        }
        if let Some(&v) = memo.get(&(i, cache.clone())) {
            return v;
        }
        let x = seq[i];
        let best = if cache.contains(&x) {
            1 + go(seq, i + 1, cache.clone(), cap, bypass, memo)
        } else {
            let mut options = Vec::new();
            if bypass || cap == 0 {
                options.push(cache.clone());
            }
            if cap > 0 && cache.len() < cap {
                let mut c = cache.clone();
                c.push(x);
                options.push(c);
            } else if cap > 0 {
                for j in 0..cache.len() {
                    let mut c = cache.clone();
                    c[j] = x;
                    options.push(c);
                }
            }
            options
                .into_iter()
                .map(|mut c| {
                    c.sort_unstable();
                    go(seq, i + 1, c, cap, bypass, memo)
                })
                .max()
                .unwrap_or(0)
        };
        memo.insert((i, cache), best);
        best
    }
    go(seq, 0, Vec::new(), cap, bypass, &mut HashMap::new())
}

proptest! {
    #[test]
    fn bound_equals_brute_force(
        seq in proptest::collection::vec(0u8..5, 1..=12),
        cap in 1usize..=3,
    ) {
        prop_assert_eq!(min_hits(&seq, cap as u64, true), brute(&seq, cap, true));
        prop_assert_eq!(min_hits(&seq, cap as u64, false), brute(&seq, cap, false));
    }

    #[test]
    fn bound_is_never_below_a_policy(
        blocks in proptest::collection::vec(1u32..=4, 2),
        reqs in proptest::collection::vec((0u8..2, 0u8..3, 0u32..4, 0u32..4), 1..80),
        cap_blocks in 1u64..=12,
    ) {
        // Keep each block inside its piece.
        let reqs: Vec<Req> = reqs
            .into_iter()
            .map(|(s, c, p, b)| (s, c, p, b % blocks[s as usize]))
            .collect();
        let t = trace(&blocks, &reqs);
        let o = Options {
            p2p_min_clients: 1,
            ..options(
                vec![Capacity::Bytes(cap_blocks * u64::from(BLOCK))],
                "lru,fifo,s3fifo,tinylfu,gdsf,p2p-lru,p2p-s3fifo",
            )
        };
        let r = simulate_bytes(&t, &o).unwrap();
        let bound = row(&r, "bound");
        for x in &r.results {
            prop_assert!(x.hits <= bound.hits, "{} {} > bound {}", x.policy, x.hits, bound.hits);
            prop_assert!(x.hit_bytes <= bound.hit_bytes, "{}", x.policy);
        }
    }
}

#[test]
fn blocks_are_served_only_after_they_passed() {
    // One swarm, 2-block pieces, capacity one piece. Requests: piece 0 block 0 (miss: the
    // piece is admitted, block 0 passed), block 1 (miss: fills in), block 0 (hit), block 1
    // (hit), piece 1 block 0 (miss, evicts piece 0), piece 0 block 0 (miss again).
    // LRU hits: . . H H . .  -> 2 hits of 6. The bound with 2 blocks: block 0 . block 1 .
    // H H, then piece 1 block 0 (never again) bypassed, so block 0 hits: 3.
    let t = trace(
        &[2],
        &[
            (0, 0, 0, 0),
            (0, 0, 0, 1),
            (0, 0, 0, 0),
            (0, 0, 0, 1),
            (0, 0, 1, 0),
            (0, 0, 0, 0),
        ],
    );
    let r = simulate_bytes(&t, &options(vec![Capacity::Bytes(2 * 16384)], "lru")).unwrap();
    assert_eq!(row(&r, "lru").hits, 2);
    assert_eq!(row(&r, "lru").hit_bytes, 2 * 16384);
    assert_eq!(
        row(&r, "bound").hits,
        3,
        "MIN keeps piece 0 block 0 for the last request"
    );
    assert_eq!(r.requests, 6);
    assert_eq!(r.distinct_pieces, 2);
    assert_eq!(r.distinct_blocks, 3);
}

#[test]
fn p2p_admission_by_hand() {
    // Swarm 0 asked by one client, swarm 1 by two; 1-block pieces, capacity 4 blocks.
    // p2p-lru: s0p0 . s0p0 . (one subscriber: never kept) s1p0 c0 . (one so far) s1p0 c1 .
    // (now two: admitted) s1p0 c0 H  -> 1 hit; lru: . H . H H -> 3 hits.
    let t = trace(
        &[1, 1],
        &[
            (0, 0, 0, 0),
            (0, 0, 0, 0),
            (1, 0, 0, 0),
            (1, 1, 0, 0),
            (1, 0, 0, 0),
        ],
    );
    let r = simulate_bytes(
        &t,
        &options(vec![Capacity::Bytes(4 * 16384)], "lru,p2p-lru"),
    )
    .unwrap();
    assert_eq!(row(&r, "p2p-lru").hits, 1);
    assert_eq!(row(&r, "lru").hits, 3);
}

#[test]
fn percent_capacities_are_of_the_traffic() {
    let reqs: Vec<Req> = (0..100).map(|i| (0, 0, i % 10, 0)).collect();
    let t = trace(&[1], &reqs);
    let r = simulate_bytes(
        &t,
        &options(vec!["10%".parse().unwrap(), "1MiB".parse().unwrap()], "lru"),
    )
    .unwrap();
    let caps: Vec<u64> = r.results.iter().map(|x| x.capacity_bytes).collect();
    assert_eq!(caps, vec![163_840, 1 << 20, 163_840, 1 << 20]);
    // 10 pieces cycling through a 10-piece cache: all but the first 10 hit.
    assert_eq!(r.results[0].hits, 90);
    assert!("-1%".parse::<Capacity>().is_err());
    assert!("lots".parse::<Capacity>().is_err());
}

#[test]
fn cli_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.trace");
    let reqs: Vec<Req> = (0..50).map(|i| (0, (i % 3) as u8, i % 7, 0)).collect();
    std::fs::write(&path, trace(&[1], &reqs)).unwrap();
    let json = dir.path().join("r.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peercache"))
        .args(["sim", "run"])
        .arg(&path)
        .args(["--capacity", "10%,50%", "--policy", "lru,gdsf", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("lru") && table.contains("gdsf") && table.contains("bound"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requests/s"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["requests"], 50);
    assert_eq!(v["requested_bytes"], 50 * 16384);
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 + 2);
    for r in rows {
        for k in [
            "policy",
            "capacity",
            "capacity_bytes",
            "hits",
            "hit_bytes",
            "bhr",
            "ohr",
        ] {
            assert!(!r[k].is_null(), "{k} missing in {r}");
        }
    }
    assert_eq!(rows[4]["policy"], "bound");
    assert_eq!(rows[0]["capacity"], "10%");
}

/// A Zipf(0.9) trace: downloads of whole 256 KiB pieces (16 requests each) by 5000
/// subscribers over 2000 swarms of 256 pieces. `PEERCACHE_ZIPF_TRACE=path
/// PEERCACHE_ZIPF_REQUESTS=10000000 cargo test --release --test sim_run -- --ignored`.
#[test]
#[ignore]
fn make_zipf_trace() {
    let Ok(path) = std::env::var("PEERCACHE_ZIPF_TRACE") else {
        return;
    };
    let n: u64 = std::env::var("PEERCACHE_ZIPF_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let (swarms, pieces, blocks) = (2000u32, 256u32, 16u32);
    let objects = (swarms * pieces) as usize;
    let mut cdf = Vec::with_capacity(objects);
    let mut sum = 0.0;
    for r in 1..=objects {
        sum += 1.0 / (r as f64).powf(0.9);
        cdf.push(sum);
    }
    let mut rng = fastrand::Rng::with_seed(18);
    let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w = TraceWriter::new(f).unwrap();
    let mut t = 0u64;
    while w.requests() < n {
        let x = rng.f64() * sum;
        let rank = cdf.partition_point(|&c| c < x).min(objects - 1) as u32;
        // Scatter ranks over swarms so popular pieces are not all in swarm 0.
        let obj = (u64::from(rank) * 2_654_435_761 % u64::from(swarms * pieces)) as u32;
        let (s, p) = (obj / pieces, obj % pieces);
        let mut ih = [0u8; 20];
        ih[..4].copy_from_slice(&s.to_be_bytes());
        let c = rng.u32(0..5000);
        let client = IpAddr::from((0x6440_0000u32 + c).to_be_bytes());
        for b in 0..blocks {
            t += 100;
            w.request(
                t,
                &InfoHash::from(ih),
                blocks * BLOCK,
                0,
                client,
                p,
                b * BLOCK,
                BLOCK,
            )
            .unwrap();
        }
    }
    w.finish().unwrap();
}

/// A polyline of the SVG: its stroke width and points.
struct Polyline {
    width: String,
    points: Vec<(i32, i32)>,
}

/// The value of attribute `name` in the tag `tag` (its text from `<` to `>`).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// Every tag of the SVG (`<...>`), checked to nest: each start tag closed by its own end
/// tag, in order, and nothing after the root. No XML crate is in the tree, and the SVG
/// backend writes only elements, attributes and escaped text, so this is the whole grammar
/// it uses.
fn tags(svg: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>').expect("a tag is closed") + i;
        let tag = &rest[i..=j];
        assert!(!tag[1..].contains('<'), "a '<' inside a tag: {tag}");
        let name = tag[1..tag.len() - 1]
            .trim_start_matches('/')
            .split([' ', '/'])
            .next()
            .unwrap();
        if tag.starts_with("</") {
            assert_eq!(
                open.pop(),
                Some(name),
                "end tag {tag} closes another element"
            );
            if open.is_empty() {
                assert!(rest[j + 1..].trim().is_empty(), "content after the root");
            }
        } else if !tag.ends_with("/>") {
            open.push(name);
        }
        out.push(tag);
        rest = &rest[j + 1..];
    }
    assert!(open.is_empty(), "unclosed elements: {open:?}");
    out
}

/// The text of every `<text>` element, trimmed.
fn texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim())
        })
        .collect()
}

fn polylines(svg: &str) -> Vec<Polyline> {
    tags(svg)
        .into_iter()
        .filter(|t| t.starts_with("<polyline"))
        .map(|t| Polyline {
            width: attr(t, "stroke-width").unwrap().to_owned(),
            points: attr(t, "points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect(),
        })
        .collect()
}

/// A skewed trace on 1-block pieces: piece i's share falls with i, so the bound and the
/// policies part at small sizes.
fn skewed_trace() -> Vec<u8> {
    let reqs: Vec<Req> = (0..600u32)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761) % 1000;
            (0, (i % 5) as u8, x * x / 25_000, 0)
        })
        .collect();
    trace(&[1], &reqs)
}

#[test]
fn plot_draws_a_line_per_policy_and_the_bound() {
    // Sizes out of order: each line must still run left to right.
    let o = options(
        vec![
            "40%".parse().unwrap(),
            "5%".parse().unwrap(),
            "15%".parse().unwrap(),
        ],
        "lru,fifo,gdsf",
    );
    let r = simulate_bytes(&skewed_trace(), &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.svg");
    peercache::sim::plot::write_svg(&r, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    tags(&svg);

    let names = ["lru", "fifo", "gdsf", "bound"];
    let legend = texts(&svg);
    for n in ["lru", "fifo", "gdsf", "bound (offline optimum)"] {
        assert!(legend.contains(&n), "no legend text {n:?} in {legend:?}");
    }
    assert!(
        legend.iter().any(|t| t.contains("600 requests")),
        "{legend:?}"
    );

    // Series lines are the wide polylines through all 3 sizes (legend samples have 2
    // points, axes and ticks are 1 px wide), one per policy and the bound, in that order.
    let lines: Vec<Polyline> = polylines(&svg)
        .into_iter()
        .filter(|p| p.width != "1" && p.points.len() == 3)
        .collect();
    assert_eq!(lines.len(), names.len());
    assert_eq!(lines[3].width, "3", "the bound is drawn wider");
    for l in &lines {
        assert!(
            l.points.windows(2).all(|w| w[0].0 < w[1].0),
            "{:?}",
            l.points
        );
    }
    // The same sizes on every line.
    for l in &lines[1..] {
        let xs = |l: &Polyline| l.points.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(xs(l), xs(&lines[0]));
    }

    // Higher BHR is higher on the page (smaller y), at every size, for every pair.
    let bhr = |name: &str| {
        let mut rows: Vec<_> = r.results.iter().filter(|x| x.policy == name).collect();
        rows.sort_by_key(|x| x.capacity_bytes);
        rows.iter().map(|x| x.bhr).collect::<Vec<f64>>()
    };
    let mut strict = 0;
    for (a, la) in names.iter().zip(&lines) {
        for (b, lb) in names.iter().zip(&lines) {
            for i in 0..3 {
                let (ba, bb) = (bhr(a)[i], bhr(b)[i]);
                let (ya, yb) = (la.points[i].1, lb.points[i].1);
                if ba > bb {
                    assert!(
                        ya <= yb,
                        "{a} {ba} above {b} {bb} at size {i}: y {ya} vs {yb}"
                    );
                }
                if ba > bb + 0.02 {
                    assert!(ya < yb, "{a} {ba} vs {b} {bb} at size {i}: y {ya} vs {yb}");
                    strict += 1;
                }
            }
        }
    }
    assert!(
        strict > 0,
        "the trace should separate the bound from a policy"
    );
    // A marker per point and one per legend entry.
    let circles = svg.matches("<circle").count();
    assert_eq!(circles, names.len() * (3 + 1));
}

#[test]
fn plot_with_one_size_draws_markers_only() {
    let o = options(vec!["10%".parse().unwrap()], "lru,s3fifo");
    let r = simulate_bytes(&skewed_trace(), &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.svg");
    peercache::sim::plot::write_svg(&r, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    tags(&svg);
    let legend = texts(&svg);
    for n in ["lru", "s3fifo", "bound (offline optimum)"] {
        assert!(legend.contains(&n), "no legend text {n:?} in {legend:?}");
    }
    // No series lines and no line samples in the legend: only the 1 px axes and ticks.
    assert!(polylines(&svg).iter().all(|p| p.width == "1"));
    assert_eq!(svg.matches("<circle").count(), 3 * 2);
}

#[test]
fn plot_write_failure_names_the_path() {
    let r = simulate_bytes(
        &skewed_trace(),
        &options(vec!["10%".parse().unwrap()], "lru"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("p.svg");
    let e = peercache::sim::plot::write_svg(&r, &path).unwrap_err();
    assert!(e.to_string().contains("missing/p.svg"), "{e}");
}

#[test]
fn cli_plot_writes_svg_and_refuses_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.trace");
    std::fs::write(&path, skewed_trace()).unwrap();
    let run = |plot: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_peercache"))
            .args(["sim", "run"])
            .arg(&path)
            .args(["--capacity", "5%,20%", "--policy", "lru", "--plot"])
            .arg(plot)
            .output()
            .unwrap()
    };
    let png = dir.path().join("p.png");
    let out = run(&png);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only SVG is supported"), "{err}");
    assert!(!png.exists());
    let svg = dir.path().join("p.SVG");
    let out = run(&svg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = std::fs::read_to_string(&svg).unwrap();
    assert!(body.starts_with("<svg") && body.contains("t.trace, 600 requests"));
}
