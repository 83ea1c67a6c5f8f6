//! Log lines, the same in every mode: on stderr, an RFC 3339 UTC timestamp, the level and
//! the message (`--log-format text`), or one JSON object per line (`--log-format json`)
//! for a log shipper. The level is `info` unless `-v`/`-q` say otherwise; `RUST_LOG`,
//! when set, decides instead (e.g. `RUST_LOG=peercache::fetch=debug`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `2026-11-29T03:40:01.123456Z  INFO message`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","fields":{"message":"…"},"target":"…"}`
    Json,
}

/// The level `-v`/`-q` ask for: each `-v` one more detailed, each `-q` one less.
fn level(verbose: u8, quiet: u8) -> &'static str {
    match i16::from(verbose) - i16::from(quiet) {
        ..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    }
}

/// Install the process's log subscriber (once, first thing in `main`).
pub(crate) fn init(format: LogFormat, verbose: u8, quiet: u8) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| format!("RUST_LOG={spec}: {e}"))?
        }
        _ => EnvFilter::new(level(verbose, quiet)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour only for a person at a terminal: journald and files get plain text.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::level;

    #[test]
    fn verbosity_counts_move_the_level_both_ways() {
        assert_eq!(level(0, 0), "info");
        assert_eq!(level(1, 0), "debug");
        assert_eq!(level(3, 0), "trace");
        assert_eq!(level(0, 1), "warn");
        assert_eq!(level(0, 2), "error");
        assert_eq!(level(0, 9), "error");
        assert_eq!(level(1, 1), "info");
    }
}
