//! Cache value (issue 18): request traces, a synthetic ISP workload, and a simulator that
//! replays a trace through cache policies against the offline optimum (docs/sim.md).
//!
//! - `trace`: the request-trace format (`--requests-out`, `sim workload`, `sim run`).
//! - `workload`: the synthetic workload generator (`peercache sim workload`).
//! - `run`: the simulator (`peercache sim run`).
//! - `plot`: its BHR-against-cache-size curves as SVG (`sim run --plot`).
//! - `bound`: the offline bound, Belady's MIN over 16 KiB blocks.

pub mod bound;
pub mod plot;
pub mod run;
pub mod trace;
pub mod workload;

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    #[command(subcommand)]
    pub cmd: SimCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum SimCmd {
    /// Write a synthetic request trace for an ISP population (deterministic by seed)
    Workload(workload::WorkloadArgs),
    /// Replay a request trace through cache policies and the offline bound
    Run(run::RunArgs),
    /// Print a request trace as CSV (time_us, info_hash, piece_length, client, piece,
    /// begin, length), one request per line
    Csv {
        /// The trace (from --requests-out or `sim workload`).
        trace: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{}: {source}", path.display())]
    Trace {
        path: PathBuf,
        #[source]
        source: trace::TraceError,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// `peercache sim ...`.
pub fn main(args: &SimArgs) -> Result<(), SimError> {
    match &args.cmd {
        SimCmd::Workload(a) => workload::main(a),
        SimCmd::Run(a) => run::main(a),
        SimCmd::Csv { trace } => csv(trace, &mut std::io::stdout().lock()),
    }
}

/// The trace file at `path`, opened for reading.
pub(crate) fn open_trace(
    path: &std::path::Path,
) -> Result<trace::TraceReader<std::io::BufReader<std::fs::File>>, SimError> {
    let f = std::fs::File::open(path).map_err(|source| SimError::Io {
        what: "opening",
        path: path.to_owned(),
        source,
    })?;
    trace::TraceReader::new(std::io::BufReader::with_capacity(1 << 20, f)).map_err(|source| {
        SimError::Trace {
            path: path.to_owned(),
            source,
        }
    })
}

/// Every request of the trace, with the swarm and the client it names.
pub(crate) fn each_request<R: std::io::BufRead>(
    mut r: trace::TraceReader<R>,
    path: &std::path::Path,
    mut f: impl FnMut(&trace::Request, &trace::Swarm, std::net::IpAddr) -> Result<(), SimError>,
) -> Result<(), SimError> {
    use trace::Item;
    let mut swarms = Vec::new();
    let mut clients = Vec::new();
    loop {
        let item = r.next_item().map_err(|source| SimError::Trace {
            path: path.to_owned(),
            source,
        })?;
        match item {
            None => return Ok(()),
            Some(Item::Swarm(_, s)) => swarms.push(s),
            Some(Item::Client(_, c)) => clients.push(c),
            Some(Item::Request(q)) => {
                // The reader checked the ids against the definitions.
                if let (Some(s), Some(&c)) =
                    (swarms.get(q.swarm as usize), clients.get(q.client as usize))
                {
                    f(&q, s, c)?;
                }
            }
        }
    }
}

/// The trace as CSV on `out`.
pub fn csv(path: &std::path::Path, out: &mut impl std::io::Write) -> Result<(), SimError> {
    let io = |source| SimError::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    };
    writeln!(
        out,
        "time_us,info_hash,piece_length,client,piece,begin,length"
    )
    .map_err(io)?;
    each_request(open_trace(path)?, path, |q, s, c| {
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            q.time_us, s.info_hash, s.piece_length, c, q.piece, q.begin, q.length
        )
        .map_err(io)
    })
}
