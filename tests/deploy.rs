//! The shipped files work as shipped (issue 15): both systemd units pass `systemd-analyze
//! verify` and agree with the example configuration and default rules on every path; and
//! where the package is installed (CI builds it with deploy/build-deb.sh and installs it
//! with dpkg -i, then sets PEERCACHE_REQUIRE_PACKAGE), the installed tap unit's exact
//! ExecStart, run as the unit's user with only the unit's capabilities, caches the pieces of
//! a capture replayed onto its interface, and the inline unit's comes up and stops cleanly.
//! The machine's container has no systemd as PID 1, so the units are not booted: the test
//! makes what systemd would (directories, environment, credentials) and runs the line.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use peercache::config::Config;

/// A unit file's `[Service]`/`[Unit]` settings: key to its values, in file order.
fn unit(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line.split_once('=').expect(line);
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    m
}

fn one<'a>(u: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match u.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: one value expected, got {other:?}"),
    }
}

const UNITS: [&str; 2] = ["peercache-tap.service", "peercache-inline.service"];
const BIN: &str = "/usr/bin/peercache";

/// `systemd-analyze verify` says nothing about either unit (it warns on stderr, exit 0, for
/// unknown keys: silence is the test). The ExecStart binary must exist: the installed one,
/// else this build's in a copy of the unit.
#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let installed = Path::new(BIN).is_file();
    let mut files = Vec::new();
    for name in UNITS {
        let text = std::fs::read_to_string(repo().join("deploy").join(name)).unwrap();
        let text = match installed {
            true => text,
            false => text.replace(BIN, env!("CARGO_BIN_EXE_peercache")),
        };
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        files.push(p);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .expect("systemd-analyze (Debian package systemd; deploy/install-deps.sh)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

/// The units, the example configuration (the package's /etc/peercache/peercache.yaml) and
/// the default rules name the same places, and the units restart only what a restart can
/// fix.
#[test]
fn units_config_and_rules_agree_on_paths() {
    let cfg = Config::load(&repo().join("deploy/peercache.example.yaml")).unwrap();
    let rules = std::fs::read_to_string(repo().join("rules/default.yaml")).unwrap();
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    // The package puts the example and the default rules where the units and config look.
    for (from, to) in [
        (
            "deploy/peercache.example.yaml",
            "etc/peercache/peercache.yaml",
        ),
        ("rules/default.yaml", "etc/peercache/rules.yaml"),
    ] {
        assert!(
            cargo.contains(&format!("[\"{from}\", \"{to}\"")),
            "Cargo.toml's deb assets must install {from} as /{to}"
        );
    }
    assert_eq!(
        cfg.rules.as_deref(),
        Some(Path::new("/etc/peercache/rules.yaml"))
    );
    for name in UNITS {
        let u = unit(&std::fs::read_to_string(repo().join("deploy").join(name)).unwrap());
        let exec = one(&u, "ExecStart");
        assert!(exec.starts_with(&format!("{BIN} ")), "{name}: {exec}");
        assert!(
            exec.ends_with(" --config /etc/peercache/peercache.yaml"),
            "{name}: {exec}"
        );
        assert_eq!(one(&u, "User"), "peercache", "{name}");
        assert_eq!(one(&u, "RestartPreventExitStatus"), "2", "{name}");
        assert_eq!(one(&u, "AmbientCapabilities"), "CAP_NET_RAW CAP_NET_ADMIN");
        assert_eq!(
            one(&u, "CapabilityBoundingSet"),
            "CAP_NET_RAW CAP_NET_ADMIN"
        );
        assert_eq!(one(&u, "ProtectSystem"), "strict", "{name}");
        // Under ProtectSystem=strict only these are writable: they must be the config's.
        let cache = format!("/var/cache/{}", one(&u, "CacheDirectory"));
        assert_eq!(cfg.cache.dir.as_deref(), Some(Path::new(&cache)), "{name}");
        let state: Vec<String> = one(&u, "StateDirectory")
            .split_whitespace()
            .map(|d| format!("/var/lib/{d}"))
            .collect();
        let torrents = cfg.metainfo_dir.as_deref().unwrap().to_str().unwrap();
        assert!(state.iter().any(|d| d == torrents), "{name}: {state:?}");
        let logs = format!("/var/log/{}/", one(&u, "LogsDirectory"));
        assert!(
            rules.contains(&format!("# audit_log: {logs}")),
            "rules/default.yaml's audit_log example must lie in {logs}"
        );
        assert!(
            !u.contains_key("ReadWritePaths"),
            "{name}: the *Directory= settings make the writable paths"
        );
        // One owner per cache: the two services exclude each other.
        let other = UNITS.iter().find(|n| **n != name).unwrap();
        assert_eq!(one(&u, "Conflicts"), *other, "{name}");
    }
}

/// The package, when installed: was it? CI must have it; elsewhere the test says it
/// skipped.
fn package_installed() -> bool {
    let yes = Path::new("/var/lib/dpkg/info/peercache.list").is_file();
    if !yes {
        assert!(
            std::env::var_os("PEERCACHE_REQUIRE_PACKAGE").is_none(),
            "PEERCACHE_REQUIRE_PACKAGE is set but the peercache package is not installed"
        );
        eprintln!("NOTICE: skipped, the peercache package is not installed (deploy/build-deb.sh; dpkg -i)");
    }
    yes
}

/// The installed unit's ExecStart with `env` for its variables (as /etc/default/peercache
/// would set them), split into words.
fn exec_start(u: &BTreeMap<String, Vec<String>>, env: &[(&str, &str)]) -> Vec<String> {
    let mut line = one(u, "ExecStart").to_string();
    for (k, v) in env {
        line = line.replace(&format!("${{{k}}}"), v);
    }
    assert!(!line.contains('$'), "a variable left unset: {line}");
    line.split_whitespace().map(str::to_string).collect()
}

/// A service's command line started as systemd would start the unit: in the namespace, as
/// its User/Group, with its AmbientCapabilities and bounding set and nothing else.
fn start_service(ns: &Netns, u: &BTreeMap<String, Vec<String>>, argv: &[String]) -> Proc {
    let caps: Vec<String> = one(u, "AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    let caps = caps.join(",");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.0, "setpriv"])
        .arg(format!("--reuid={}", one(u, "User")))
        .arg(format!("--regid={}", one(u, "Group")))
        .arg("--init-groups")
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg("--no-new-privs")
        .arg("--")
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    Proc::spawn("service", &mut cmd)
}

/// Run `peercache ARGS` as the service user (how an operator should touch the service's
/// cache, so that nothing in it ends up owned by root).
fn as_service_user(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=peercache",
            "--regid=peercache",
            "--init-groups",
            BIN,
        ])
        .args(args)
        .output()
        .unwrap()
}

/// dpkg -i of the built package installs a tap that caches as shipped: the installed
/// config, rules, directories and user; a .torrent dropped where the config says; a real
/// capture replayed onto the tap port with tcpreplay; then every piece is in the cache,
/// owned by the service user. The inline unit's line then comes up on two ports and stops.
#[test]
fn the_installed_services_run_as_shipped() {
    if !package_installed() {
        return;
    }
    require_root();
    let version = Command::new(BIN).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(
        version.contains("(git "),
        "the package's --version names its revision: {version}"
    );
    // The configuration as installed, checked as the service user.
    let check = as_service_user(&["config", "check", "/etc/peercache/peercache.yaml"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let cfg = Config::load(Path::new("/etc/peercache/peercache.yaml")).unwrap();
    let cache = cfg.cache.dir.clone().unwrap();
    let torrents = cfg.metainfo_dir.clone().unwrap();
    let ih = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
    // A fresh start for this swarm (an earlier run may have cached it).
    let _ = as_service_user(&["cache", "evict", "--cache-dir", cache.to_str().unwrap(), ih]);
    let dropped: PathBuf = torrents.join("peercache-deploy-test.torrent");
    std::fs::copy(plain_torrent(), &dropped).unwrap();

    let ns = Netns::new("pc-deb", &[("pc-deb0", "pc-deb1"), ("pc-deb2", "pc-deb3")]);
    let tap_unit =
        unit(&std::fs::read_to_string("/lib/systemd/system/peercache-tap.service").unwrap());
    let argv = exec_start(&tap_unit, &[("PEERCACHE_IFACE", "pc-deb1")]);
    let mut tap = start_service(&ns, &tap_unit, &argv);
    tap.wait_for("capturing on pc-deb1", Duration::from_secs(30));
    tcpreplay("pc-deb0", &repo().join("pcaps/lab-tcp-plain.pcap"), 200);
    // The tap's own metrics, inside its namespace, until all 16 pieces are stored.
    let listen = cfg.http.listen.unwrap().to_string();
    let t0 = Instant::now();
    let stored = loop {
        let m = Command::new("ip")
            .args(["netns", "exec", "pc-deb", "curl", "-sf"])
            .arg(format!("http://{listen}/metrics"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&m.stdout).into_owned();
        let stored = text
            .lines()
            .find_map(|l| l.strip_prefix("peercache_cache_stored_pieces "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if stored >= 16.0 || t0.elapsed() > Duration::from_secs(30) {
            break stored;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // SIGTERM, as `systemctl stop` sends it.
    let (status, _, lines) = tap.stop();
    let _ = std::fs::remove_file(&dropped);
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(stored >= 16.0, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| log_line(l).is_some_and(|(lv, _)| lv != "ERROR")),
        "{lines:#?}"
    );
    // Every piece of the swarm, verified, in the installed cache, owned by the service.
    let ls = as_service_user(&[
        "cache",
        "ls",
        "--json",
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let s = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["info_hash"] == ih)
        .expect("the swarm in the cache");
    assert_eq!(s["pieces_cached"], 16, "{s}");
    let owner = Command::new("find")
        .arg(&cache)
        .args(["!", "-user", "peercache"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&owner.stdout),
        "",
        "files not owned by the service user"
    );

    // The inline unit's line: bridges its two ports with only its capabilities, stops on
    // SIGTERM with exit 0.
    let inline_unit =
        unit(&std::fs::read_to_string("/lib/systemd/system/peercache-inline.service").unwrap());
    let argv = exec_start(
        &inline_unit,
        &[
            ("PEERCACHE_SUBSCRIBER_IFACE", "pc-deb1"),
            ("PEERCACHE_UPSTREAM_IFACE", "pc-deb3"),
        ],
    );
    let mut inline = start_service(&ns, &inline_unit, &argv);
    inline.wait_for(
        "bridging pc-deb1 (subscribers) <-> pc-deb3 (upstream)",
        Duration::from_secs(30),
    );
    let (status, _, lines) = inline.stop();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
}

/// `rules check` and `config check` open what the daemon will open (issue 15: a rules file
/// whose audit log the daemon cannot write was "OK"): each refusal is exit 2 and one ERROR
/// line naming the key, the path and the reason; run as `nobody`, the answer is nobody's.
#[test]
fn checks_refuse_what_the_daemon_would_refuse() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A copy of the binary `nobody` may run, in a directory it may read but not write.
    let bin = peercache_for_nobody(dir.path());
    use std::os::unix::fs::PermissionsExt;
    let d = dir.path().display();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    };
    let check = |what: &str, file: &Path, nobody: bool| {
        let out = command_as(&bin, nobody)
            .args([what, "check"])
            .arg(file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => (0, String::new()),
            code => {
                assert_eq!(code, Some(2), "{err}");
                (2, one_error(&out.stderr))
            }
        }
    };
    // The audit log's directory does not exist.
    let rules = write(
        "r1.yaml",
        format!("audit_log: {d}/no-such-dir/audit.jsonl\ndefault: serve\n"),
    );
    assert_eq!(
        check("rules", &rules, false),
        (
            2,
            format!(
                "{}: audit_log {d}/no-such-dir/audit.jsonl: its directory {d}/no-such-dir does not exist (the file is created, not its directory)",
                rules.display()
            )
        )
    );
    // Root may write the directory, nobody may not.
    let rules = write(
        "r2.yaml",
        format!("audit_log: {d}/audit.jsonl\ndefault: serve\n"),
    );
    assert_eq!(check("rules", &rules, false), (0, String::new()));
    assert_eq!(
        check("rules", &rules, true),
        (
            2,
            format!(
                "{}: audit_log {d}/audit.jsonl: cannot create it in {d}: permission denied",
                rules.display()
            )
        )
    );
    assert!(
        !dir.path().join("audit.jsonl").exists(),
        "a check creates nothing"
    );
    // A config: its rules are checked the same way, its cache directory must be one and
    // be writable, its .torrent directory must exist.
    let cfg = write("c1.yaml", format!("rules: {}\n", rules.display()));
    assert_eq!(
        check("config", &cfg, true),
        (
            2,
            format!(
                "{}: audit_log {d}/audit.jsonl: cannot create it in {d}: permission denied",
                cfg.display()
            )
        )
    );
    let cfg = write("c2.yaml", format!("cache:\n  dir: {}\n", bin.display()));
    assert_eq!(
        check("config", &cfg, false),
        (
            2,
            format!(
                "{}: cache.dir {}: is not a directory",
                cfg.display(),
                bin.display()
            )
        )
    );
    let cfg = write("c3.yaml", format!("cache:\n  dir: {d}/cache/new\n"));
    assert_eq!(check("config", &cfg, false), (0, String::new()));
    assert_eq!(
        check("config", &cfg, true),
        (
            2,
            format!(
                "{}: cache.dir {d}/cache/new: missing, and cannot be created in {d}: permission denied",
                cfg.display()
            )
        )
    );
    let cfg = write("c4.yaml", format!("metainfo_dir: {d}/torrents\n"));
    assert_eq!(
        check("config", &cfg, false),
        (
            2,
            format!(
                "{}: metainfo_dir {d}/torrents: does not exist",
                cfg.display()
            )
        )
    );
}
