#!/usr/bin/python3
"""peercache test lab: deterministic BitTorrent peers built on libtorrent 2.0.

Run with Debian's /usr/bin/python3 (python3-libtorrent). Subcommands:

  make   --out-dir D --name N --size BYTES --piece-length BYTES --seed S --tracker URL
         writes D/N (content derived from S, reproducible), D/N.torrent (v1),
         prints a JSON line {"info_hash", "magnet", ...}.
  seed   --torrent T --data-dir D --listen IP:PORT [--encryption plain|rc4|default]
         [--transport tcp|utp|default] [--upload-limit BYTES_PER_S] [--stats-file F]
         [--outgoing-interfaces IP]
         [--ready-without-tracker]
         seeds until SIGTERM/SIGINT or --max-seconds; writes --ready-file
         after the first successful tracker announce.
         --ready-without-tracker: ready (--ready-file written, exit status 0)
         as soon as the torrent is checked and seeding and the listen socket of
         its transport is up, with no tracker announce needed (peers are given
         its address directly, e.g. tests/fetch.rs; the torrent's tracker may
         be unreachable).
         --upload-limit caps its upload (libtorrent upload_rate_limit for the
         session and the torrent's own limit; 0 = none).
         --stats-file: a JSON snapshot of its upload counters ("pid", "seq",
         "total_payload_upload" = piece payload bytes sent, "total_upload" = all
         peer-protocol bytes, "final"), rewritten atomically (rename) every
         0.5 s, at once on SIGUSR1 (a caller wanting a fresh value sends
         SIGUSR1 and waits for "seq" to change), and on exit ("final": true).
         Freezing a seeder: SIGSTOP its pid (the "pid" of the stats file). Its
         kernel keeps the TCP connections open (ACKs, buffers requests) but
         nothing more is sent; SIGCONT resumes it. SIGKILL would close them.
  leech  (--torrent T | --magnet URI) --save-dir D --listen IP:PORT
         [--encryption plain|rc4|default] [--transport tcp|utp|default]
         [--outgoing-interfaces IP]
         [--recheck] [--freeze-pid PID [--freeze-at-bytes N] [--freeze-hold S]]
         --expect-sha256 H --truth OUT.json
         downloads (bounded by --timeout), verifies SHA-256, writes truth JSON
         ("completed": false plus progress when it fails, then exits 1).
         "hash_failures" counts hash_failed_alerts (pieces that failed
         libtorrent's SHA-1 check and were downloaded again);
         "hash_failed_pieces" lists their piece indices in order, and
         "banned_peers" the endpoints ("IP:PORT") libtorrent banned
         (peer_ban_alert, e.g. after hash failures), in order.
         "connections" says what the peer connections actually used, from
         libtorrent's peer_info sampled every poll (~50 ms): per remote
         endpoint and transport, uTP or TCP, RC4 or MSE-then-plaintext or
         plain BitTorrent, and the payload bytes received on it.
         --recheck: once finished, libtorrent re-verifies every piece on disk
         (force_recheck); "recheck_ok" says all pieces passed.
         --freeze-pid PID: SIGSTOP process PID (a seeder) as soon as this
         leecher has received --freeze-at-bytes payload bytes (default 1: its
         first data); with --freeze-hold S > 0, SIGCONT it again after S s if
         the download is not complete by then (0: stay frozen; the caller
         resumes it after the leecher exits). The truth JSON's "freeze" object
         records when (bytes, seconds), and what came while it was frozen.
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
--transport default: no setting touches transports (libtorrent's own defaults:
uTP and TCP both on, incoming and outgoing; between two libtorrent peers it
prefers uTP).

--encryption plain: MSE/PE off both ways (plain BitTorrent); rc4: MSE forced,
RC4 only; default: no setting touches encryption (libtorrent's own defaults:
in/out enc_policy "enabled", allowed_enc_level "both" i.e. plaintext and RC4
offered, prefer_rc4 off; so an MSE handshake usually selects plaintext).
"--encryption default --transport default" is a stock libtorrent client (issue
13): only lab-hygiene settings remain (see session_for).
"""

import argparse
import faulthandler
import hashlib
import json
import os
import signal
import sys
import time
import urllib.parse

import libtorrent as lt

