//! The piece cache, end to end: captures in, verified pieces on disk, the original files
//! back out through `peercache cache get`, byte for byte; hostile peers caught; LRU order;
//! would-be hits; and a kill -9 in the middle of cache writes.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    command_as, have_public, meta_dir, one_error, peercache_for_nobody, peercache_json,
    plain_torrent, public, repo, swarm_json,
};
use peercache::cache::{PieceKey, PieceStore};
use peercache::synth::{self, SynthArgs};
use peercache::wire::infohash::{self, InfoHash};
use serde_json::Value;
use sha1::Digest;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_peercache")
}

/// `peercache replay --json` with the given extra arguments: the JSON as a consumer sees it.
fn replay_cli(args: &[&str], files: &[&Path]) -> Value {
    let mut all: Vec<&OsStr> = vec!["replay".as_ref(), "--json".as_ref()];
    all.extend(args.iter().map(OsStr::new));
    all.extend(files.iter().map(|f| f.as_os_str()));
    peercache_json(all)
}

/// A small tmpfs mounted at a directory (the tests that need a full or read-only file
/// system; root), unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, opts: &str) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs {opts} (the tests need root)");
        Tmpfs(at.to_path_buf())
    }

    /// Mount it again with other options (`remount,` is added).
    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn sw<'a>(r: &'a Value, ih: &str) -> &'a Value {
    swarm_json(r, ih).unwrap_or_else(|| panic!("swarm {ih}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The file rebuilt from `cache get` of every piece, in order.
fn rebuild(cache: &Path, ih: &str, pieces: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..pieces {
        let o = Command::new(bin())
            .args(["cache", "get", "--cache-dir"])
            .arg(cache)
            .args([ih, &i.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "piece {i} of {ih} missing");
        out.extend_from_slice(&o.stdout);
    }
    out
}

fn hex(b: &[u8]) -> String {
    infohash::hex(b)
}

fn lab_truth(name: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("pcaps").join(format!("{name}.json"))).unwrap(),
    )
    .unwrap()
}

/// A directory holding only one .torrent, so a test can be sure where metainfo came from.
fn torrent_dir(torrent: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(torrent, d.path().join(torrent.file_name().unwrap())).unwrap();
    d
}

#[test]
fn lab_captures_rebuild_their_files_byte_for_byte() {
    for (name, with_torrent) in [
        ("lab-tcp-plain", true),
        ("lab-tcp-aria2", true),
        ("lab-tcp-magnet", false),
    ] {
        let t = lab_truth(name);
        let cache = tempfile::tempdir().unwrap();
        let tdir = torrent_dir(&repo().join("pcaps").join(format!("{name}.torrent")));
        let mut args = vec!["--cache-dir", cache.path().to_str().unwrap()];
        if with_torrent {
            args.extend(["--metainfo", tdir.path().to_str().unwrap()]);
        }
        let r = replay_cli(&args, &[&repo().join("pcaps").join(format!("{name}.pcap"))]);
        let ih = t["info_hash"].as_str().unwrap();
        let s = sw(&r, ih);
        let pieces = t["num_pieces"].as_u64().unwrap();
        assert_eq!(
            s["metainfo"],
            if with_torrent { "file" } else { "wire" },
            "{name}"
        );
        assert_eq!(
            (
                n(&s["pieces_verified"]),
                n(&s["pieces_failed"]),
                n(&s["pieces_cached"])
            ),
            (pieces, 0, pieces),
            "{name}"
        );
        assert_eq!(
            n(&r["cache"]["stored_bytes"]),
            t["file_size"].as_u64().unwrap()
        );
        let file = rebuild(cache.path(), ih, pieces as u32);
        assert_eq!(
            hex(&sha2::Sha256::digest(&file)),
            t["sha256"].as_str().unwrap(),
            "{name}: rebuilt file"
        );
    }
}

#[test]
fn public_captures_verify_against_their_torrents() {
    if !have_public() {
        return;
    }
    // _analysis/piece_sha1_verification.txt: pieces whose every byte is in the capture
    // (verified_ok; the others are missing_or_incomplete), so exactly the pieces that can
    // verify; sha1sums_originalfiles.txt: the original files.
    let torrents = repo().join("../shared/pcaps-public/bittorrentreconstituter-torrents");
    for (file, name, verifiable, original_sha1) in [
        ("lookaway", "look away.mp3", 60, None),
        (
            "mippo",
            "mippo-creative_v92.mp3",
            2,
            Some("0718dee87ba65b201787b4ac7cd3f6f16048ec7c"),
        ),
        (
            "test.txt",
            "test.txt",
            1,
            Some("adf071efd9af81e591336adc5c1d2f26d7e482de"),
        ),
        ("codemonkey", "Code Monkey.mp3", 12, None),
        ("codemonkey2", "Code Monkey.mp3", 100, None),
        ("codemonkey_and_testtxt", "Code Monkey.mp3", 32, None),
    ] {
        let cache = tempfile::tempdir().unwrap();
        let r = replay_cli(
            &[
                "--cache-dir",
                cache.path().to_str().unwrap(),
                "--metainfo",
                torrents.to_str().unwrap(),
            ],
            &[&public(&format!("bittorrentreconstituter__{file}.pcap"))],
        );
        let s = r["swarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        let verified = n(&s["pieces_verified"]);
        assert_eq!(verified, verifiable, "{file}: pieces verified");
        assert_eq!(n(&s["pieces_failed"]), 0, "{file}: a piece failed its hash");
        assert_eq!(n(&s["pieces_cached"]), verified);
        if let Some(want) = original_sha1 {
            let f = rebuild(
                cache.path(),
                s["info_hash"].as_str().unwrap(),
                n(&s["pieces"]) as u32,
            );
            assert_eq!(hex(&sha1::Sha1::digest(&f)), want, "{file}");
        }
        let all: u64 = r["swarms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| n(&s["pieces_verified"]))
            .sum();
        let store = PieceStore::open(cache.path(), u64::MAX).unwrap();
        let v = store.verify_all();
        assert_eq!((v.removed, v.ok), (0, all), "{file}");
    }
}

fn synth_pcap(dir: &Path, a: SynthArgs) -> (PathBuf, synth::Truth, synth::Torrent) {
    let out = dir.join("s.pcap");
    let torrent = dir.join("torrents");
    std::fs::create_dir_all(&torrent).unwrap();
    let a = SynthArgs {
        output: out.clone(),
        torrent_out: Some(torrent.join("s.torrent")),
        ..a
    };
    let t = synth::run(&a).unwrap();
    (out, t, synth::torrent_for(&a).unwrap())
}

#[test]
fn hostile_peer_is_caught_and_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    // Two leechers of one torrent; the second one's seeder lies in every block.
    let (pcap, truth, torrent) = synth_pcap(
        dir.path(),
        SynthArgs {
            flows: 2,
            hostile: 1,
            size: synth::ByteSize(512 * 1024),
            seed: 11,
            ..Default::default()
        },
    );
    let cache = dir.path().join("cache");
    let r = replay_cli(
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "--metainfo",
            dir.path().join("torrents").to_str().unwrap(),
        ],
        &[&pcap],
    );
    let s = sw(&r, &truth.info_hash);
    // Every piece verifies from the honest seeder's copies...
    assert_eq!(n(&s["pieces_verified"]), torrent.num_pieces as u64);
    // ...the liar's fail (it starts half-way through the torrent, so some of its pieces
    // complete before the honest copies arrive), and only the liar is blamed.
    let liar = truth.streams[1].server.clone();
    assert!(n(&s["pieces_failed"]) > 0);
    let blamed: Vec<&String> = s["failed_by_peer"].as_object().unwrap().keys().collect();
    assert_eq!(blamed, vec![&liar]);
    // The cache holds exactly the original content.
    let ih: InfoHash = truth.info_hash.parse().unwrap();
    let store = PieceStore::open(&cache, u64::MAX).unwrap();
    for i in 0..torrent.num_pieces {
        let want = synth::content_byte_range(
            11,
            0,
            i as u64 * torrent.piece_length as u64,
            torrent.piece_len(i) as usize,
        );
        assert_eq!(
            store
                .get(&PieceKey {
                    info_hash: ih,
                    index: i
                })
                .unwrap(),
            Some(want),
            "piece {i}"
        );
    }
}

/// Past the capacity the oldest pieces go: under LRU, and under GDSF (the default), whose
/// equal use counts (each piece asked for once) leave the age to decide.
#[test]
fn capacity_evicts_the_oldest_of_equally_used_pieces() {
    for policy in ["lru", "gdsf"] {
        let dir = tempfile::tempdir().unwrap();
        // One leecher fetching pieces 0, 1, 2, ... in order: they verify in that order.
        let (pcap, truth, torrent) = synth_pcap(
            dir.path(),
            SynthArgs {
                size: synth::ByteSize(16 * 65536),
                seed: 4,
                ..Default::default()
            },
        );
        let cache = dir.path().join("cache");
        let keep = 4u64;
        let r = replay_cli(
            &[
                "--cache-dir",
                cache.to_str().unwrap(),
                "--cache-capacity",
                &(keep * 65536).to_string(),
                "--cache-policy",
                policy,
                "--metainfo",
                dir.path().join("torrents").to_str().unwrap(),
            ],
            &[&pcap],
        );
        assert_eq!(n(&sw(&r, &truth.info_hash)["pieces_verified"]), 16);
        assert_eq!(n(&r["cache"]["stored_bytes"]), keep * 65536, "{policy}");
        assert_eq!(
            n(&r["cache"]["evicted_bytes"]),
            (16 - keep) * 65536,
            "{policy}"
        );
        let store = PieceStore::open(&cache, u64::MAX).unwrap();
        let ih: InfoHash = truth.info_hash.parse().unwrap();
        let mut held = store.pieces(&ih);
        held.sort();
        assert_eq!(
            held,
            (torrent.num_pieces - keep as u32..torrent.num_pieces).collect::<Vec<_>>(),
            "{policy}"
        );
    }
}

#[test]
fn second_download_from_the_cache_is_all_hits() {
    let cache = tempfile::tempdir().unwrap();
    let tdir = torrent_dir(&repo().join("pcaps/lab-tcp-plain.torrent"));
    let args = [
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--metainfo",
        tdir.path().to_str().unwrap(),
        "--subscriber-net",
        "198.18.0.0/24",
    ];
    let pcap = repo().join("pcaps/lab-tcp-plain.pcap");
    let first = replay_cli(&args, &[&pcap]);
    let c = |r: &Value, k: &str| n(&r["cache"][k]);
    assert_eq!(
        (
            c(&first, "hits"),
            c(&first, "misses"),
            c(&first, "miss_bytes")
        ),
        (0, 64, 1 << 20)
    );
    // The same subscriber traffic again, against the filled cache: every REQUEST is a hit.
    let second = replay_cli(&args, &[&pcap]);
    assert_eq!(
        (
            c(&second, "hits"),
            c(&second, "hit_bytes"),
            c(&second, "misses")
        ),
        (64, 1 << 20, 0)
    );
    assert_eq!(second["cache"]["hit_ratio"], 1.0);
    // Without --subscriber-net nothing is a subscriber's request.
    let third = replay_cli(&args[..4], &[&pcap]);
    assert_eq!((c(&third, "hits"), c(&third, "misses")), (0, 0));
}

#[test]
fn kill_9_during_cache_writes_leaves_only_verifiable_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, truth, _) = synth_pcap(
        dir.path(),
        SynthArgs {
            size: synth::ByteSize(48 << 20),
            piece_length: 65536,
            seed: 21,
            ..Default::default()
        },
    );
    let ih: InfoHash = truth.info_hash.parse().unwrap();
    let cache = dir.path().join("cache");
    let pieces_dir = cache.join("v1").join(&truth.info_hash).join("pieces");
    // Kill at three different moments; each run continues the same cache.
    for kill_after in [5usize, 60, 200] {
        let mut child = Command::new(bin())
            .args(["replay", "--no-progress", "--cache-dir"])
            .arg(&cache)
            .arg("--metainfo")
            .arg(dir.path().join("torrents"))
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        loop {
            let n = std::fs::read_dir(&pieces_dir).map_or(0, |d| d.count());
            if n >= kill_after || start.elapsed().as_secs() > 60 {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "replay finished before the kill at {kill_after}"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = PieceStore::open(&cache, u64::MAX).expect("a killed cache reopens");
        let listed = store.pieces(&ih);
        // The loop saw that many files renamed into pieces/, and a file is renamed there
        // only after its group is durable, so at least those are listed.
        assert!(
            listed.len() >= kill_after,
            "after kill at {kill_after}: {} listed",
            listed.len()
        );
        let v = store.verify_all();
        assert_eq!(
            (v.removed, v.errors, v.ok),
            (0, 0, listed.len() as u64),
            "after kill at {kill_after}"
        );
    }
}

/// Hashing beside parsing must not change a single figure: verdicts take effect where the
/// packet stream says, never when a thread happens to finish. Each capture is replayed with
/// hashing on the engine thread, on one and two hash threads, and with a one-byte
/// look-ahead (every verdict forced as soon as the next piece completes), into fresh
/// caches, with subscriber REQUESTs counted as would-be hits.
#[test]
fn hash_threads_change_no_result() {
    let dir = tempfile::tempdir().unwrap();
    // Four leechers of one torrent at once, one seeder lying: contested blocks, failures
    // and REQUESTs for pieces that have just completed.
    let (synth, _, _) = synth_pcap(
        dir.path(),
        SynthArgs {
            flows: 4,
            hostile: 1,
            size: synth::ByteSize(2 << 20),
            seed: 5,
            ..Default::default()
        },
    );
    let torrents = dir.path().join("torrents");
    for f in [
        "lab-tcp-plain.torrent",
        "lab-tcp-aria2.torrent",
        "lab-utp-plain.torrent",
    ] {
        std::fs::copy(repo().join("pcaps").join(f), torrents.join(f)).unwrap();
    }
    let captures = [
        synth,
        repo().join("pcaps/lab-tcp-plain.pcap"),
        repo().join("pcaps/lab-tcp-aria2.pcap"),
        repo().join("pcaps/lab-utp-plain.pcap"),
        repo().join("pcaps/lab-tcp-magnet.pcap"),
    ];
    let runs = [
        ("0", "16777216"),
        ("1", "16777216"),
        ("2", "16777216"),
        ("1", "1"),
    ];
    for pcap in &captures {
        let mut seen: Option<Value> = None;
        for (k, (threads, ahead)) in runs.iter().enumerate() {
            let cfg = dir.path().join(format!("c{k}.yaml"));
            std::fs::write(
                &cfg,
                format!("swarms:\n  verify_threads: {threads}\n  verify_ahead_bytes: {ahead}\n"),
            )
            .unwrap();
            let cache = dir.path().join(format!("cache-{k}"));
            let _ = std::fs::remove_dir_all(&cache);
            let mut r = replay_cli(
                &[
                    "--config",
                    cfg.to_str().unwrap(),
                    "--cache-dir",
                    cache.to_str().unwrap(),
                    "--metainfo",
                    torrents.to_str().unwrap(),
                    "--subscriber-net",
                    "198.18.0.0/16",
                ],
                &[pcap],
            );
            r.as_object_mut().unwrap().remove("duration_secs");
            assert!(n(&r["cache"]["stored_bytes"]) > 0, "{}", pcap.display());
            match &seen {
                None => seen = Some(r),
                Some(first) => assert_eq!(
                    &r,
                    first,
                    "{}: verify_threads {threads}, verify_ahead_bytes {ahead}",
                    pcap.display()
                ),
            }
        }
    }
}

/// A cache on a full disk: every failed write is counted and logged with its path and the
/// OS reason (one line, then rate-limited), replay exits 1 naming the loss, and what fitted
/// stays; with room again, the same replay stores the rest and exits 0. Needs root (a
/// small tmpfs); CI runs the tests as root.
#[test]
fn full_disk_is_loud_and_storing_resumes_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let tmpfs = Tmpfs::mount(&mnt, "size=600k");
    let meta = meta_dir(dir.path(), &plain_torrent());
    let cache = mnt.join("cache");
    let pcap = repo().join("pcaps/lab-tcp-plain.pcap");
    let run = || {
        let out = Command::new(bin())
            .args(["replay", "--json", "--metainfo"])
            .arg(&meta)
            .arg("--cache-dir")
            .arg(&cache)
            .arg(&pcap)
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            r,
        )
    };
    let ih = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
    // 16 pieces of 64 KiB into 600 KiB: some fit, the rest cannot.
    let (code, err, r) = run();
    let s = sw(&r, ih);
    let (verified, cached) = (
        s["pieces_verified"].as_u64().unwrap(),
        s["pieces_cached"].as_u64().unwrap(),
    );
    let errors = r["cache"]["store"]["write_errors"].as_u64().unwrap();
    assert_eq!(verified, 16);
    assert!(
        cached > 0 && cached < 16,
        "cached {cached} of 16 on a 600 KiB disk"
    );
    assert!(
        errors >= 16 - cached,
        "{errors} write errors for {} pieces lost",
        16 - cached
    );
    assert_eq!(code, Some(1), "{err}");
    let failed: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cache write failed"))
        .collect();
    assert!(!failed.is_empty(), "{err}");
    for l in &failed {
        assert!(l.contains(&*cache.to_string_lossy()), "names the path: {l}");
        assert_eq!(
            l.matches("No space left on device").count(),
            1,
            "one reason: {l}"
        );
    }
    assert!(
        err.contains(&format!("{errors} cache write errors")),
        "{err}"
    );
    // The disk stays full (a filler takes what is left): every write of the run fails, so
    // at its end the service's /healthz says the cache cannot be written.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let (mut child, addr, seen) = lingering_replay(&meta, &cache, &pcap);
    let (status, body) = common::http_request(addr, "GET", "/healthz", "", b"");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 503, "{body}\n{seen}");
    assert!(body.contains("cache writes failing"), "{body}");
    assert!(seen.contains("cache write failed"), "{seen}");
    std::fs::remove_file(&filler).unwrap();
    // Room again: the same capture stores the rest, nothing cached before is lost.
    tmpfs.remount("size=4m");
    let (code, err, r) = run();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(sw(&r, ih)["pieces_cached"], 16);
    assert_eq!(r["cache"]["store"]["write_errors"], 0);
    assert!(!err.contains("cache write failed"), "{err}");
}

