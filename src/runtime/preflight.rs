//! `config check` and `rules check` look at what the daemon will open, not only at the
//! syntax: a rules file whose audit log the service user cannot write, or a cache
//! directory on a read-only mount, is refused at start (exit 2, and systemd does not
//! restart it); the check must say so first. Nothing is created or written: the checks use
//! access(2) as the user running the check (`sudo -u peercache peercache config check …`
//! answers for the service user).

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::rules::{Rules, RulesError};

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{key} {}: {why}", path.display())]
    Path {
        key: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// What was checked, one line each, for the check's report.
pub type Checked = Vec<String>;

/// Every path `cfg` names, as the daemon will use it: the cache directory (created if
/// missing, written), the .torrent directory or file (read), the rules file (parsed) and
/// its audit log (appended).
pub fn check_config(cfg: &Config) -> Result<Checked, PreflightError> {
    let mut done = Vec::new();
    if let Some(dir) = &cfg.cache.dir {
        done.push(writable_dir("cache.dir", dir)?);
    }
    if let Some(p) = &cfg.metainfo_dir {
        done.push(readable("metainfo_dir", p)?);
    }
    if let Some(p) = &cfg.rules {
        let r = Rules::load(p)?;
        done.push(format!(
            "rules {}: OK, rules in order: {}",
            p.display(),
            r.names().join(", ")
        ));
        done.extend(check_rules(&r)?);
    }
    Ok(done)
}

/// What a parsed rules file will open: its audit log, appended to (created if missing).
pub fn check_rules(r: &Rules) -> Result<Checked, PreflightError> {
    let Some(log) = r.audit_log() else {
        return Ok(Vec::new());
    };
    let fail = |why: String| PreflightError::Path {
        key: "audit_log",
        path: log.to_owned(),
        why,
    };
    if log.is_dir() {
        return Err(fail("is a directory, not a file".into()));
    }
    if log.exists() {
        access(log, rustix::fs::Access::WRITE_OK).map_err(fail)?;
    } else {
        let parent = log
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(fail(format!(
                "its directory {} does not exist (the file is created, not its directory)",
                parent.display()
            )));
        }
        access(
            parent,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .map_err(|e| fail(format!("cannot create it in {}: {e}", parent.display())))?;
    }
    Ok(vec![format!("audit_log {}: writable", log.display())])
}

/// A directory the daemon writes, created (with its parents) when missing.
fn writable_dir(key: &'static str, dir: &Path) -> Result<String, PreflightError> {
    let fail = |why: String| PreflightError::Path {
        key,
        path: dir.to_owned(),
        why,
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(fail("is not a directory".into()));
        }
        let rwx = rustix::fs::Access::READ_OK
            | rustix::fs::Access::WRITE_OK
            | rustix::fs::Access::EXEC_OK;
        access(dir, rwx).map_err(fail)?;
        return Ok(format!("{key} {}: writable", dir.display()));
    }
    // Missing: the nearest directory that exists must let it be created.
    let mut up = dir.parent();
    while let Some(p) = up.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        up = p.parent();
    }
    let base = up
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !base.is_dir() {
        return Err(fail(format!("{} is not a directory", base.display())));
    }
    access(
        base,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .map_err(|e| {
        fail(format!(
            "missing, and cannot be created in {}: {e}",
            base.display()
        ))
    })?;
    Ok(format!("{key} {}: missing, will be created", dir.display()))
}

/// A .torrent directory or file the daemon reads.
fn readable(key: &'static str, p: &Path) -> Result<String, PreflightError> {
    let fail = |why: String| PreflightError::Path {
        key,
        path: p.to_owned(),
        why,
    };
    if !p.exists() {
        return Err(fail("does not exist".into()));
    }
    let mode = if p.is_dir() {
        rustix::fs::Access::READ_OK | rustix::fs::Access::EXEC_OK
    } else {
        rustix::fs::Access::READ_OK
    };
    access(p, mode).map_err(fail)?;
    Ok(format!("{key} {}: readable", p.display()))
}

/// access(2) with the reason as a readable phrase ("permission denied", "read-only file
/// system").
fn access(p: &Path, mode: rustix::fs::Access) -> Result<(), String> {
    rustix::fs::access(p, mode).map_err(|e| {
        let e = std::io::Error::from(e);
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ if e.raw_os_error() == Some(libc::EROFS) => "read-only file system".to_string(),
            _ => e.to_string(),
        }
    })
}