import conn_summary  # tests/lab/, beside this script

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
    """A session for the lab. Two kinds of settings:
    - lab hygiene, always: keep every packet inside the lab and make the peers findable
      there (no DHT/LSD/UPnP/NAT-PMP/IP notifier, listen and outgoing addresses pinned
      to the client's own lab address, no SSRF mitigation since trackers and peers all
      live in 198.18.0.0/15, several connections per IP, announce everywhere), plus
      alert plumbing and the user agent. None of them touches encryption or transports.
    - encryption and transport: set only when asked (plain/rc4, tcp/utp); "default"
      leaves libtorrent's own defaults in place (a stock client)."""
    s = {
        "listen_interfaces": listen,
        "outgoing_interfaces": outgoing,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "dht_bootstrap_nodes": "",
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
        # alerts are popped every 10..200 ms (wait_alerts): room for a fast download's
        "alert_queue_size": 100000,
    }
    if transport != "default":
        # exactly one peer transport (the HTTP tracker is not affected)
        utp = transport == "utp"
        s["enable_outgoing_utp"] = utp
        s["enable_incoming_utp"] = utp
        s["enable_outgoing_tcp"] = not utp
        s["enable_incoming_tcp"] = not utp
    if encryption == "rc4":
        s["out_enc_policy"] = int(lt.enc_policy.forced)
        s["in_enc_policy"] = int(lt.enc_policy.forced)
        s["allowed_enc_level"] = int(lt.enc_level.rc4)
        s["prefer_rc4"] = True
    elif encryption == "plain":
        s["out_enc_policy"] = int(lt.enc_policy.disabled)
        s["in_enc_policy"] = int(lt.enc_policy.disabled)
        s["allowed_enc_level"] = int(lt.enc_level.plaintext)
    return lt.session(s)


# peer_info flag bits the Python binding does not name (libtorrent 2.0 peer_info.hpp:
# i2p_socket 16, utp_socket 17, ssl_socket 18); rc4_encrypted (19) and
# plaintext_encrypted (20) it does.
PEER_UTP_SOCKET = 1 << 17


class Connections:
    """What this client's peer connections actually used, sampled from get_peer_info():
    per (remote endpoint, transport) whether it was uTP, RC4 or MSE-then-plaintext, and
    the most payload bytes seen received on it (a lower bound: a connection closed as the
    download ends takes its last bytes with it). A connection still connecting or
    handshaking is not recorded (its encryption is not known yet)."""

    def __init__(self):
        self.conns = {}

    def sample(self, h):
        try:
            peers = h.get_peer_info()
        except RuntimeError:
            return
        for p in peers:
            f = int(p.flags)
            if f & (int(lt.peer_info.connecting) | int(lt.peer_info.handshake)):
                continue
            utp = bool(f & PEER_UTP_SOCKET)
            key = "%s:%d/%s" % (p.ip[0], p.ip[1], "utp" if utp else "tcp")
            c = self.conns.setdefault(key, {
                "endpoint": "%s:%d" % (p.ip[0], p.ip[1]), "transport": "utp" if utp else "tcp",
                "encryption": "plain", "outgoing": bool(f & int(lt.peer_info.outgoing_connection)),
                "payload_bytes_received": 0, "client": "",
            })
            if f & int(lt.peer_info.rc4_encrypted):
                c["encryption"] = "rc4"
            elif f & int(lt.peer_info.plaintext_encrypted) and c["encryption"] == "plain":
                c["encryption"] = "mse_plaintext"
            c["payload_bytes_received"] = max(c["payload_bytes_received"], p.total_download)
            if p.client:
                cl = p.client
                c["client"] = cl.decode("utf-8", "replace") if isinstance(cl, bytes) else str(cl)

    def record(self):
        return conn_summary.summarize(self.conns.values())


STOP = False


def _on_signal(_sig, _frm):
    global STOP
    STOP = True


BLOCKS_FINISHED = 0  # block_finished_alert count, across every drain()


def wait_alerts(ms):
    """Wait before the next pop_alerts(). Not session.wait_for_alert(): its Python binding
    converts the alert it returns (a dynamic_cast) after the call, while libtorrent's
    network thread may already have grown the alert queue under it; under a steady flow of
    block alerts that segfaulted (python3-libtorrent 2.0.8, about once in 25 rate-limited
    8 MiB downloads; cf. libtorrent issue 5018). Polling with a short sleep is safe."""
    time.sleep(ms / 1000.0)


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


STATS_REQUESTED = False


def _on_usr1(_sig, _frm):
    global STATS_REQUESTED
    STATS_REQUESTED = True


