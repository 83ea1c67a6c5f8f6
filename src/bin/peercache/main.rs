//! The `peercache` command line: `cli` defines it, `commands` runs the replay, tap and
//! inline modes, `wiring` holds what those share on the binary side (log lines, signals,
//! the HTTP service), and `summary` prints the readable reports.

mod cli;
mod commands;
mod logging;
mod summary;
mod wiring;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Cmd, ConfigCmd, RulesCmd};
use peercache::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.verbose, cli.quiet) {
        eprintln!("peercache: {e}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each cause once: library errors already say their
/// cause ("reading X: No such file or directory (os error 2)"), and repeating it after a
/// colon helps nobody.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !line.contains(&c) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&c);
        }
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Replay(a) => commands::replay(a),
        Cmd::Cache(mut a) => {
            if a.cache_dir.is_none() {
                if let Some(path) = &a.config {
                    a.cache_dir = Config::load(path)?.cache.dir;
                }
            }
            Ok(peercache::cache::cli::run(&a)?)
        }
        Cmd::Tap(a) => commands::tap(a),
        Cmd::Inline(a) => commands::inline(a),
        Cmd::Config {
            cmd:
                ConfigCmd::Check {
                    file,
                    config,
                    print,
                },
        } => {
            // clap requires one of the two
            let Some(file) = file.or(config) else {
                anyhow::bail!("config check: give the configuration FILE");
            };
            let cfg = Config::load(&file)?;
            // The paths it names, as the daemon will open them (as this user).
            let checked = peercache::runtime::preflight::check_config(&cfg)
                .with_context(|| file.display().to_string())?;
            if print {
                print!("{}", serde_yaml::to_string(&cfg).context("printing")?);
            }
            for line in checked {
                tracing::info!("{line}");
            }
            tracing::info!("{}: OK", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rules {
            cmd: RulesCmd::Check { file, config },
        } => {
            let file = match (file, config) {
                (Some(f), _) => f,
                (None, Some(c)) => Config::load(&c)?.rules.with_context(|| {
                    format!("{}: names no rules file (rules: null)", c.display())
                })?,
                (None, None) => anyhow::bail!("rules check: give the rules FILE or --config"),
            };
            let r = peercache::rules::Rules::load(&file)?;
            for line in peercache::runtime::preflight::check_rules(&r)
                .with_context(|| file.display().to_string())?
            {
                tracing::info!("{line}");
            }
            tracing::info!(
                "{}: OK, rules in order: {}",
                file.display(),
                r.names().join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "peercache", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            tracing::info!("manual pages written into {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sim(a) => {
            peercache::sim::main(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Synth(a) => {
            let t = peercache::synth::run(&a)?;
            tracing::info!(
                "wrote {} ({} flows, info-hash {}, {} PIECE messages)",
                a.output.display(),
                t.flows,
                t.info_hash,
                t.piece_messages
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
