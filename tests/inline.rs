//! `peercache inline` end to end (issue 5): tests/lab/inline.sh builds the lab's `bridge`
//! topology (subscribers, the box, upstream: three network namespaces joined by veth pairs,
//! addresses in 198.18.0.0/15, cleaned up on exit), runs `peercache inline` bridging the
//! box's two veths for the whole run, and downloads through it: a torrent from a
//! rate-limited libtorrent seeder (the cache fills), the same torrent again with libtorrent
//! and with aria2, once more while the only seeder is frozen (SIGSTOP) right after the
//! download started, a plain HTTP transfer, and an RC4-encrypted download of another
//! torrent. The script measures (every download's SHA-256, the client's own hash check, the
//! bytes the seeder sent counted by the seeder itself and on the upstream veth); this test
//! judges. Needs root and the lab's packages (deploy/install-deps.sh).
//!
//! Run it alone: `cargo test --release --test inline` (about 1.5 minutes). On failure the
//! results (results.json, box.log, box-report.json, logs/) stay in
//! $TMPDIR/peercache-inline-test-PID, and the script keeps its work dir (captures).
//! `tests/lab/inline.sh` without LAB_BOX_CMD runs the same sequence through the kernel's
//! bridge (the lab's own validation: everything completes, nothing is cached).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// The box command the lab runs in pc-box (`bash -c`), with LAB_BOX_SUB_IF, LAB_BOX_UP_IF,
/// LAB_BOX_METAINFO_DIR, LAB_BOX_WORK and LAB_BOX_REPORT in its environment. It must print
/// a line containing "bridging" once it forwards, and write its JSON report to
/// $LAB_BOX_REPORT when it gets SIGTERM.
fn box_cmd(bin: &str) -> String {
    format!(
        "exec {bin} inline --subscriber-iface \"$LAB_BOX_SUB_IF\" \
         --upstream-iface \"$LAB_BOX_UP_IF\" --cache-dir \"$LAB_BOX_WORK/cache\" \
         --metainfo \"$LAB_BOX_METAINFO_DIR\" --report \"$LAB_BOX_REPORT\""
    )
}