class SeedStats:
    """The seeder's upload counters in a JSON file, replaced atomically."""

    def __init__(self, path, handle):
        self.path, self.h, self.seq, self.next = path, handle, 0, 0.0

    def write(self, final=False):
        if not self.path:
            return
        st = self.h.status()
        self.seq += 1
        d = {
            "pid": os.getpid(),
            "seq": self.seq,
            "time": time.time(),
            "final": final,
            "total_payload_upload": st.total_payload_upload,
            "total_upload": st.total_upload,
            "all_time_upload": st.all_time_upload,
            "num_peers": st.num_peers,
            "upload_limit": self.h.upload_limit(),
        }
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(d, f, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)
        self.next = time.monotonic() + 0.5


def cmd_seed(args):
    global STATS_REQUESTED
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGUSR1, _on_usr1)
    ses = session_for(args.listen, args.encryption, args.transport, args.outgoing_interfaces)
    if args.upload_limit:
        ses.apply_settings({"upload_rate_limit": args.upload_limit})
    ti = lt.torrent_info(args.torrent)
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = args.data_dir
    h = ses.add_torrent(p)
    if args.upload_limit:
        h.set_upload_limit(args.upload_limit)
    stats = SeedStats(args.stats_file, h)
    stats.write()
    deadline = time.monotonic() + args.max_seconds
    ready = False
    listening = False  # a listen socket of the peer transport is up (--ready-without-tracker)
    next_announce = 0.0

    def become_ready(how):
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write("ready\n")
        log("seeding and %s; ready" % how)

    while not STOP and time.monotonic() < deadline:
        wait_alerts(100)
        if STATS_REQUESTED or time.monotonic() >= stats.next:
            STATS_REQUESTED = False
            stats.write()
        for a in drain(ses):
            if isinstance(a, lt.tracker_reply_alert) and not ready \
                    and not args.ready_without_tracker:
                st = h.status()
                if not st.is_seeding:
                    log("announced but not seeding?! state", st.state)
                    continue
                ready = True
                become_ready("announced")
            elif isinstance(a, lt.listen_succeeded_alert):
                if listen_is_peer_transport(a, args.transport):
                    listening = True
            elif isinstance(a, lt.torrent_error_alert):
                log("torrent error, exiting")
                sys.exit(2)
        st = h.status()
        if args.ready_without_tracker:
            if not ready and listening and st.is_seeding:
                ready = True
                become_ready("listening (no tracker announce awaited)")
        # once checked, force an announce (bounded: every 2 s until ready)
        elif not ready and st.is_seeding and time.monotonic() >= next_announce:
            h.force_reannounce()
            next_announce = time.monotonic() + 2.0
    st = h.status()
    stats.write(final=True)
    log("seeder exiting: uploaded %d bytes (payload %d)" % (st.total_upload, st.total_payload_upload))
    sys.exit(0 if ready else 1)


def listen_is_peer_transport(a, transport):
    """Whether a listen_succeeded_alert is for a socket peers connect to: TCP for
    --transport tcp, uTP for utp, either for default."""
    kind = a.socket_type
    if transport == "tcp":
        return kind == lt.socket_type_t.tcp
    if transport == "utp":
        return kind == lt.socket_type_t.utp
    return kind in (lt.socket_type_t.tcp, lt.socket_type_t.utp)


