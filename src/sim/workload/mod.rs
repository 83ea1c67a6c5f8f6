//! `peercache sim workload`: a synthetic request trace for an ISP population (docs/sim.md).
//!
//! - `catalog`: the torrents (sizes, piece lengths, releases), Mandelbrot-Zipf popularity,
//!   who has fetched what.
//! - `download`: one subscriber's requests for one torrent, piece order and endgame.
//! - `perm`: pseudo-random permutations computed index by index.
//! - `dist`: the distributions drawn from.
//!
//! Memory is the catalogue (a few dozen bytes per torrent), the trace writer's id maps
//! (torrents and subscribers) and the downloads in progress, never the requests: start
//! times come out sorted one at a time, and a heap orders the active downloads by their
//! next request.

pub mod catalog;
pub mod dist;
pub mod download;
pub mod perm;

use std::collections::BinaryHeap;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use catalog::{Catalog, Model, MAX_SUBSCRIBERS, SALT_PIECES};
use dist::SortedUniforms;
use download::Download;
use perm::mix;

use super::trace::TraceWriter;
use super::SimError;
use crate::size::ByteSize;
use crate::wire::infohash::InfoHash;

const DAY_US: f64 = 86_400e6;

#[derive(clap::Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Where the trace goes (the request-trace format of `sim run` and `sim csv`).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The seed: the same seed and options give a byte-identical trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Torrents in the catalogue (popularity ranks 1..=N). The defaults model one town's
    /// week (docs/sim.md, "The default workload").
    #[arg(long, default_value_t = 2_000)]
    pub torrents: u32,
    /// Subscribers, addresses 198.18.0.1 upwards in 198.18.0.0/15 (at most 131070).
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,
    /// Downloads in all: each is one subscriber fetching one whole torrent, and no
    /// subscriber fetches a torrent twice.
    #[arg(long, default_value_t = 5_000)]
    pub downloads: u64,
    /// Mandelbrot-Zipf exponent: a download picks the torrent of rank i with probability
    /// ∝ 1/(i+q)^alpha, the model Hefeeda and Saleh (IEEE/ACM ToN 2008) fit to P2P object
    /// popularity per network; larger is more skewed. Default and its source: docs/sim.md.
    #[arg(long, default_value_t = 0.6)]
    pub alpha: f64,
    /// Mandelbrot-Zipf plateau: how far the head is flattened (q = 0 is pure Zipf; ranks
    /// well under q are nearly equally popular), as fetching each object at most once does
    /// to P2P popularity (Hefeeda and Saleh). Default and its source: docs/sim.md.
    #[arg(long, default_value_t = 50.0)]
    pub q: f64,
    /// Median torrent size (sizes are log-normal around it). The default is a real median
    /// (about 256 MiB) scaled down 8 times to keep the default trace at 3·10^7 requests;
    /// hit ratios do not change with a uniform size scale (docs/sim.md).
    #[arg(long, default_value = "32MiB")]
    pub size_median: ByteSize,
    /// Spread of log(size): sizes fall within median·e^(±2·sigma) 95 % of the time.
    #[arg(long, default_value_t = 1.5)]
    pub size_sigma: f64,
    /// Smallest torrent (sizes drawn below are raised to it).
    #[arg(long, default_value = "1MiB")]
    pub size_min: ByteSize,
    /// Largest torrent (sizes drawn above are lowered to it).
    #[arg(long, default_value = "64GiB")]
    pub size_max: ByteSize,
    /// Length of the trace in days: downloads start uniformly over it, and requests of
    /// downloads in progress run past its end.
    #[arg(long, default_value_t = 7.0)]
    pub days: f64,
    /// Share of torrents released during the trace (uniformly over its days) rather than
    /// present from the start; released torrents' popularity decays from release.
    #[arg(long, default_value_t = 0.3)]
    pub new_share: f64,
    /// Half-life of a released torrent's popularity, in days (exponential decay).
    #[arg(long, default_value_t = 2.0)]
    pub half_life: f64,
    /// Median download rate per download, bytes per second; each download gets 0.5 to
    /// 1.5 times it, and requests its 16 KiB blocks evenly at that rate.
    #[arg(long, default_value = "2MiB")]
    pub rate: ByteSize,
    /// Share of downloads that end in endgame mode, requesting their last blocks twice.
    #[arg(long, default_value_t = 0.5)]
    pub endgame_share: f64,
    /// Blocks an endgame requests twice (the download's last ones).
    #[arg(long, default_value_t = 4)]
    pub endgame_blocks: u32,
}

