//! `peercache sim run`: a request trace through cache policies and the offline bound.

use std::path::PathBuf;

use super::SimError;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The trace.
    pub trace: PathBuf,
}

pub fn main(_a: &RunArgs) -> Result<(), SimError> {
    Err(SimError::Invalid("sim run: not built yet".into()))
}