/// `peercache replay --http-linger` of `pcap` into `cache`, once its replay is done: the
/// process (still holding the cache), its service's address, and what it logged so far.
fn lingering_replay(
    meta: &Path,
    cache: &Path,
    pcap: &Path,
) -> (std::process::Child, std::net::SocketAddr, String) {
    let mut child = Command::new(bin())
        .args([
            "replay",
            "--no-progress",
            "--http",
            "127.0.0.1:0",
            "--http-linger",
        ])
        .arg("--metainfo")
        .arg(meta)
        .arg("--cache-dir")
        .arg(cache)
        .arg(pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut addr = None;
    let mut seen = String::new();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in std::io::BufRead::lines(stderr) {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(a) = line.split("http://").nth(1) {
            addr = a
                .trim_end_matches('/')
                .split('/')
                .next()
                .map(str::to_string);
        }
        if line.contains("replay done") {
            break;
        }
    }
    let addr = addr.expect(&seen).parse().unwrap();
    (child, addr, seen)
}

/// One process per cache directory: while a replay holds the cache, a second replay and
/// the `cache` commands refuse with one line naming the holder's pid, and change nothing;
/// once it is gone (killed: the lock goes with the process), they work.
#[test]
fn a_cache_in_use_is_refused_naming_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_dir(dir.path(), &plain_torrent());
    let cache = dir.path().join("cache");
    let pcap = repo().join("pcaps/lab-tcp-plain.pcap");
    let ih = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
    let (mut holder, _, _) = lingering_replay(&meta, &cache, &pcap);
    let want = format!(
        "cache directory {} is in use by peercache pid {} (one process per cache: stop it first)",
        cache.display(),
        holder.id()
    );
    let refused = |args: &[&str]| {
        let out = Command::new(bin()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(one_error(&out.stderr).ends_with(&want), "{args:?}: {err}");
    };
    let c = cache.to_str().unwrap();
    let m = meta.to_str().unwrap();
    let p = pcap.to_str().unwrap();
    refused(&["replay", "--cache-dir", c, "--metainfo", m, p]);
    refused(&["cache", "evict", "--cache-dir", c, ih]);
    refused(&["cache", "ls", "--cache-dir", c]);
    let _ = holder.kill();
    let _ = holder.wait();
    // Nothing was removed while it was held; now the cache is free.
    let ls = peercache_json(["cache", "ls", "--json", "--cache-dir", c]);
    assert_eq!(ls[0]["info_hash"], ih, "{ls}");
    assert_eq!(ls[0]["pieces_cached"], 16, "{ls}");
}

/// `--metainfo` takes one .torrent file as well as a directory of them.
#[test]
fn metainfo_may_be_one_file() {
    let torrent = repo().join("pcaps/lab-tcp-plain.torrent");
    let r = replay_cli(
        &["--metainfo", torrent.to_str().unwrap()],
        &[&repo().join("pcaps/lab-tcp-plain.pcap")],
    );
    let s = sw(&r, "bf31b5eba75965210f1ab47d4312b4c87493bb93");
    assert_eq!(
        (&s["pieces_verified"], &s["metainfo"]),
        (&16.into(), &"file".into())
    );
}

/// What an operator gets wrong with `cache` commands is one line naming the thing: an
/// absent piece or swarm (exit 1), a file given as the cache directory (exit 2).
#[test]
fn cache_commands_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let torrent = repo().join("pcaps/lab-tcp-plain.torrent");
    replay_cli(
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "--metainfo",
            torrent.to_str().unwrap(),
        ],
        &[&repo().join("pcaps/lab-tcp-plain.pcap")],
    );
    let ih = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
    let c = cache.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("cache")
            .args(args)
            .output()
            .unwrap();
        // Success says nothing on stderr; a failure, one ERROR line.
        let said = match out.stderr.is_empty() {
            true => String::new(),
            false => one_error(&out.stderr),
        };
        (out.status.code(), said, out.stdout.len())
    };
    assert_eq!(
        run(&["get", "--cache-dir", c, ih, "16"]),
        (Some(1), format!("piece 16 of {ih} is not in the cache"), 0)
    );
    let other = "00".repeat(20);
    assert_eq!(
        run(&["evict", "--cache-dir", c, &other]),
        (Some(1), format!("swarm {other} is not in the cache"), 0)
    );
    let file = torrent.to_str().unwrap();
    assert_eq!(
        run(&["ls", "--cache-dir", file]),
        (
            Some(2),
            format!("{file} is not a directory (a cache is one)"),
            0
        )
    );
    // And what is there is still there.
    assert_eq!(run(&["get", "--cache-dir", c, ih, "15"]).0, Some(0));
}

