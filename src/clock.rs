//! Wall-clock time, for stamps only (metrics snapshots, audit lines, log lines). The engine
//! never reads it, and the policy rules get it handed in as a [`Clock`]: packet-time code
//! stays deterministic, and a test can fix the time it sees.

/// A source of seconds since the UNIX epoch.
pub type Clock = fn() -> f64;

/// Seconds since the UNIX epoch (0 if the system clock is before it).
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