impl WorkloadArgs {
    fn check(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Invalid(format!("sim workload: {what}")));
        let share = |x: f64| (0.0..=1.0).contains(&x);
        if self.torrents == 0 {
            return bad("--torrents must be at least 1");
        }
        if self.subscribers == 0 || self.subscribers > MAX_SUBSCRIBERS {
            return bad("--subscribers must be 1 to 131070 (198.18.0.0/15)");
        }
        if u128::from(self.downloads) > u128::from(self.torrents) * u128::from(self.subscribers) {
            return bad("--downloads exceeds torrents x subscribers (each fetches a torrent once)");
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return bad("--alpha must be 0 or more");
        }
        if !(self.q.is_finite() && self.q > -1.0) {
            return bad("--q must be more than -1 (rank 1 needs 1 + q > 0)");
        }
        if !(self.size_sigma.is_finite() && self.size_sigma >= 0.0) {
            return bad("--size-sigma must be 0 or more");
        }
        if self.size_min.0 == 0 || self.size_min > self.size_max || self.size_median.0 == 0 {
            return bad("sizes: need 0 < --size-min <= --size-max and --size-median > 0");
        }
        if !(self.days.is_finite() && self.days > 0.0 && self.days * DAY_US < 1.8e19) {
            return bad("--days must be positive (and under 200000 years)");
        }
        if !(self.half_life.is_finite() && self.half_life > 0.0) {
            return bad("--half-life must be positive");
        }
        if !share(self.new_share) || !share(self.endgame_share) {
            return bad("--new-share and --endgame-share are shares, 0 to 1");
        }
        if self.rate.0 == 0 {
            return bad("--rate must be positive");
        }
        Ok(())
    }
}

/// One request as generated, before the trace writer numbers swarms and clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub time_us: u64,
    /// The torrent's index: its popularity rank minus one.
    pub torrent: u32,
    pub info_hash: InfoHash,
    pub piece_length: u32,
    pub total_length: u64,
    pub client: Ipv4Addr,
    pub piece: u32,
    pub begin: u32,
    pub length: u32,
}

/// A download in progress, ordered for the heap by its next request (earliest first; ties
/// by start order, so the output does not depend on the heap's internals).
struct Active {
    next_us: u64,
    seq: u64,
    interval_us: u64,
    torrent: u32,
    info_hash: InfoHash,
    piece_length: u32,
    total_length: u64,
    client: Ipv4Addr,
    d: Download,
}

impl PartialEq for Active {
    fn eq(&self, o: &Self) -> bool {
        (self.next_us, self.seq) == (o.next_us, o.seq)
    }
}
impl Eq for Active {}
impl PartialOrd for Active {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Active {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: reversed.
        (o.next_us, o.seq).cmp(&(self.next_us, self.seq))
    }
}

/// The workload as a stream of requests in time order.
pub struct Generator {
    args: WorkloadArgs,
    catalog: Catalog,
    rng: fastrand::Rng,
    starts: SortedUniforms,
    next_start: Option<u64>,
    active: BinaryHeap<Active>,
    started: u64,
    duration_us: u64,
}

impl Generator {
    pub fn new(args: &WorkloadArgs) -> Result<Generator, SimError> {
        args.check()?;
        let duration_us = (args.days * DAY_US) as u64;
        let catalog = Catalog::new(Model {
            seed: args.seed,
            torrents: args.torrents,
            subscribers: args.subscribers,
            alpha: args.alpha,
            q: args.q,
            size_median: args.size_median.0,
            size_sigma: args.size_sigma,
            size_min: args.size_min.0,
            size_max: args.size_max.0,
            duration_us,
            new_share: args.new_share,
            half_life_us: args.half_life * DAY_US,
        });
        let mut g = Generator {
            args: args.clone(),
            catalog,
            rng: fastrand::Rng::with_seed(args.seed),
            starts: SortedUniforms::new(args.downloads),
            next_start: None,
            active: BinaryHeap::new(),
            started: 0,
            duration_us,
        };
        g.next_start = g.draw_start();
        Ok(g)
    }