// ======================= the box's report: the one place to adapt =======================
/// What `peercache inline`'s report (JSON, written on SIGTERM) must say after the run:
/// an object "inline" with "served_blocks" and "served_bytes", the blocks and bytes it
/// served from its cache to subscribers. Two downloads came wholly from the cache
/// (libtorrent-again, aria2-again; seeder-freeze too, mostly), so it served at least
/// 95% of two files. Every block of the lab's torrent is 16 KiB (an 8 MiB file in 64 KiB
/// pieces, requested in 16 KiB blocks by libtorrent and aria2), so the bytes are exactly
/// 16 KiB per served block.
fn check_box_report(report: &Value, file_size: u64) {
    let inline = &report["inline"];
    assert!(
        inline.is_object(),
        "report has no \"inline\" object: {report}"
    );
    let blocks = inline["served_blocks"]
        .as_u64()
        .unwrap_or_else(|| panic!("report: inline.served_blocks missing: {inline}"));
    let bytes = inline["served_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("report: inline.served_bytes missing: {inline}"));
    assert!(
        bytes as f64 >= 2.0 * file_size as f64 * 0.95,
        "served_bytes {bytes} < 95% of two files ({file_size} bytes each)"
    );
    assert_eq!(
        blocks * 16384,
        bytes,
        "served_blocks {blocks} and served_bytes {bytes} disagree (16 KiB blocks)"
    );
}
// ==========================================================================================

fn num(v: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number in {}", v["name"]))
}

#[test]
fn inline_box_serves_repeat_downloads_from_its_cache() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the inline lab needs root (network namespaces); run the tests as root"
    );
    let bin = env!("CARGO_BIN_EXE_peercache");
    let help = Command::new(bin)
        .args(["inline", "--help"])
        .output()
        .expect("run peercache");
    assert!(
        help.status.success(),
        "`peercache inline --help` failed: the inline command is missing ({})",
        String::from_utf8_lossy(&help.stderr).trim()
    );

    let out = std::env::temp_dir().join(format!("peercache-inline-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let results = out.join("results.json");
    // Once more if the lab itself failed (exit status non-zero: setup, the tracker or a
    // seeder died, the box never said "bridging"): that says something about the machine or
    // the lab, and the box is judged on a complete run. A step that merely failed is not
    // retried: the script still exits 0 and the checks below judge it.
    let ok = (0..2).any(|attempt| {
        if attempt > 0 {
            eprintln!("tests/lab/inline.sh failed; retrying once");
        }
        Command::new("bash")
            .arg(repo().join("tests/lab/inline.sh"))
            .arg(&results)
            .env("LAB_BOX_CMD", box_cmd(bin))
            .env("LAB_INLINE_EXPECT_CACHE", "1")
            // another lab run (lab_live.rs under a parallel runner) finishes first
            .env("LAB_WAIT_S", "600")
            .status()
            .expect("run tests/lab/inline.sh")
            .success()
    });
    assert!(
        ok,
        "tests/lab/inline.sh failed twice: the lab could not run; see its output above"
    );
    check_results(&results);
    let _ = std::fs::remove_dir_all(&out);
}

/// Judge an existing results file instead (e.g. after adapting the checks):
/// `INLINE_RESULTS=/path/results.json cargo test --release --test inline -- --ignored`
#[test]
#[ignore = "needs INLINE_RESULTS=path to an inline.sh results file"]
fn inline_results_file() {
    let p = std::env::var("INLINE_RESULTS").expect("INLINE_RESULTS=path/results.json");
    check_results(Path::new(&p));
}

fn check_results(path: &Path) {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    let ctx = format!("(results: {})", path.display());
    let size = num(&r, "file_size");
    let pct5 = size / 20;

    assert_eq!(r["box"]["kind"], "command", "{ctx}");
    assert_eq!(
        r["box"]["alive_at_end"], true,
        "the box died during the run {ctx}"
    );
    assert_eq!(
        r["box"]["exit_code"], 0,
        "the box's exit status after SIGTERM {ctx}"
    );

    let steps = r["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "fill",
            "libtorrent-again",
            "aria2-again",
            "seeder-freeze",
            "http",
            "encrypted"
        ],
        "{ctx}"
    );
    let step = |n: &str| steps.iter().find(|s| s["name"] == n).unwrap();

    // every download completes, byte-identical, and passes the client's own check
    for s in steps {
        let n = s["name"].as_str().unwrap();
        assert_eq!(s["completed"], true, "{n} did not complete {ctx}");
        assert_eq!(
            s["sha256"], s["expected_sha256"],
            "{n}: not byte-identical {ctx}"
        );
        assert_eq!(s["sha256_ok"], true, "{n} {ctx}");
        assert_eq!(
            s["upstream"]["capture_drops"], 0,
            "{n}: capture incomplete {ctx}"
        );
        if n != "http" {
            assert_eq!(
                s["client_hash_check_ok"], true,
                "{n}: client hash check {ctx}"
            );
        }
    }

    // fill: everything came from the seeder, through the box (about once: <= 110%)
    let fill = step("fill");
    let fill_seeder = num(fill, "upstream.seeder_payload_upload_bytes");
    assert!(
        fill_seeder >= size && fill_seeder <= size + size / 10,
        "fill: the seeder sent {fill_seeder} payload bytes for {size} {ctx}"
    );
    assert!(
        num(fill, "upstream.tcp_new_payload_bytes") >= size,
        "fill {ctx}"
    );

    // downloads again: under 5% of the file crossed the upstream link, counted by the
    // seeder and on the wire (retransmissions included)
    for n in ["libtorrent-again", "aria2-again"] {
        let s = step(n);
        let seeder = num(s, "upstream.seeder_payload_upload_bytes");
        let wire = num(s, "upstream.tcp_payload_bytes");
        assert!(
            seeder < pct5,
            "{n}: the seeder sent {seeder} payload bytes of {size} {ctx}"
        );
        assert!(
            wire < pct5,
            "{n}: {wire} TCP payload bytes upstream of {size} {ctx}"
        );
    }

    // seeder frozen right after the first data arrived: the rest came from the cache,
    // while the seeder was still stopped
    let f = &step("seeder-freeze")["client_detail"]["freeze"];
    assert_eq!(f["frozen"], true, "{ctx}");
    assert_eq!(f["resumed"], false, "{ctx}");
    assert_eq!(f["completed_while_frozen"], true, "{ctx}");
    let after = num(f, "payload_bytes_after_freeze");
    assert!(
        after >= size / 2,
        "only {after} bytes arrived after the freeze {ctx}"
    );

    // plain HTTP and encrypted BitTorrent pass untouched: all of it came from upstream
    let http = step("http");
    assert!(
        num(http, "upstream.tcp_new_payload_bytes") >= size,
        "http {ctx}"
    );
    let enc = step("encrypted");
    assert!(
        num(enc, "upstream.seeder_payload_upload_bytes") >= size,
        "encrypted {ctx}"
    );
    assert!(
        num(enc, "upstream.tcp_new_payload_bytes") >= size,
        "encrypted {ctx}"
    );

    let report_path = r["box"]["report"]
        .as_str()
        .unwrap_or_else(|| panic!("the box wrote no report at $LAB_BOX_REPORT {ctx}"));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    check_box_report(&report, size);
}
