//! SIGHUP for the policy rules, the same in tap and inline mode.

use std::path::Path;

use super::Shared;
use crate::config::Config;

/// Re-read the rules file the (re)loaded configuration names. A bad file is refused and the
/// rules in force stay. None when no rules are in force.
pub fn reload_rules(
    shared: &Shared,
    running: &Config,
    config_path: Option<&Path>,
) -> Option<String> {
    let sink = shared.rules.as_ref()?;
    // The file may name another rules file now; if it cannot be read, the running one.
    let path = config_path
        .and_then(|p| Config::load(p).ok())
        .and_then(|c| c.rules)
        .or_else(|| running.rules.clone())
        .unwrap_or_else(|| sink.rules().path().to_owned());
    Some(match sink.reload(&path) {
        Ok(r) => format!("SIGHUP: rules reloaded from {}: {r}", path.display()),
        Err(e) => format!("SIGHUP: rules refused, previous rules stay: {e}"),
    })
}

/// A SIGHUP outcome line (as kept in the report's `reloads`) in the log: a refused file is
/// a warning (the previous one stays in force), anything else information.
pub fn log_reload(line: &str) {
    if line.contains("refused") {
        tracing::warn!("{line}");
    } else {
        tracing::info!("{line}");
    }
}