    fn draw_start(&mut self) -> Option<u64> {
        let u = self.starts.next(&mut self.rng)?;
        Some((u * self.duration_us as f64) as u64)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Downloads started so far.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Downloads in progress (the heap's size: what memory grows with).
    pub fn in_progress(&self) -> usize {
        self.active.len()
    }

    fn start(&mut self, t_us: u64) -> Result<(), SimError> {
        let Some((torrent, who)) = self.catalog.pick(t_us, &mut self.rng) else {
            return Err(SimError::Invalid(format!(
                "sim workload: no torrent left to start download {} at {:.3} days (every \
                 draw already fetched by all subscribers, or not released, or decayed): \
                 fewer --downloads, more --subscribers or --torrents, a longer --half-life",
                self.started + 1,
                t_us as f64 / DAY_US
            )));
        };
        let Some(t) = self.catalog.torrent(torrent).copied() else {
            return Err(SimError::Invalid(format!(
                "sim workload: torrent {torrent} missing"
            )));
        };
        let rate = self.args.rate.0 as f64 * (0.5 + self.rng.f64());
        let interval_us = ((f64::from(catalog::BLOCK) * 1e6 / rate) as u64).max(1);
        let endgame = if self.rng.f64() < self.args.endgame_share {
            self.args.endgame_blocks
        } else {
            0
        };
        let key = mix(self.args.seed ^ SALT_PIECES) ^ mix(self.started);
        self.active.push(Active {
            next_us: t_us,
            seq: self.started,
            interval_us,
            torrent,
            info_hash: catalog::info_hash(self.args.seed, torrent),
            piece_length: t.piece_length,
            total_length: t.size,
            client: catalog::subscriber_addr(who),
            d: Download::new(&t, key, endgame),
        });
        self.started += 1;
        Ok(())
    }

    /// The next request in time order; None when every download has finished.
    pub fn next_event(&mut self) -> Result<Option<Event>, SimError> {
        loop {
            // A download starting no later than the next request starts first.
            let due = self.active.peek().map(|a| a.next_us);
            if let Some(s) = self.next_start {
                if due.is_none_or(|d| s <= d) {
                    self.start(s)?;
                    self.next_start = self.draw_start();
                    continue;
                }
            }
            let Some(mut top) = self.active.peek_mut() else {
                return Ok(None);
            };
            match top.d.next_block() {
                None => {
                    std::collections::binary_heap::PeekMut::pop(top);
                }
                Some(b) => {
                    let e = Event {
                        time_us: top.next_us,
                        torrent: top.torrent,
                        info_hash: top.info_hash,
                        piece_length: top.piece_length,
                        total_length: top.total_length,
                        client: top.client,
                        piece: b.piece,
                        begin: b.begin,
                        length: b.length,
                    };
                    // Dropping `top` moves it down the heap to its new place.
                    top.next_us = top.next_us.saturating_add(top.interval_us);
                    return Ok(Some(e));
                }
            }
        }
    }
}

/// What a generation wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub requests: u64,
    /// Bytes requested (the sum of the requests' lengths).
    pub bytes: u64,
    pub downloads: u64,
    pub torrents: usize,
    /// Microseconds from the first request to the last.
    pub span_us: u64,
}

/// The workload into `out` as a trace; `progress` is called now and then with the summary
/// so far and the downloads in progress.
pub fn generate<W: Write>(
    args: &WorkloadArgs,
    out: W,
    mut progress: impl FnMut(&Summary, usize),
) -> Result<(Summary, W), SimError> {
    let mut g = Generator::new(args)?;
    let io = |source| SimError::Io {
        what: "writing",
        path: args.output.clone(),
        source,
    };
    let mut w = TraceWriter::new(out).map_err(io)?;
    let mut s = Summary::default();
    let mut first_us = None;
    while let Some(e) = g.next_event()? {
        w.request(
            e.time_us,
            &e.info_hash,
            e.piece_length,
            e.total_length,
            IpAddr::V4(e.client),
            e.piece,
            e.begin,
            e.length,
        )
        .map_err(io)?;
        s.requests += 1;
        s.bytes += u64::from(e.length);
        let first = *first_us.get_or_insert(e.time_us);
        s.span_us = e.time_us - first;
        if s.requests % (1 << 16) == 0 {
            s.downloads = g.started();
            progress(&s, g.in_progress());
        }
    }
    s.downloads = g.started();
    s.torrents = g.catalog().distinct();
    Ok((s, w.finish().map_err(io)?))
}

/// Counts what passes through, for the trace's size in the summary line.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn main(a: &WorkloadArgs) -> Result<(), SimError> {
    a.check()?;
    let f = std::fs::File::create(&a.output).map_err(|source| SimError::Io {
        what: "creating",
        path: a.output.clone(),
        source,
    })?;
    let t0 = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(a.downloads);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} downloads started {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last_log = Instant::now();
    let (s, out) = generate(a, Counting { inner: f, bytes: 0 }, |s, active| {
        if let Some(b) = &bar {
            b.set_position(s.downloads);
            b.set_message(format!("{} requests, {active} in progress", s.requests));
        } else if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            tracing::info!(
                requests = s.requests,
                downloads = s.downloads,
                in_progress = active,
                "sim workload"
            );
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "sim workload: {} requests ({} bytes requested) in {} downloads of {} torrents over \
         {:.2} days; trace {} bytes; {:.1} s, {:.0} requests/s",
        s.requests,
        s.bytes,
        s.downloads,
        s.torrents,
        s.span_us as f64 / DAY_US,
        out.bytes,
        secs,
        s.requests as f64 / secs.max(1e-9)
    );
    Ok(())
}
