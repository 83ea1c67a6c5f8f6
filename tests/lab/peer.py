#!/usr/bin/python3
"""peercache test lab: deterministic BitTorrent peers built on libtorrent 2.0.

Run with Debian's /usr/bin/python3 (python3-libtorrent). Subcommands:

  make   --out-dir D --name N --size BYTES --piece-length BYTES --seed S --tracker URL
         writes D/N (content derived from S, reproducible), D/N.torrent (v1),
         prints a JSON line {"info_hash", "magnet", ...}.
  seed   --torrent T --data-dir D --listen IP:PORT [--encryption plain|rc4]
         [--transport tcp|utp]
         seeds until SIGTERM/SIGINT or --max-seconds; writes --ready-file
         after the first successful tracker announce.
  leech  (--torrent T | --magnet URI) --save-dir D --listen IP:PORT
         [--encryption plain|rc4] [--transport tcp|utp] [--outgoing-interfaces IP]
         --expect-sha256 H --truth OUT.json
         downloads (bounded by --timeout), verifies SHA-256, writes truth JSON.
         --outgoing-interfaces IP binds outgoing peer connections to IP
         (libtorrent's outgoing_interfaces; default "": the OS picks the source).
         lab.sh tcp-repeat gives each leecher a second (third, ...) address on the
         subscriber veth as --listen IP:6881 and --outgoing-interfaces IP: its peer
         connections and its tracker announces then all come from IP.
  truth  --torrent T --file F --expect-sha256 H --truth OUT.json --client NAME
         [--blocks-received N --blocks-source TEXT]
         writes a truth JSON for a download made by another client (aria2);
         blocks_received is N if given (for aria2: its debug log's
         "Piece received." lines), else null.

Every client has DHT, LSD, UPnP, NAT-PMP disabled. Peer connections use one
transport only: --transport tcp (default: uTP off) or --transport utp (BEP 29;
outgoing and incoming TCP peer connections off, so peers talk uTP over the UDP
port of --listen). Tracker announces stay HTTP over TCP either way.
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import time
import urllib.parse

import libtorrent as lt

BLOCK = 16 * 1024
CHUNK = 1 << 20


def log(*a):
    print("[peer %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def content_chunks(seed, size):
    """Deterministic content: chunk i (1 MiB) = SHAKE-256(seed || i as u64 BE)."""
    off, i = 0, 0
    seed_b = seed.encode()
    while off < size:
        n = min(CHUNK, size - off)
        yield hashlib.shake_256(seed_b + i.to_bytes(8, "big")).digest(n)
        off += n
        i += 1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def torrent_facts(ti):
    return {
        "info_hash": str(ti.info_hashes().v1).lower(),
        "name": ti.name(),
        "file_size": ti.total_size(),
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        # blocks a complete download needs (16 KiB blocks, last one may be short)
        "num_blocks": sum(
            (ti.piece_size(p) + BLOCK - 1) // BLOCK for p in range(ti.num_pieces())
        ),
    }


def session_for(listen, encryption, transport="tcp", outgoing=""):
    utp = transport == "utp"
    s = {
        "listen_interfaces": listen,
        "outgoing_interfaces": outgoing,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "dht_bootstrap_nodes": "",
        # exactly one peer transport (the HTTP tracker is not affected)
        "enable_outgoing_utp": utp,
        "enable_incoming_utp": utp,
        "enable_outgoing_tcp": not utp,
        "enable_incoming_tcp": not utp,
        "allow_multiple_connections_per_ip": True,
        # trackers and peers all live in 198.18.0.0/15 on port 6969/6881
        "ssrf_mitigation": False,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": lt.alert_category.error
        | lt.alert_category.status
        | lt.alert_category.tracker
        | lt.alert_category.peer
        | lt.alert_category.connect
        | lt.alert_category.stats
        | lt.alert_category.block_progress,
        "user_agent": "peercache-lab/libtorrent-" + lt.__version__,
    }
    if encryption == "rc4":
        s["out_enc_policy"] = int(lt.enc_policy.forced)
        s["in_enc_policy"] = int(lt.enc_policy.forced)
        s["allowed_enc_level"] = int(lt.enc_level.rc4)
        s["prefer_rc4"] = True
    else:
        s["out_enc_policy"] = int(lt.enc_policy.disabled)
        s["in_enc_policy"] = int(lt.enc_policy.disabled)
        s["allowed_enc_level"] = int(lt.enc_level.plaintext)
    return lt.session(s)


STOP = False


def _on_signal(_sig, _frm):
    global STOP
    STOP = True


BLOCKS_FINISHED = 0  # block_finished_alert count, across every drain()


def drain(ses, verbose=True):
    global BLOCKS_FINISHED
    out = []
    for a in ses.pop_alerts():
        out.append(a)
        if isinstance(a, lt.block_finished_alert):
            BLOCKS_FINISHED += 1
        if verbose and not isinstance(a, lt.session_stats_alert):
            log(type(a).__name__ + ":", a.message())
    return out


def cmd_make(args):
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, args.name)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for c in content_chunks(args.seed, args.size):
            f.write(c)
            h.update(c)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    flags = lt.create_torrent.v1_only if args.v1_only else 0
    ct = lt.create_torrent(fs, args.piece_length, flags=flags)
    ct.add_tracker(args.tracker)
    ct.set_creator("peercache-lab")
    ct.set_priv(False)
    lt.set_piece_hashes(ct, args.out_dir)
    entry = ct.generate()
    # drop the creation date so the .torrent is byte-for-byte reproducible
    entry.pop(b"creation date", None)
    data = lt.bencode(entry)
    tpath = path + ".torrent"
    with open(tpath, "wb") as f:
        f.write(data)
    ti = lt.torrent_info(tpath)
    facts = torrent_facts(ti)
    facts["sha256"] = h.hexdigest()
    facts["magnet"] = "magnet:?xt=urn:btih:%s&dn=%s&tr=%s" % (
        facts["info_hash"],
        urllib.parse.quote(args.name, safe=""),
        urllib.parse.quote(args.tracker, safe=""),
    )
    facts["torrent"] = tpath
    facts["data"] = path
    print(json.dumps(facts))


def cmd_seed(args):
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    ses = session_for(args.listen, args.encryption, args.transport)
    ti = lt.torrent_info(args.torrent)
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = args.data_dir
    h = ses.add_torrent(p)
    deadline = time.monotonic() + args.max_seconds
    ready = False
    next_announce = 0.0
    while not STOP and time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for a in drain(ses):
            if isinstance(a, lt.tracker_reply_alert) and not ready:
                st = h.status()
                if not st.is_seeding:
                    log("announced but not seeding?! state", st.state)
                    continue
                ready = True
                if args.ready_file:
                    with open(args.ready_file, "w") as f:
                        f.write("ready\n")
                log("seeding and announced; ready")
            elif isinstance(a, lt.torrent_error_alert):
                log("torrent error, exiting")
                sys.exit(2)
        st = h.status()
        # once checked, force an announce (bounded: every 2 s until ready)
        if not ready and st.is_seeding and time.monotonic() >= next_announce:
            h.force_reannounce()
            next_announce = time.monotonic() + 2.0
    st = h.status()
    log("seeder exiting: uploaded %d bytes (payload %d)" % (st.total_upload, st.total_payload_upload))
    sys.exit(0 if ready else 1)


def collect_stats(ses, names, timeout=5.0):
    idx = {m.name: m.value_index for m in lt.session_stats_metrics()}
    ses.post_session_stats()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ses.wait_for_alert(200)
        for a in drain(ses, verbose=False):
            if isinstance(a, lt.session_stats_alert):
                vals = a.values
                if isinstance(vals, dict):  # python bindings: {name: value}
                    return {n: int(vals[n]) for n in names}
                return {n: int(vals[idx[n]]) for n in names}
    raise RuntimeError("no session_stats_alert")


def cmd_leech(args):
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    os.makedirs(args.save_dir, exist_ok=True)
    ses = session_for(args.listen, args.encryption, args.transport, args.outgoing_interfaces)
    if args.torrent:
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(args.torrent)
    else:
        p = lt.parse_magnet_uri(args.magnet)
    p.save_path = args.save_dir
    h = ses.add_torrent(p)
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    done = False
    while not STOP and time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for a in drain(ses, verbose=args.verbose):
            if isinstance(a, (lt.tracker_reply_alert, lt.tracker_error_alert,
                                lt.metadata_received_alert, lt.peer_connect_alert,
                                lt.peer_disconnected_alert, lt.torrent_finished_alert,
                                lt.torrent_error_alert)) and not args.verbose:
                log(type(a).__name__ + ":", a.message())
            if isinstance(a, lt.torrent_finished_alert):
                done = True
        if done:
            break
    elapsed = time.monotonic() - t0
    if not done:
        st = h.status()
        log("FAILED: not finished after %.1fs (state %s, progress %.3f, peers %d)"
            % (elapsed, st.state, st.progress, st.num_peers))
        sys.exit(1)
    # let in-flight (endgame duplicate) PIECE messages land before counting
    time.sleep(args.settle)
    stats = collect_stats(ses, ["ses.num_incoming_piece", "ses.num_outgoing_request"])
    drain(ses, verbose=False)
    ti = h.torrent_file()
    facts = torrent_facts(ti)
    path = os.path.join(args.save_dir, ti.files().file_path(0))
    got = sha256_file(path)
    if got != args.expect_sha256:
        log("FAILED: sha256 mismatch %s != %s" % (got, args.expect_sha256))
        sys.exit(1)
    st = h.status()
    truth = {
        "info_hash": facts["info_hash"],
        "file_size": facts["file_size"],
        "piece_length": facts["piece_length"],
        "num_pieces": facts["num_pieces"],
        "num_blocks": facts["num_blocks"],
        "blocks_received": stats["ses.num_incoming_piece"],
        "block_finished_alerts": BLOCKS_FINISHED,
        "requests_sent": stats["ses.num_outgoing_request"],
        "payload_bytes_received": st.total_payload_download,
        "sha256": got,
        "client": "libtorrent",
        "client_version": lt.__version__,
        "source": "magnet" if args.magnet else "torrent",
        "encryption": args.encryption,
        "transport": args.transport,
        "download_seconds": round(elapsed, 3),
    }
    with open(args.truth, "w") as f:
        json.dump(truth, f, indent=2, sort_keys=True)
        f.write("\n")
    log("leech OK in %.2fs: %s" % (elapsed, json.dumps(truth)))


def cmd_truth(args):
    ti = lt.torrent_info(args.torrent)
    facts = torrent_facts(ti)
    got = sha256_file(args.file)
    if got != args.expect_sha256:
        log("FAILED: sha256 mismatch %s != %s" % (got, args.expect_sha256))
        sys.exit(1)
    truth = {
        "info_hash": facts["info_hash"],
        "file_size": facts["file_size"],
        "piece_length": facts["piece_length"],
        "num_pieces": facts["num_pieces"],
        "num_blocks": facts["num_blocks"],
        "blocks_received": args.blocks_received,
        "blocks_received_source": args.blocks_source if args.blocks_received is not None else None,
        "sha256": got,
        "client": args.client,
        "source": "torrent",
        "encryption": "plain",
    }
    with open(args.truth, "w") as f:
        json.dump(truth, f, indent=2, sort_keys=True)
        f.write("\n")
    log("truth written for %s" % args.client)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("make")
    m.add_argument("--out-dir", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--size", type=int, default=1 << 20)
    m.add_argument("--piece-length", type=int, default=64 * 1024)
    m.add_argument("--seed", default="peercache-lab")
    m.add_argument("--tracker", required=True)
    m.add_argument("--v1-only", action="store_true", default=True)

    s = sub.add_parser("seed")
    s.add_argument("--torrent", required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--listen", required=True, help="IP:PORT")
    s.add_argument("--encryption", choices=["plain", "rc4"], default="plain")
    s.add_argument("--transport", choices=["tcp", "utp"], default="tcp")
    s.add_argument("--ready-file")
    s.add_argument("--max-seconds", type=float, default=900)

    l = sub.add_parser("leech")
    src = l.add_mutually_exclusive_group(required=True)
    src.add_argument("--torrent")
    src.add_argument("--magnet")
    l.add_argument("--save-dir", required=True)
    l.add_argument("--listen", required=True, help="IP:PORT")
    l.add_argument("--encryption", choices=["plain", "rc4"], default="plain")
    l.add_argument("--transport", choices=["tcp", "utp"], default="tcp")
    l.add_argument("--outgoing-interfaces", default="",
                   help="libtorrent outgoing_interfaces, e.g. the --listen IP (default: OS)")
    l.add_argument("--expect-sha256", required=True)
    l.add_argument("--truth", required=True)
    l.add_argument("--timeout", type=float, default=120)
    l.add_argument("--settle", type=float, default=1.0)
    l.add_argument("--verbose", action="store_true")

    t = sub.add_parser("truth")
    t.add_argument("--torrent", required=True)
    t.add_argument("--file", required=True)
    t.add_argument("--expect-sha256", required=True)
    t.add_argument("--truth", required=True)
    t.add_argument("--client", default="aria2")
    t.add_argument("--blocks-received", type=int, default=None,
                   help="PIECE messages the client itself logged (omit: null)")
    t.add_argument("--blocks-source", default="client log")

    args = ap.parse_args()
    {"make": cmd_make, "seed": cmd_seed, "leech": cmd_leech, "truth": cmd_truth}[args.cmd](args)


if __name__ == "__main__":
    main()
