//! `peercache sim run`: a request trace through cache policies and the offline bound.
//!
//! Two passes over the trace, so memory does not grow with requests except for the bound's
//! next-use array (4 bytes a request, `bound.rs`):
//! 1. the census: requested bytes (what percent capacities are of), each piece's highest
//!    requested byte (the size of pieces whose swarm has no known piece length), and the
//!    blocks' next uses;
//! 2. the replay: every request through every (policy, capacity) and every MIN run, in
//!    lockstep.
//!
//! Semantics (docs/sim.md): policies cache whole pieces, a piece's size rounded up to whole
//! 16 KiB blocks. A request is for the block its `begin` falls in. On a miss the policy may
//! admit the piece, which then takes its whole size, but a block of it is served only once
//! that block passed the box after admission (a later request for a block of a cached piece
//! that had not passed yet is a miss that fills it in). That is the realistic admission
//! (nothing is prefetched), and it is what makes MIN over blocks an upper bound.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use foldhash::fast::FixedState;
use serde::Serialize;

use super::bound::{Min, NextUse, NEVER};
use super::trace::{Request, Swarm, TraceReader};
use super::SimError;
use crate::cache::policy::{hasher, Access, Policy, PolicySpec};
use crate::size::ByteSize;

pub const BLOCK: u64 = 16 * 1024;

/// A cache size: a percentage of the trace's requested bytes, or bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capacity {
    Percent(f64),
    Bytes(u64),
}

impl FromStr for Capacity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Capacity::Percent(v)),
                _ => Err(format!(
                    "{s:?}: a percentage is a number from 0 up, like 5%"
                )),
            },
            None => s.parse::<ByteSize>().map(|b| Capacity::Bytes(b.0)),
        }
    }
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capacity::Percent(p) => write!(f, "{p}%"),
            Capacity::Bytes(b) => write!(f, "{b}"),
        }
    }
}

impl Capacity {
    pub fn bytes(self, traffic: u64) -> u64 {
        match self {
            Capacity::Percent(p) => (traffic as f64 * p / 100.0) as u64,
            Capacity::Bytes(b) => b,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BoundMode {
    /// MIN that may decline to cache a block (the true optimum)
    Bypass,
    /// MIN that caches every missed block (demand paging)
    Demand,
    /// No bound (saves the 4 bytes a request it needs)
    None,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The trace.
    pub trace: PathBuf,
    /// Cache sizes: percentages of the trace's requested bytes, or byte counts (256GiB).
    #[arg(long, value_delimiter = ',', default_value = "1%,5%,10%")]
    pub capacity: Vec<Capacity>,
    /// Policies: lru, fifo, s3fifo, tinylfu, gdsf, p2p[-POLICY] (P2P-aware admission).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lru,fifo,s3fifo,tinylfu,gdsf,p2p-lru"
    )]
    pub policy: Vec<PolicySpec>,
    /// P2P-aware admission: distinct subscribers a swarm needs before its pieces are kept.
    #[arg(long, default_value_t = 2)]
    pub p2p_min_clients: usize,
    /// The offline bound.
    #[arg(long, value_enum, default_value_t = BoundMode::Bypass)]
    pub bound: BoundMode,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw BHR against cache size, one line per policy and the bound, as SVG here.
    #[arg(long, value_name = "FILE", value_parser = svg_path)]
    pub plot: Option<PathBuf>,
}

/// `--plot`'s file: only SVG is drawn, so another extension is refused before the replay
/// rather than after minutes of it.
fn svg_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match p.extension() {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(p),
        _ => Err("only SVG is supported: the file name must end in .svg".into()),
    }
}

/// What `sim run` computes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub trace: String,
    pub requests: u64,
    pub requested_bytes: u64,
    pub distinct_pieces: u64,
    pub distinct_blocks: u64,
    /// One row per (policy, capacity), then the bound's ("bound" or "bound-demand").
    pub results: Vec<Row>,
    pub seconds: f64,
    pub requests_per_second: f64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Row {
    pub policy: String,
    pub capacity: String,
    pub capacity_bytes: u64,
    pub hits: u64,
    pub hit_bytes: u64,
    /// Hit bytes / requested bytes.
    pub bhr: f64,
    /// Hit requests / requests.
    pub ohr: f64,
}