/// One configuration file drives every command (issue 15): replay with `--report`, the
/// `cache` commands, `config check` and `rules check` all take `--config`; sizes in it take
/// units like the command line's.
#[test]
fn one_config_file_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let meta = meta_dir(dir.path(), &plain_torrent());
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "default: serve\n").unwrap();
    let cfg = dir.path().join("peercache.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cache:\n  dir: {}\n  capacity_bytes: 1.5GiB\nmetainfo_dir: {}\nrules: {}\n",
            cache.display(),
            meta.display(),
            rules.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let run = |args: &[&str]| Command::new(bin()).args(args).output().unwrap();
    // replay: the summary on stdout, the JSON report in the file.
    let report = dir.path().join("report.json");
    let out = run(&[
        "replay",
        "--no-progress",
        "--config",
        c,
        "--report",
        report.to_str().unwrap(),
        repo().join("pcaps/lab-tcp-plain.pcap").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified 16/16"));
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let ih = "bf31b5eba75965210f1ab47d4312b4c87493bb93";
    assert_eq!(sw(&r, ih)["pieces_verified"], 16);
    // cache: the directory from the config.
    let ls = peercache_json(["cache", "ls", "--json", "--config", c]);
    assert_eq!(
        (&ls[0]["info_hash"], &ls[0]["pieces_cached"]),
        (&ih.into(), &16.into())
    );
    let got = run(&["cache", "get", "--config", c, ih, "3"]);
    assert!(got.status.success());
    let piece_len = n(&sw(&r, ih)["piece_length"]) as usize;
    assert_eq!(got.stdout.len(), piece_len);
    // --cache-dir wins over the config's.
    let other = run(&[
        "cache",
        "ls",
        "--config",
        c,
        "--cache-dir",
        dir.path().join("none").to_str().unwrap(),
    ]);
    assert_eq!(other.status.code(), Some(2));
    // Neither: one line saying what to give.
    let none = run(&["cache", "ls"]);
    assert_eq!(
        one_error(&none.stderr),
        "no cache directory: give --cache-dir DIR, or --config FILE with cache.dir"
    );
    // The checks.
    let printed = run(&["config", "check", "--print", "--config", c]);
    assert!(printed.status.success());
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains(&format!("  capacity_bytes: {}\n", 3u64 << 29)),
        "1.5GiB: {printed}"
    );
    assert!(run(&["rules", "check", "--config", c]).status.success());
    let bare = dir.path().join("bare.yaml");
    std::fs::write(&bare, "flows:\n  max_flows: 10\n").unwrap();
    let out = run(&["rules", "check", "--config", bare.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_error(&out.stderr),
        format!("{}: names no rules file (rules: null)", bare.display())
    );
}

/// The other two silent failures issue 15 found: a cache on a read-only mount, and one in a
/// directory the user may not write (root's, run as `nobody`). Each is refused at start,
/// exit 2, with one ERROR line naming the directory and the OS reason; nothing is half
/// done. Needs root (a tmpfs, and `setpriv` to become nobody).
#[test]
fn unwritable_caches_are_refused_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    // A copy of the binary nobody may run; the directory becomes readable to all.
    let peercache = peercache_for_nobody(dir.path());
    let meta = meta_dir(dir.path(), &plain_torrent());
    let pcap = repo().join("pcaps/lab-tcp-plain.pcap");
    let replay = |cache: &Path, as_nobody: bool| {
        let out = command_as(&peercache, as_nobody)
            .args(["replay", "--no-progress", "--metainfo"])
            .arg(&meta)
            .arg("--cache-dir")
            .arg(cache)
            .arg(&pcap)
            .output()
            .unwrap();
        (out.status.code(), one_error(&out.stderr))
    };
    // Read-only: a cache filled first, then its file system remounted read-only.
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let tmpfs = Tmpfs::mount(&mnt, "size=4m");
    let cache = mnt.join("cache");
    replay_cli(
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "--metainfo",
            meta.to_str().unwrap(),
        ],
        &[&pcap],
    );
    tmpfs.remount("ro");
    let lock = cache.join("lock");
    assert_eq!(
        replay(&cache, false),
        (
            Some(2),
            format!(
                "opening cache {}: opening {}: Read-only file system (os error 30)",
                cache.display(),
                lock.display()
            )
        )
    );
    // Root's directory, run as nobody.
    let theirs = dir.path().join("roots");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, msg) = replay(&theirs.join("cache"), true);
    assert_eq!(code, Some(2), "{msg}");
    assert!(
        msg.starts_with(&format!("opening cache {}", theirs.join("cache").display()))
            && msg.ends_with("Permission denied (os error 13)"),
        "{msg}"
    );
}
