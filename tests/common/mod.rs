//! Helpers shared by the integration tests: replay through the library, public corpus
//! location, and tshark's view of the same file for cross-checks.

#![allow(dead_code)]

mod proc;
#[allow(unused_imports)] // not every test binary runs daemons
pub use proc::{signal, Proc};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use peercache::config::Config;
use peercache::replay::{replay, Outcome, ReplayOptions};
use peercache::report::{Report, SwarmReport};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the public captures are there (`../shared/pcaps-public`, beside the repo). A
/// fresh clone has none: the tests that need them print a notice and pass without
/// checking anything. CI sets `PEERCACHE_REQUIRE_PUBLIC=1`, and then their absence fails.
pub fn have_public() -> bool {
    let dir = repo().join("../shared/pcaps-public");
    if dir.is_dir() {
        return true;
    }
    assert!(
        std::env::var_os("PEERCACHE_REQUIRE_PUBLIC").is_none(),
        "PEERCACHE_REQUIRE_PUBLIC is set but {} is missing",
        dir.display()
    );
    eprintln!(
        "NOTICE: skipped, {} is absent (place ../shared beside the repository to run this test)",
        dir.display()
    );
    false
}

/// The public captures live beside the repository (`../shared/pcaps-public`), never in it.
pub fn public(name: &str) -> PathBuf {
    let p = repo().join("../shared/pcaps-public").join(name);
    assert!(
        p.exists(),
        "public capture missing: {} (../shared must sit beside the repo)",
        p.display()
    );
    p
}

pub fn run_with(paths: &[PathBuf], cfg: &Config, workers: usize) -> Outcome {
    replay(
        paths,
        cfg,
        &ReplayOptions {
            workers,
            ..Default::default()
        },
    )
}

pub fn run(path: &Path) -> Report {
    let out = run_with(&[path.to_owned()], &Config::default(), 1);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    out.report
}

pub fn swarm<'a>(r: &'a Report, info_hash: &str) -> &'a SwarmReport {
    r.swarms
        .iter()
        .find(|s| s.info_hash == info_hash)
        .unwrap_or_else(|| {
            panic!(
                "swarm {info_hash} not in report: {:?}",
                r.swarms.iter().map(|s| &s.info_hash).collect::<Vec<_>>()
            )
        })
}

/// Counts of BitTorrent message types as tshark's dissector decodes them (every message of
/// a frame counts; type 7 is PIECE, 6 REQUEST). tshark is a declared test dependency.
pub fn tshark_msg_types(path: &Path, extra: &[&str]) -> BTreeMap<u32, u64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(extra)
        .args([
            "-Y",
            "bittorrent",
            "-T",
            "fields",
            "-e",
            "bittorrent.msg.type",
        ])
        .output()
        .expect("tshark must be installed (apt-get install tshark): the tests cross-check with it");
    assert!(out.status.success(), "tshark failed on {}", path.display());
    let mut m = BTreeMap::new();
    for tok in String::from_utf8_lossy(&out.stdout).split([',', '\n']) {
        if let Ok(t) = tok.trim().parse::<u32>() {
            *m.entry(t).or_default() += 1;
        }
    }
    m
}

pub fn total(r: &Report, f: impl Fn(&SwarmReport) -> u64) -> u64 {
    r.swarms.iter().map(&f).sum::<u64>() + f(&r.unattributed)
}

/// A minimal HTTP/1.1 request to the box's service (`headers`: extra header lines, each
/// ending in CRLF); returns the status and the body.
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// `DIR/meta` holding a copy of the .torrent file `torrent`: a `--metainfo` directory.
pub fn meta_dir(dir: &Path, torrent: &Path) -> PathBuf {
    let meta = dir.join("meta");
    std::fs::create_dir_all(&meta).unwrap();
    let name = torrent.file_name().expect("a .torrent file");
    std::fs::copy(torrent, meta.join(name)).unwrap();
    meta
}