/// The options `simulate` needs (the CLI's, without paths).
#[derive(Clone, Debug)]
pub struct Options {
    pub capacity: Vec<Capacity>,
    pub policy: Vec<PolicySpec>,
    pub p2p_min_clients: usize,
    pub bound: BoundMode,
}

impl From<&RunArgs> for Options {
    fn from(a: &RunArgs) -> Options {
        Options {
            capacity: a.capacity.clone(),
            policy: a.policy.clone(),
            p2p_min_clients: a.p2p_min_clients,
            bound: a.bound,
        }
    }
}

pub fn main(a: &RunArgs) -> Result<(), SimError> {
    let r = simulate_file(&a.trace, &Options::from(a))?;
    let mut out = std::io::stdout().lock();
    let io = |source| SimError::Io {
        what: "writing",
        path: PathBuf::from("-"),
        source,
    };
    write_table(&r, &mut out).map_err(io)?;
    eprintln!(
        "{} requests × {} runs in {:.1} s: {:.0} requests/s",
        r.requests,
        r.results.len(),
        r.seconds,
        r.requests_per_second
    );
    if let Some(path) = &a.json {
        let body =
            serde_json::to_vec_pretty(&r).map_err(|e| SimError::Invalid(format!("JSON: {e}")))?;
        std::fs::write(path, body).map_err(|source| SimError::Io {
            what: "writing",
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &a.plot {
        super::plot::write_svg(&r, path)?;
    }
    Ok(())
}

/// The table: one line per policy, BHR and OHR per capacity, in percent.
pub fn write_table(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let mut caps: Vec<(&str, u64)> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for row in &r.results {
        if !caps.iter().any(|c| c.0 == row.capacity) {
            caps.push((&row.capacity, row.capacity_bytes));
        }
        if !names.contains(&row.policy.as_str()) {
            names.push(&row.policy);
        }
    }
    writeln!(
        out,
        "{} requests, {} bytes, {} pieces, {} blocks",
        r.requests, r.requested_bytes, r.distinct_pieces, r.distinct_blocks
    )?;
    write!(out, "{:<14}", "BHR / OHR %")?;
    for (c, b) in &caps {
        write!(out, " {:>21}", format!("{c} ({})", crate::size::human(*b)))?;
    }
    writeln!(out)?;
    for name in names {
        write!(out, "{name:<14}")?;
        for (c, _) in &caps {
            match r
                .results
                .iter()
                .find(|x| x.policy == name && x.capacity == *c)
            {
                Some(x) => write!(
                    out,
                    " {:>21}",
                    format!("{:6.2} / {:6.2}", x.bhr * 100.0, x.ohr * 100.0)
                )?,
                None => write!(out, " {:>21}", "-")?,
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

pub fn simulate_file(path: &Path, o: &Options) -> Result<Report, SimError> {
    let open = || super::open_trace(path);
    let mut r = simulate_with(open, path, o)?;
    r.trace = path.display().to_string();
    Ok(r)
}

/// A trace held in memory (tests).
pub fn simulate_bytes(trace: &[u8], o: &Options) -> Result<Report, SimError> {
    let open = || {
        TraceReader::new(trace).map_err(|source| SimError::Trace {
            path: PathBuf::from("-"),
            source,
        })
    };
    simulate_with(open, Path::new("-"), o)
}

fn piece_key(q: &Request) -> u64 {
    (u64::from(q.swarm) << 32) | u64::from(q.piece)
}

fn block_of(q: &Request) -> u32 {
    q.begin / BLOCK as u32
}

/// A piece's size in whole blocks: the swarm's piece length (the last piece's from the
/// total length when known), else the piece's highest requested byte.
fn piece_blocks(s: &Swarm, piece: u32, seen_end: u64) -> u64 {
    let pl = u64::from(s.piece_length);
    let len = if pl == 0 {
        seen_end
    } else {
        let start = u64::from(piece) * pl;
        if s.total_length > start {
            pl.min(s.total_length - start)
        } else {
            pl
        }
    };
    len.div_ceil(BLOCK).max(1)
}

/// Which blocks of a cached piece have passed the box since it was admitted.
struct Passed(Box<[u64]>);

impl Passed {
    fn new(blocks: u64) -> Passed {
        Passed(vec![0; blocks.div_ceil(64) as usize].into_boxed_slice())
    }
    /// Whether block b had passed; marks it. A block past the piece's end never counts.
    fn test_and_set(&mut self, b: u32) -> bool {
        let (w, bit) = (b as usize / 64, 1u64 << (b % 64));
        match self.0.get_mut(w) {
            Some(word) => {
                let was = *word & bit != 0;
                *word |= bit;
                was
            }
            None => false,
        }
    }
}

struct PolicyRun {
    name: String,
    capacity: usize,
    policy: Box<dyn Policy<u64>>,
    passed: HashMap<u64, Passed, FixedState>,
    evicted: Vec<u64>,
    hits: u64,
    hit_bytes: u64,
}

impl PolicyRun {
    fn step(&mut self, q: &Request, key: u64, blocks: u64, at: Access) {
        let b = block_of(q);
        if self.policy.get(&key, at) {
            if let Some(p) = self.passed.get_mut(&key) {
                if p.test_and_set(b) {
                    self.hits += 1;
                    self.hit_bytes += u64::from(q.length);
                }
            }
            return;
        }
        self.policy
            .admit(key, blocks * BLOCK, at, &mut self.evicted);
        for k in self.evicted.drain(..) {
            self.passed.remove(&k);
        }
        if self.policy.contains(&key) {
            let mut p = Passed::new(blocks);
            p.test_and_set(b);
            self.passed.insert(key, p);
        }
    }
}

struct Census {
    requests: u64,
    bytes: u64,
    max_length: u64,
    /// Each piece's highest requested byte + 1.
    piece_end: HashMap<u64, u64, FixedState>,
    next: Vec<u32>,
    blocks: u64,
    /// Mean piece size in blocks over distinct pieces.
    mean_blocks: f64,
}

fn census<R: BufRead>(r: TraceReader<R>, path: &Path, want_next: bool) -> Result<Census, SimError> {
    let mut c = Census {
        requests: 0,
        bytes: 0,
        max_length: 0,
        piece_end: HashMap::with_hasher(hasher()),
        next: Vec::new(),
        blocks: 0,
        mean_blocks: 1.0,
    };
    let mut nu: NextUse<(u64, u32)> = NextUse::new();
    // Blocks of the pieces whose length is known, and which swarms have none (their
    // pieces' sizes are only known at the end): for the mean piece size.
    let mut known_blocks = 0u64;
    let mut unknown_swarm: Vec<bool> = Vec::new();
    super::each_request(r, path, |q, s, _| {
        c.requests += 1;
        c.bytes += u64::from(q.length);
        c.max_length = c.max_length.max(u64::from(q.length));
        let end = u64::from(q.begin) + u64::from(q.length);
        let e = c.piece_end.entry(piece_key(q)).or_insert_with(|| {
            if s.piece_length != 0 {
                known_blocks += piece_blocks(s, q.piece, 0);
            } else {
                let i = q.swarm as usize;
                if unknown_swarm.len() <= i {
                    unknown_swarm.resize(i + 1, false);
                }
                unknown_swarm[i] = true;
            }
            0
        });
        *e = (*e).max(end);
        if want_next && nu.push((piece_key(q), block_of(q))).is_none() {
            return Err(SimError::Invalid(
                "the bound handles up to 2^32 - 1 requests (try --bound none)".into(),
            ));
        }
        Ok(())
    })?;
    c.blocks = nu.distinct() as u64;
    c.next = nu.finish();
    let unknown_blocks: u64 = c
        .piece_end
        .iter()
        .filter(|(k, _)| unknown_swarm.get((*k >> 32) as usize) == Some(&true))
        .map(|(_, &e)| e.div_ceil(BLOCK).max(1))
        .sum();
    if !c.piece_end.is_empty() {
        c.mean_blocks = (known_blocks + unknown_blocks) as f64 / c.piece_end.len() as f64;
    }
    Ok(c)
}

/// The census, then the replay.
pub fn simulate_with<R: BufRead>(
    mut open: impl FnMut() -> Result<TraceReader<R>, SimError>,
    path: &Path,
    o: &Options,
) -> Result<Report, SimError> {
    let t0 = Instant::now();
    let want_next = o.bound != BoundMode::None;
    let c = census(open()?, path, want_next)?;
    let caps: Vec<(String, u64)> = o
        .capacity
        .iter()
        .map(|cap| (cap.to_string(), cap.bytes(c.bytes)))
        .collect();
    let mut runs: Vec<PolicyRun> = Vec::new();
    for (ci, (_, bytes)) in caps.iter().enumerate() {
        let items = (*bytes as f64 / (c.mean_blocks.max(1.0) * BLOCK as f64)) as usize;
        for p in &o.policy {
            runs.push(PolicyRun {
                name: p.to_string(),
                capacity: ci,
                policy: p.build::<u64>(*bytes, items.max(1), o.p2p_min_clients),
                passed: HashMap::with_hasher(hasher()),
                evicted: Vec::new(),
                hits: 0,
                hit_bytes: 0,
            });
        }
    }
    let mut mins: Vec<Min> = if want_next {
        caps.iter()
            .map(|(_, b)| Min::new(b / BLOCK, c.next.len(), o.bound == BoundMode::Bypass))
            .collect()
    } else {
        Vec::new()
    };
    let mut i: usize = 0;
    super::each_request(open()?, path, |q, s, _| {
        let key = piece_key(q);
        let end = c.piece_end.get(&key).copied().unwrap_or(0);
        let blocks = piece_blocks(s, q.piece, end);
        let at = Access {
            swarm: u64::from(q.swarm),
            client: u64::from(q.client),
        };
        for run in &mut runs {
            run.step(q, key, blocks, at);
        }
        // Both passes read the same file; a file changed in between is refused.
        let next = match c.next.get(i) {
            Some(&n) => n,
            None if mins.is_empty() => NEVER,
            None => return Err(SimError::Invalid("the trace changed while read".into())),
        };
        for m in &mut mins {
            m.step(i as u32, next);
        }
        i += 1;
        Ok(())
    })?;
    if want_next && i != c.next.len() {
        return Err(SimError::Invalid("the trace changed while read".into()));
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut results: Vec<Row> = runs
        .iter()
        .map(|r| {
            let (cap, bytes) = &caps[r.capacity];
            Row {
                policy: r.name.clone(),
                capacity: cap.clone(),
                capacity_bytes: *bytes,
                hits: r.hits,
                hit_bytes: r.hit_bytes,
                bhr: ratio(r.hit_bytes, c.bytes),
                ohr: ratio(r.hits, c.requests),
            }
        })
        .collect();
    let bound_name = match o.bound {
        BoundMode::Demand => "bound-demand",
        _ => "bound",
    };
    for (m, (cap, bytes)) in mins.iter().zip(&caps) {
        // MIN maximises hit count; each hit is worth at most the longest request, so this
        // bounds any policy's hit bytes, and is exact when every request is one length.
        let hit_bytes = (m.hits * c.max_length).min(c.bytes);
        results.push(Row {
            policy: bound_name.into(),
            capacity: cap.clone(),
            capacity_bytes: *bytes,
            hits: m.hits,
            hit_bytes,
            bhr: ratio(hit_bytes, c.bytes),
            ohr: ratio(m.hits, c.requests),
        });
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Report {
        trace: String::new(),
        requests: c.requests,
        requested_bytes: c.bytes,
        distinct_pieces: c.piece_end.len() as u64,
        distinct_blocks: c.blocks,
        results,
        seconds,
        requests_per_second: c.requests as f64 / seconds.max(1e-9),
    })
}
