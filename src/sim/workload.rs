//! `peercache sim workload`: a synthetic request trace for an ISP population.

use std::path::PathBuf;

use super::SimError;

#[derive(clap::Args, Debug)]
pub struct WorkloadArgs {
    /// Where the trace goes.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn main(_a: &WorkloadArgs) -> Result<(), SimError> {
    Err(SimError::Invalid("sim workload: not built yet".into()))
}
