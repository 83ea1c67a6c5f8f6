//! SIGHUP for the policy rules, the same in tap and inline mode.

use std::path::Path;

use super::Shared;
use crate::config::Config;

/// What a SIGHUP did, as one line for the log and the report's `reloads`: Ok when the file
/// was taken (or there was nothing to take), Err when it was refused and the previous one
/// stays in force.
pub type ReloadLine = Result<String, String>;

/// Re-read the rules file the (re)loaded configuration names. A bad file is refused and the
/// rules in force stay. None when no rules are in force.
pub fn reload_rules(
    shared: &Shared,
    running: &Config,
    config_path: Option<&Path>,
) -> Option<ReloadLine> {
    let sink = shared.rules.as_ref()?;
    // The file may name another rules file now; if it cannot be read, the running one.
    let path = config_path
        .and_then(|p| Config::load(p).ok())
        .and_then(|c| c.rules)
        .or_else(|| running.rules.clone())
        .unwrap_or_else(|| sink.rules().path().to_owned());
    Some(match sink.reload(&path) {
        Ok(r) => Ok(format!(
            "SIGHUP: rules reloaded from {}: {r}",
            path.display()
        )),
        Err(e) => Err(format!("SIGHUP: rules refused, previous rules stay: {e}")),
    })
}

/// A SIGHUP outcome in the log, a refusal as a warning (the previous file stays in force);
/// the line, for the report's `reloads`.
pub fn log_reload(outcome: ReloadLine) -> String {
    match outcome {
        Ok(line) => {
            tracing::info!("{line}");
            line
        }
        Err(line) => {
            tracing::warn!("{line}");
            line
        }
    }
}