/// The bundled plain recording's .torrent (`pcaps/lab-tcp-plain.torrent`).
pub fn plain_torrent() -> PathBuf {
    repo().join("pcaps/lab-tcp-plain.torrent")
}

/// `peercache ARGS`, which must succeed (else its stderr is the failure): its stdout.
pub fn peercache_stdout<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_peercache"))
        .args(args)
        .output()
        .expect("run peercache");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `peercache ARGS`, which must succeed (else its stderr is the failure): its stdout as
/// JSON.
pub fn peercache_json<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> serde_json::Value {
    serde_json::from_slice(&peercache_stdout(args)).expect("JSON on stdout")
}

/// A swarm of a JSON report (`swarms[]`) by info-hash.
pub fn swarm_json<'a>(
    report: &'a serde_json::Value,
    info_hash: &str,
) -> Option<&'a serde_json::Value> {
    report["swarms"]
        .as_array()?
        .iter()
        .find(|s| s["info_hash"] == info_hash)
}

/// The live-lab tests build network namespaces: they need root, and say so.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the live lab needs root (network namespaces); run the tests as root"
    );
}

/// One of `peercache`'s text log lines taken apart: (level, message). None unless it has
/// the documented shape: an RFC 3339 UTC timestamp with microseconds, the level, the
/// message (`2026-11-29T03:27:00.110365Z ERROR piece 16 of … is not in the cache`).
pub fn log_line(line: &str) -> Option<(&str, &str)> {
    let (ts, rest) = line.split_once(' ')?;
    // `d` is any digit; every other character stands for itself.
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    let shape = ts.len() == SHAPE.len()
        && ts.bytes().zip(SHAPE).all(|(c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        });
    if !shape {
        return None;
    }
    let (level, msg) = rest.trim_start().split_once(' ')?;
    ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
        .contains(&level)
        .then_some((level, msg))
}

/// What a failing command said: its stderr must be exactly one well-formed ERROR line,
/// whose message this is.
pub fn one_error(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    match log_line(lines[0]) {
        Some(("ERROR", msg)) => msg.to_string(),
        _ => panic!("not an ERROR log line: {err}"),
    }
}

/// A copy of the `peercache` binary in `dir` that `nobody` may run (the build tree may be
/// private), with `dir` made world-readable: for the tests of what an unprivileged user
/// is told.
pub fn peercache_for_nobody(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("peercache");
    std::fs::copy(env!("CARGO_BIN_EXE_peercache"), &bin).expect("copy the binary");
    for p in [dir, bin.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// `bin`, to be run as root (the tests' user) or as `nobody` (uid and gid 65534, no groups).
pub fn command_as(bin: &Path, nobody: bool) -> Command {
    match nobody {
        true => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(bin);
            c
        }
        false => Command::new(bin),
    }
}

/// `ip ARGS`; Err with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// A network namespace with veth pairs into it; removed (with its links) when dropped.
pub struct Netns(pub &'static str);

impl Netns {
    pub fn new(name: &'static str, pairs: &[(&str, &str)]) -> Netns {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name]).unwrap();
        let ns = Netns(name);
        ip(&["-n", name, "link", "set", "lo", "up"]).unwrap();
        for (outside, inside) in pairs {
            let _ = ip(&["link", "del", outside]);
            ip(&[
                "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", name,
            ])
            .unwrap();
            ip(&["link", "set", outside, "up"]).unwrap();
            ip(&["-n", name, "link", "set", inside, "up"]).unwrap();
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", self.0]);
    }
}

/// `tcpreplay` of a capture out of `iface` at `mbps`, which must succeed.
pub fn tcpreplay(iface: &str, pcap: &Path, mbps: u32) {
    let sent = Command::new("tcpreplay")
        .arg("-q")
        .arg(format!("--intf1={iface}"))
        .arg(format!("--mbps={mbps}"))
        .arg(pcap)
        .output()
        .expect("tcpreplay (Debian package tcpreplay; deploy/install-deps.sh)");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
}
