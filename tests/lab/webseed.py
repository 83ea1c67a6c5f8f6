#!/usr/bin/python3
"""peercache test lab: BEP 19 web seeds (url-list), checked with stock clients.

Run with Debian's /usr/bin/python3 (python3-libtorrent 2.0). Stdlib + libtorrent only.
Every subcommand prints one JSON object on stdout, diagnostics on stderr, and exits
non-zero on failure.

  make  --out DIR --kind single|multi --url-list URL [--seed N] [--size BYTES]
        deterministic content (derived from N) in DIR/data/<name> and a v1-only
        torrent DIR/<kind>.torrent with no announce and url-list = URL (one string).
        single: one file of 1.3 MiB + 777 bytes (or --size), 64 KiB pieces.
        multi: a directory of 4 files (odd sizes: a big one, a name with a space and
        "é", a nested tiny one < 1 KiB, a 1-byte one), 32 KiB pieces, BEP 47 pad files
        (attr "p", path ".pad/N") after every file but the last, so each file starts
        on a piece boundary. The pad files' zero bytes are also written, apart from
        the data, to DIR/pad/<name>/.pad/N: aria2 (1.36) ignores BEP 47 and requests
        them from the web seed like real files (and stalls on a 404), so a static
        web seed must serve them (e.g. an nginx location for /<name>/.pad/ rooted
        at DIR/pad).
  lt-get --torrent T --save DIR [--timeout S]
        libtorrent downloads from the web seed alone (listening on 127.0.0.1 only; no
        trackers, DHT, LSD, UPnP, NAT-PMP), then force_recheck re-hashes the files it
        wrote; every piece must pass.
  aria2-get --torrent T --save DIR [--timeout S] [--retry-wait S]
        aria2c downloads from the web seed alone (no DHT, LPD, PEX; bound to
        127.0.0.1), then a second aria2c run checks the data only (--hash-check-only).
        A URI that failed (404, 503 without --retry-wait, bad range) is dropped and
        aria2 idles until --timeout (--stop): a failure takes the whole timeout.
  compare --data DIR_A --save DIR_B --name NAME
        byte-compares every file of DIR_A/NAME (pad files excepted) with DIR_B/NAME;
        files only in DIR_B (e.g. the .pad/N files aria2 writes) are listed as "extra".

BEP 19 URL forms (what the clients request): single-file torrent, url-list ending
in "/": URL + name; otherwise URL itself. Multi-file: URL + name + "/" + path
(with a "/" inserted after URL when it has none), path segments percent-encoded.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

try:
    import libtorrent as lt
except ImportError:  # compare needs no libtorrent
    lt = None

KIB = 1024
MIB = 1024 * 1024

SINGLE_NAME = "single.bin"
SINGLE_SIZE = MIB + 3 * MIB // 10 + 777  # 1.3 MiB + 777 bytes
SINGLE_PIECE = 64 * KIB

MULTI_NAME = "multi"
MULTI_PIECE = 32 * KIB
# (relative path, size): odd sizes, a name with a space and a non-ASCII char, a nested
# directory, a tiny file (< 1 KiB) and a 1-byte one.
MULTI_FILES = [
    ("alpha.bin", 300 * KIB + 333),
    ("caf\u00e9 notes.txt", 70001),
    ("sub/deep/tiny.txt", 517),
    ("sub/one.bin", 1),
]


def log(msg):
    print("webseed: " + msg, file=sys.stderr, flush=True)


def emit(d):
    print(json.dumps(d, sort_keys=True), flush=True)


def fail(msg, d=None):
    log("FAILED: " + msg)
    out = {"ok": False, "error": msg}
    if d:
        out.update(d)
    emit(out)
    sys.exit(1)


def need_lt():
    if lt is None:
        fail("python3-libtorrent is not importable (use /usr/bin/python3)")


# ---------------------------------------------------------------- bencoding


def bencode(x):
    """A small bencoder (dict keys sorted as raw bytes, as BEP 3 wants)."""
    if isinstance(x, bool):
        raise TypeError("bool is not bencodable")
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode("utf-8")
    if isinstance(x, (bytes, bytearray)):
        return b"%d:%s" % (len(x), bytes(x))
    if isinstance(x, (list, tuple)):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        items = sorted(((k.encode() if isinstance(k, str) else k), v) for k, v in x.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError("cannot bencode %r" % type(x))


# ---------------------------------------------------------------- make


def content(seed, rel, size):
    """Deterministic bytes for file `rel` of a torrent made with `seed`."""
    h = hashlib.sha256(("%d/%s" % (seed, rel)).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big")).randbytes(size)


def cmd_make(args):
    need_lt()
    out = os.path.abspath(args.out)
    data_dir = os.path.join(out, "data")
    if args.kind == "single":
        name, piece, files = SINGLE_NAME, SINGLE_PIECE, [(None, args.size or SINGLE_SIZE)]
    else:
        name, piece, files = MULTI_NAME, MULTI_PIECE, MULTI_FILES
    root = os.path.join(data_dir, name)
    if os.path.isdir(root):
        shutil.rmtree(root)
    elif os.path.exists(root):
        os.remove(root)
    os.makedirs(data_dir, exist_ok=True)
    for rel, size in files:
        path = root if rel is None else os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content(args.seed, rel or name, size))

    fs = lt.file_storage()
    lt.add_files(fs, root)
    # v1 only; canonical_files puts files in canonical (sorted) order and inserts BEP 47
    # pad files so every file starts on a piece boundary (libtorrent 2.0 does that for
    # v1-only torrents only with this flag); no pad file after the last file.
    flags = lt.create_torrent.v1_only
    if args.kind == "multi":
        flags |= lt.create_torrent.canonical_files_no_tail_padding
    ct = lt.create_torrent(fs, piece, flags)
    lt.set_piece_hashes(ct, data_dir)
    gen = ct.generate()
    info = gen[b"info"]
    # The outer dict is rebuilt: no announce, no creation date/creator (the .torrent
    # stays byte-identical across runs), url-list as one string.
    torrent = {b"info": info, b"url-list": args.url_list.encode("utf-8")}
    if b"announce" in gen or b"announce-list" in gen:
        log("note: dropped announce from libtorrent's output")
    raw = bencode(torrent)
    tpath = os.path.join(out, args.kind + ".torrent")
    with open(tpath, "wb") as f:
        f.write(raw)

    ti = lt.torrent_info(tpath)
    if args.kind == "multi":
        pads = [e for e in info[b"files"] if e.get(b"attr") == b"p"]
        if not pads:
            fail("libtorrent put no pad files into the multi-file torrent")
        # every real file starts on a piece boundary
        offs = 0
        for e in info[b"files"]:
            if e.get(b"attr") != b"p" and offs % piece:
                fail("file %r starts at %d, not on a piece boundary" % (e[b"path"], offs))
            offs += e[b"length"]
    tfs = ti.files()
    flist = []
    # aria2 1.36 does not know BEP 47: it fetches pad files from the web seed like any
    # other file (URL + name + "/.pad/N") and stalls when that fails. A web seed for
    # aria2 must therefore answer those with N zero bytes. For a static server (nginx)
    # they are written here, apart from the data: DIR/pad/<name>/.pad/N.
    pad_root = os.path.join(out, "pad")
    if os.path.isdir(pad_root):
        shutil.rmtree(pad_root)
    for i in range(tfs.num_files()):
        p = tfs.file_path(i).replace(os.sep, "/")
        # file_path includes the torrent name for multi-file torrents
        if args.kind == "multi":
            p = p[len(name) + 1:]
        pad = bool(tfs.file_flags(i) & lt.file_storage.flag_pad_file)
        flist.append({"path": p, "length": tfs.file_size(i), "pad": pad})
        if pad:
            pp = os.path.join(pad_root, name, *p.split("/"))
            os.makedirs(os.path.dirname(pp), exist_ok=True)
            with open(pp, "wb") as f:
                f.write(bytes(tfs.file_size(i)))
    emit({
        "torrent": tpath,
        "data_dir": data_dir,
        "name": ti.name(),
        "info_hash": str(ti.info_hashes().v1),
        "piece_length": ti.piece_length(),
        "pieces": ti.num_pieces(),
        "total_length": ti.total_size(),
        "url_list": args.url_list,
        "pad_dir": pad_root if any(f["pad"] for f in flist) else None,
        "files": flist,
    })


# ---------------------------------------------------------------- lt-get


def lt_session():
    return lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "outgoing_interfaces": "",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "dht_bootstrap_nodes": "",
        "alert_mask": lt.alert_category.error
        | lt.alert_category.status
        | lt.alert_category.peer
        | lt.alert_category.connect
        | lt.alert_category.storage,
        "alert_queue_size": 100000,
        "user_agent": "peercache-lab/libtorrent-" + lt.__version__,
    })


class Alerts:
    def __init__(self, ses):
        self.ses = ses
        self.web_seed_errors = []  # url_seed_alert: (url, message), in order, deduplicated
        self.errors = []
        self.hash_failed = 0
        self.checked = 0
        self.finished = 0

    def pump(self, wait_ms=200):
        self.ses.wait_for_alert(wait_ms)
        for a in self.ses.pop_alerts():
            if isinstance(a, lt.url_seed_alert):
                e = "%s: %s" % (a.server_url(), a.error_message() or a.message())
                log("web seed: " + e)
                if e not in self.web_seed_errors:
                    self.web_seed_errors.append(e)
            elif isinstance(a, lt.hash_failed_alert):
                self.hash_failed += 1
                log(a.message())
            elif isinstance(a, lt.torrent_checked_alert):
                self.checked += 1
            elif isinstance(a, lt.torrent_finished_alert):
                self.finished += 1
            elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert,
                                lt.peer_error_alert, lt.peer_disconnected_alert)):
                m = a.message()
                log(m)
                if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                    self.errors.append(m)


def lt_status(h):
    st = h.status()
    return {
        "state": str(st.state),
        "progress": round(st.progress, 4),
        "num_pieces": st.num_pieces,
        "total_payload_download": st.total_payload_download,
        "error": st.errc.message() if st.errc.value() else "",
        "web_seeds": sorted(h.url_seeds()),
    }


def cmd_lt_get(args):
    need_lt()
    ti = lt.torrent_info(args.torrent)
    save = os.path.abspath(args.save)
    os.makedirs(save, exist_ok=True)
    ses = lt_session()
    al = Alerts(ses)
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = save
    p.trackers = []
    t0 = time.monotonic()
    h = ses.add_torrent(p)
    end = t0 + args.timeout
    done = False
    last = 0.0
    while time.monotonic() < end:
        al.pump()
        st = h.status()
        if st.is_seeding and st.num_pieces == ti.num_pieces():
            done = True
            break
        if time.monotonic() - last > 5:
            last = time.monotonic()
            log("status: %s" % json.dumps(lt_status(h)))
    seconds = round(time.monotonic() - t0, 3)
    if not done:
        fail("libtorrent did not complete in %.0fs" % args.timeout, {
            "complete": False, "seconds": seconds, "status": lt_status(h),
            "web_seed_errors": al.web_seed_errors, "errors": al.errors,
        })
    payload = h.status().total_payload_download
    log("complete in %.2fs; rechecking" % seconds)
    # No redownload during the recheck: without its web seed a failed piece stays missing.
    for u in h.url_seeds():
        h.remove_url_seed(u)
    checked_before = al.checked
    h.force_recheck()
    rend = time.monotonic() + max(30.0, args.timeout)
    while time.monotonic() < rend and al.checked == checked_before:
        al.pump()
    st = h.status()
    recheck_ok = al.checked > checked_before and st.num_pieces == ti.num_pieces() \
        and all(st.pieces)
    log("recheck: %d/%d pieces pass" % (st.num_pieces, ti.num_pieces()))
    out = {
        "complete": True,
        "seconds": seconds,
        "pieces": ti.num_pieces(),
        "recheck_ok": recheck_ok,
        "hash_failures": al.hash_failed,
        "payload_bytes": payload,
        "web_seed_errors": al.web_seed_errors,
    }
    ses.remove_torrent(h)
    emit(out)
    if not recheck_ok:
        log("FAILED: libtorrent's recheck of the downloaded files failed")
        sys.exit(1)


# ---------------------------------------------------------------- aria2-get


def aria2_base(torrent, save):
    return [
        "aria2c",
        "--torrent-file=" + torrent,
        "--dir=" + save,
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        # every socket (BitTorrent listen, HTTP to the web seed) bound to loopback
        "--interface=127.0.0.1",
        "--listen-port=6881-6999",
        "--seed-time=0",
        "--check-integrity=true",
        "--bt-save-metadata=false",
        "--bt-load-saved-metadata=false",
        "--bt-remove-unselected-file=false",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--file-allocation=none",
        "--auto-save-interval=0",
        "--save-session-interval=0",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--download-result=full",
        "--no-conf=true",
        "--rpc-save-upload-metadata=false",
        "--user-agent=peercache-lab/aria2",
    ]


def run_bounded(cmd, timeout):
    log("run: " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, _ = proc.communicate()
        timed_out = True
    for line in out.splitlines():
        if line.strip():
            log("aria2c| " + line)
    return proc.returncode, out, timed_out


def aria2_result_ok(out):
    """Rows of --download-result=full: 'gid|stat|avg speed|%|path' (a multi-file
    torrent adds one row per file, pad files included, with gid and stat blank). True
    when every download says OK and every file 100 %."""
    rows = [[c.strip() for c in l.split("|")] for l in out.splitlines()
            if l.count("|") >= 4 and not l.startswith("gid")]
    heads = [r for r in rows if r[0]]
    stats = ["%s %s%% %s" % (r[1] or "-", r[3], r[4]) for r in rows]
    ok = bool(heads) and all(r[1] == "OK" for r in heads) and all(r[3] == "100" for r in rows)
    return ok, stats


def cmd_aria2_get(args):
    save = os.path.abspath(args.save)
    os.makedirs(save, exist_ok=True)
    torrent = os.path.abspath(args.torrent)
    t0 = time.monotonic()
    extra = ["--stop=%d" % max(1, int(args.timeout))]
    if args.retry_wait:
        # aria2 retries an HTTP 503 only with --retry-wait > 0 (it ignores Retry-After),
        # up to --max-tries (5) times on that URI, then gives up on it.
        extra.append("--retry-wait=%d" % args.retry_wait)
    rc, out, timed_out = run_bounded(aria2_base(torrent, save) + extra, args.timeout + 10)
    seconds = round(time.monotonic() - t0, 3)
    ok, stats = aria2_result_ok(out)
    if timed_out or rc != 0 or not ok:
        fail("aria2c did not complete (exit %s, results %s%s)"
             % (rc, stats, ", timed out" if timed_out else ""),
             {"complete": False, "seconds": seconds, "exit": rc})
    # aria2's own check of what is on disk: hash every piece, download nothing.
    # Exit 0, an "OK ... 100" row and "Verification finished successfully" (a notice)
    # when every piece passes; exit 1 and an "ERR" row when one does not.
    rc2, out2, to2 = run_bounded(
        aria2_base(torrent, save) + ["--hash-check-only=true", "--bt-seed-unverified=false",
                                     "--console-log-level=notice"],
        max(60, args.timeout))
    ok2, stats2 = aria2_result_ok(out2)
    check_ok = rc2 == 0 and ok2 and not to2 and "Verification finished successfully" in out2
    if not check_ok:
        fail("aria2c --hash-check-only did not confirm the data (exit %s, results %s)"
             % (rc2, stats2), {"complete": True, "seconds": seconds, "exit": rc,
                               "check_ok": False, "check_exit": rc2})
    emit({"complete": True, "seconds": seconds, "exit": rc, "check_ok": True,
          "check_exit": rc2})


# ---------------------------------------------------------------- compare


def is_pad(rel):
    return ".pad" in rel.split("/")


def walk(root):
    if os.path.isfile(root):
        return [""]
    found = []
    for d, _dirs, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
            found.append(rel)
    return sorted(found)


def same_bytes(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def cmd_compare(args):
    a = os.path.join(os.path.abspath(args.data), args.name)
    b = os.path.join(os.path.abspath(args.save), args.name)
    if not os.path.exists(a):
        fail("no such source: " + a)
    want = [r for r in walk(a) if not is_pad(r)]
    got = walk(b) if os.path.exists(b) else []
    missing, differ = [], []
    for rel in want:
        pa = os.path.join(a, rel) if rel else a
        pb = os.path.join(b, rel) if rel else b
        if not os.path.isfile(pb):
            missing.append(rel or args.name)
        elif not same_bytes(pa, pb):
            differ.append(rel or args.name)
    extra = sorted(set(got) - set(want))
    out = {"identical": not missing and not differ, "files": len(want),
           "missing": missing, "different": differ, "extra": extra}
    emit(out)
    if missing or differ:
        log("FAILED: %d missing, %d different" % (len(missing), len(differ)))
        sys.exit(1)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--kind", choices=["single", "multi"], required=True)
    m.add_argument("--url-list", required=True)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--size", type=int, default=0,
                   help="single only: file size in bytes (default 1.3 MiB + 777)")
    g = sub.add_parser("lt-get")
    g.add_argument("--torrent", required=True)
    g.add_argument("--save", required=True)
    g.add_argument("--timeout", type=float, default=120.0)
    r = sub.add_parser("aria2-get")
    r.add_argument("--torrent", required=True)
    r.add_argument("--save", required=True)
    r.add_argument("--timeout", type=float, default=120.0)
    r.add_argument("--retry-wait", type=int, default=0,
                   help="aria2c --retry-wait: seconds between retries of a 503 (0: none)")
    c = sub.add_parser("compare")
    c.add_argument("--data", required=True)
    c.add_argument("--save", required=True)
    c.add_argument("--name", required=True)
    args = ap.parse_args()
    {"make": cmd_make, "lt-get": cmd_lt_get, "aria2-get": cmd_aria2_get,
     "compare": cmd_compare}[args.cmd](args)


if __name__ == "__main__":
    main()