def collect_stats(ses, names, timeout=5.0):
    idx = {m.name: m.value_index for m in lt.session_stats_metrics()}
    ses.post_session_stats()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        wait_alerts(200)
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
    wall_t0 = time.time()
    deadline = t0 + args.timeout
    done = False
    hash_failures = 0
    hash_failed_pieces = []
    banned = []
    freeze = Freeze(args, t0)
    conns = Connections()
    while not STOP and time.monotonic() < deadline:
        wait_alerts(10 if freeze.pending() else 50)
        for a in drain(ses, verbose=args.verbose):
            if isinstance(a, (lt.tracker_reply_alert, lt.tracker_error_alert,
                                lt.metadata_received_alert, lt.peer_connect_alert,
                                lt.peer_disconnected_alert, lt.torrent_finished_alert,
                                lt.torrent_error_alert, lt.hash_failed_alert,
                                lt.peer_ban_alert)) and not args.verbose:
                log(type(a).__name__ + ":", a.message())
            if isinstance(a, lt.hash_failed_alert):
                hash_failures += 1
                hash_failed_pieces.append(int(a.piece_index))
            if isinstance(a, lt.peer_ban_alert):
                banned.append("%s:%d" % (a.endpoint[0], a.endpoint[1]))
            if isinstance(a, lt.torrent_finished_alert):
                done = True
        conns.sample(h)
        if done:
            break
        freeze.poll(h)
    elapsed = time.monotonic() - t0
    freeze.finish(h, done)
    if not done:
        st = h.status()
        log("FAILED: not finished after %.1fs (state %s, progress %.3f, peers %d)"
            % (elapsed, st.state, st.progress, st.num_peers))
        write_json(args.truth, {
            "completed": False, "progress": st.progress,
            "payload_bytes_received": st.total_payload_download,
            "hash_failures": hash_failures, "hash_failed_pieces": hash_failed_pieces,
            "banned_peers": banned, "elapsed_seconds": round(elapsed, 3),
            "freeze": freeze.record(), "client": "libtorrent",
            "client_version": lt.__version__, "connections": conns.record(),
            "encryption": args.encryption, "transport": args.transport,
        })
        sys.exit(1)
    # let in-flight (endgame duplicate) PIECE messages land before counting
    time.sleep(args.settle)
    conns.sample(h)
    stats = collect_stats(ses, ["ses.num_incoming_piece", "ses.num_outgoing_request"])
    for a in drain(ses, verbose=False):
        if isinstance(a, lt.peer_ban_alert):
            banned.append("%s:%d" % (a.endpoint[0], a.endpoint[1]))
    ti = h.torrent_file()
    facts = torrent_facts(ti)
    path = os.path.join(args.save_dir, ti.files().file_path(0))
    st = h.status()
    payload = st.total_payload_download
    recheck_ok = recheck(ses, h, ti) if args.recheck else None
    got = sha256_file(path)
    truth = {
        "completed": True,
        "sha256_ok": got == args.expect_sha256,
        "hash_failures": hash_failures,
        "hash_failed_pieces": hash_failed_pieces,
        "banned_peers": banned,
        "recheck_ok": recheck_ok,
        "freeze": freeze.record(),
        "info_hash": facts["info_hash"],
        "file_size": facts["file_size"],
        "piece_length": facts["piece_length"],
        "num_pieces": facts["num_pieces"],
        "num_blocks": facts["num_blocks"],
        "blocks_received": stats["ses.num_incoming_piece"],
        "block_finished_alerts": BLOCKS_FINISHED,
        "requests_sent": stats["ses.num_outgoing_request"],
        "payload_bytes_received": payload,
        "sha256": got,
        "client": "libtorrent",
        "client_version": lt.__version__,
        "source": "magnet" if args.magnet else "torrent",
        "encryption": args.encryption,
        "transport": args.transport,
        "connections": conns.record(),
        "download_seconds": round(elapsed, 3),
        # wall clock, to line the download up with what else ran (inline.sh's flood)
        "started_unix": round(wall_t0, 3),
        "finished_unix": round(wall_t0 + elapsed, 3),
    }
    write_json(args.truth, truth)
    if got != args.expect_sha256:
        log("FAILED: sha256 mismatch %s != %s" % (got, args.expect_sha256))
        sys.exit(1)
    if args.recheck and not recheck_ok:
        log("FAILED: libtorrent's recheck of the finished download failed")
        sys.exit(1)
    log("leech OK in %.2fs: %s" % (elapsed, json.dumps(truth)))


def write_json(path, d):
    with open(path, "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
        f.write("\n")


def recheck(ses, h, ti, timeout=60.0):
    """libtorrent's own verification of the finished download: force_recheck re-hashes
    every piece on disk; True when all of them pass (the torrent is whole again)."""
    h.force_recheck()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        wait_alerts(200)
        for a in drain(ses, verbose=False):
            if isinstance(a, lt.torrent_checked_alert):
                st = h.status()
                ok = st.num_pieces == ti.num_pieces() and st.progress >= 1.0
                log("recheck: %d/%d pieces pass" % (st.num_pieces, ti.num_pieces()))
                return ok
    log("recheck: no torrent_checked_alert after %.0fs" % timeout)
    return False


class Freeze:
    """Stop (SIGSTOP) a seeder once this leecher has its first data, see --freeze-pid."""

    def __init__(self, args, t0):
        self.pid, self.at, self.hold = args.freeze_pid, args.freeze_at_bytes, args.freeze_hold
        self.t0 = t0
        self.frozen_at = None   # (monotonic time, payload bytes) at SIGSTOP
        self.resumed_at = None  # (monotonic time, payload bytes) at SIGCONT, if any
        self.end = None         # (monotonic time, payload bytes) when the download ended
        self.done = False

    def pending(self):
        return self.pid is not None and self.frozen_at is None

    def poll(self, h):
        if self.pid is None:
            return
        if self.frozen_at is None:
            got = h.status().total_payload_download
            if got >= self.at:
                os.kill(self.pid, signal.SIGSTOP)
                self.frozen_at = (time.monotonic(), got)
                log("FREEZE: SIGSTOP seeder pid %d after %d payload bytes (%.2fs)"
                    % (self.pid, got, self.frozen_at[0] - self.t0))
        elif self.resumed_at is None and self.hold > 0 \
                and time.monotonic() >= self.frozen_at[0] + self.hold:
            os.kill(self.pid, signal.SIGCONT)
            self.resumed_at = (time.monotonic(), h.status().total_payload_download)
            log("FREEZE: SIGCONT seeder pid %d after %.1fs frozen (%d payload bytes now)"
                % (self.pid, self.hold, self.resumed_at[1]))

    def finish(self, h, done):
        if self.pid is not None:
            self.end = (time.monotonic(), h.status().total_payload_download)
            self.done = done

    def record(self):
        if self.pid is None:
            return None
        r = {"pid": self.pid, "at_bytes_threshold": self.at, "hold_seconds": self.hold,
             "frozen": self.frozen_at is not None, "resumed": self.resumed_at is not None}
        if self.frozen_at is not None:
            t, b = self.frozen_at
            stop_t, stop_b = self.resumed_at or self.end
            r.update({
                "frozen_at_seconds": round(t - self.t0, 3),
                "payload_bytes_before_freeze": b,
                "payload_bytes_after_freeze": self.end[1] - b,
                # while the seeder was stopped (until SIGCONT or the end of the download)
                "payload_bytes_while_frozen": stop_b - b,
                "frozen_seconds": round(stop_t - t, 3),
                "completed_while_frozen": self.done and self.resumed_at is None,
            })
        return r


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
    faulthandler.enable()  # a crash inside libtorrent prints the Python stack
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
    s.add_argument("--encryption", choices=["plain", "rc4", "default"], default="plain")
    s.add_argument("--transport", choices=["tcp", "utp", "default"], default="tcp")
    s.add_argument("--ready-file")
    s.add_argument("--outgoing-interfaces", default="",
                   help="libtorrent outgoing_interfaces, e.g. the --listen IP (default: OS)")
    s.add_argument("--upload-limit", type=int, default=0,
                   help="upload rate limit, bytes/s (0: none)")
    s.add_argument("--stats-file", help="upload counters JSON (see the module doc)")
    s.add_argument("--max-seconds", type=float, default=900)
    s.add_argument("--ready-without-tracker", action="store_true",
                   help="ready once seeding and listening, no tracker announce awaited")

    l = sub.add_parser("leech")
    src = l.add_mutually_exclusive_group(required=True)
    src.add_argument("--torrent")
    src.add_argument("--magnet")
    l.add_argument("--save-dir", required=True)
    l.add_argument("--listen", required=True, help="IP:PORT")
    l.add_argument("--encryption", choices=["plain", "rc4", "default"], default="plain")
    l.add_argument("--transport", choices=["tcp", "utp", "default"], default="tcp")
    l.add_argument("--outgoing-interfaces", default="",
                   help="libtorrent outgoing_interfaces, e.g. the --listen IP (default: OS)")
    l.add_argument("--expect-sha256", required=True)
    l.add_argument("--truth", required=True)
    l.add_argument("--timeout", type=float, default=120)
    l.add_argument("--settle", type=float, default=1.0)
    l.add_argument("--recheck", action="store_true",
                   help="re-verify every piece on disk with libtorrent once finished")
    l.add_argument("--freeze-pid", type=int, default=None,
                   help="SIGSTOP this pid (a seeder) once --freeze-at-bytes arrived")
    l.add_argument("--freeze-at-bytes", type=int, default=1)
    l.add_argument("--freeze-hold", type=float, default=0.0,
                   help="SIGCONT the frozen pid after this many seconds (0: never)")
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
