#!/usr/bin/python3
"""peercache test lab: one download by a stock qBittorrent (qbittorrent-nox, Debian 12:
4.5.2 on libtorrent 2.0.8), driven through its Web API (urllib only).

usage: qbt.py download --torrent T --save-dir D --profile P --ip IP --iface IF
           [--port 6881] [--webui-port 18080] --expect-sha256 H --truth OUT.json
           [--timeout S] [--qbittorrent qbittorrent-nox]

Run it inside the namespace the client belongs in (inline.sh: pc-sub); qbittorrent-nox
is started as its child there and stopped before it exits. What it does:
 1. writes a fresh profile P (must not exist, or be empty): P/qBittorrent/config/
    qBittorrent.conf with only
      - the legal notice accepted (else qbittorrent-nox asks on stdin and waits),
      - the Web UI on 127.0.0.1:--webui-port inside the namespace, local-host
        authentication bypassed (no login), no UPnP for it,
      - the BitTorrent session bound to the client's own lab address (Session\\Interface,
        InterfaceName = IF, InterfaceAddress = IP, Port): qBittorrent then listens on
        IP:PORT (TCP and uTP) and binds outgoing connections to IP,
      - lab hygiene as for peer.py: DHT, LSD, PeX, UPnP/NAT-PMP off, SSRF mitigation off
        (trackers and peers are in 198.18.0.0/15), several connections per IP allowed,
        the save path.
    Nothing touches encryption (Session\\Encryption stays at its default 0, "allow":
    libtorrent enc_policy enabled, plaintext and RC4 offered) or transports
    (Session\\BTProtocol stays "Both": TCP and uTP, libtorrent's mixed mode). The
    effective values are read back from /api/v2/app/preferences into the truth JSON.
 2. starts `qbittorrent-nox --profile=P --webui-port=PORT`, waits (bounded) for the Web
    API, adds the .torrent (/api/v2/torrents/add), polls /api/v2/torrents/info until
    the torrent is complete (progress 1 and a seeding state) or --timeout,
 3. the client's own check: pauses it (nothing more can arrive), asks for a recheck
    (/api/v2/torrents/recheck: every piece re-hashed from disk) and waits for its
    verdict: checking over, every piece present again (properties pieces_have ==
    pieces_num, progress 1). A piece failing its hash stays missing (the torrent is
    paused, it cannot fetch it again), so the verdict is exact. That the recheck did run
    is required too: a checking state seen, or qBittorrent's log (/api/v2/log/main)
    saying the paused torrent was resumed (to be checked) and paused again.
 4. SHA-256 of the file on disk against --expect-sha256, then /api/v2/app/shutdown
    (bounded; SIGTERM, then SIGKILL if it lingers).
The truth JSON: completed, sha256, sha256_ok, recheck_ok, download_seconds,
payload_bytes_received (total_downloaded), wasted_bytes (total_wasted: hash-failed and
redundant), client_version, preferences (the effective settings above), connections
(from /api/v2/sync/torrentPeers, polled every 0.5 s: per peer endpoint its transport,
"BT" = TCP or "μTP", and its encryption from qBittorrent's flags: E = RC4, e = MSE
handshake then plaintext). Exit status 0 when complete, byte-identical and the recheck
passed, else 1.
"""

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import conn_summary  # tests/lab/, beside this script

SEEDING = {"uploading", "stalledUP", "queuedUP", "forcedUP", "pausedUP", "checkingUP"}
CHECKING = {"checkingUP", "checkingDL", "checkingResumeData", "moving", "allocating",
            "metaDL"}


def log(*a):
    print("[qbt %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def write_config(profile, a):
    cfg_dir = os.path.join(profile, "qBittorrent", "config")
    os.makedirs(cfg_dir, exist_ok=True)
    # QSettings INI: "BitTorrent/Session/Port" is key Session\Port in [BitTorrent]
    conf = """[LegalNotice]
Accepted=true

[BitTorrent]
Session\\Interface={iface}
Session\\InterfaceName={iface}
Session\\InterfaceAddress={ip}
Session\\Port={port}
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\SSRFMitigation=false
Session\\MultiConnectionsPerIp=true
Session\\DefaultSavePath={save}

[Network]
PortForwardingEnabled=false

[Preferences]
WebUI\\Address=127.0.0.1
WebUI\\Port={webui}
WebUI\\LocalHostAuth=false
WebUI\\UseUPnP=false
""".format(iface=a.iface, ip=a.ip, port=a.port, save=os.path.abspath(a.save_dir),
           webui=a.webui_port)
    with open(os.path.join(cfg_dir, "qBittorrent.conf"), "w") as f:
        f.write(conf)
    return conf


class Api:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port

    def call(self, path, data=None, timeout=10):
        """GET (data None) or POST a form (dict) / a prepared (body, content_type)."""
        headers = {"Referer": self.base}
        body = None
        if isinstance(data, dict):
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif data is not None:
            body, headers["Content-Type"] = data
        req = urllib.request.Request(self.base + path, data=body, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def json(self, path):
        return json.loads(self.call(path))


def multipart(fields, files):
    """(body, content type) of a multipart/form-data POST."""
    b = "----peercache-lab-" + uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (b, k, v)).encode())
    for k, (name, data) in files.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: application/x-bittorrent\r\n\r\n" % (b, k, name)).encode())
        out.append(data + b"\r\n")
    out.append(("--%s--\r\n" % b).encode())
    return b"".join(out), "multipart/form-data; boundary=" + b


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""):
            h.update(c)
    return h.hexdigest()


class Peers:
    """Per peer endpoint: transport and encryption as qBittorrent shows them."""

    def __init__(self, own):
        self.own = own   # "IP:PORT" of this client: the tracker lists it, it tries itself
        self.peers = {}

    def sample(self, api, h):
        try:
            d = api.json("/api/v2/sync/torrentPeers?hash=%s&rid=0" % h)
        except (urllib.error.URLError, OSError, ValueError):
            return
        for ep, p in (d.get("peers") or {}).items():
            if ep == self.own:
                continue
            conn = p.get("connection", "")
            transport = "utp" if "TP" in conn and conn != "BT" else "tcp"
            key = "%s/%s" % (ep, transport)
            flags = p.get("flags", "")
            c = self.peers.setdefault(key, {
                "endpoint": ep, "transport": transport, "connection": conn,
                "encryption": "plain", "flags": "", "payload_bytes_received": 0,
                "client": ""})
            if "E" in flags.split():
                c["encryption"] = "rc4"
            elif "e" in flags.split() and c["encryption"] == "plain":
                c["encryption"] = "mse_plaintext"
            c["flags"] = flags
            c["payload_bytes_received"] = max(c["payload_bytes_received"],
                                              int(p.get("downloaded", 0) or 0))
            c["client"] = p.get("client", "") or c["client"]

    def record(self):
        return conn_summary.summarize(self.peers.values())


PREF_KEYS = ["encryption", "bittorrent_protocol", "current_network_interface",
             "current_interface_address", "listen_port", "dht", "pex", "lsd", "upnp",
             "ssrf_mitigation", "enable_multi_connections_from_same_ip", "anonymous_mode",
             "save_path", "web_ui_address", "web_ui_port", "bypass_local_auth"]


def stop(proc, api):
    try:
        api.call("/api/v2/app/shutdown", {}, timeout=5)
    except (urllib.error.URLError, OSError):
        pass
    for sig, wait in ((None, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if sig is not None and proc.poll() is None:
            log("qbittorrent-nox still running, sending", sig.name)
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return None


def _on_term(sig, _frm):
    # `timeout` (inline.sh) or the lab's cleanup: stop qbittorrent-nox too (finally)
    raise SystemExit(128 + sig)


def cmd_download(a):
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    if os.path.isdir(a.profile) and os.listdir(a.profile):
        sys.exit("qbt.py: profile %s is not empty (a fresh profile is required)" % a.profile)
    os.makedirs(a.save_dir, exist_ok=True)
    write_config(a.profile, a)
    api = Api(a.webui_port)
    truth = {"completed": False, "client": "qbittorrent", "client_version": None,
             "sha256": None, "sha256_ok": False, "recheck_ok": False,
             "download_seconds": None, "encryption": "default", "transport": "default"}
    qlog = open(os.path.join(a.profile, "qbittorrent-nox.log"), "w")
    proc = subprocess.Popen([a.qbittorrent, "--profile=" + os.path.abspath(a.profile),
                             "--webui-port=%d" % a.webui_port],
                            stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT)
    peers = Peers("%s:%d" % (a.ip, a.port))
    try:
        ok = run(a, api, proc, truth, peers)
    finally:
        truth["connections"] = peers.record()
        truth["qbittorrent_exit"] = stop(proc, api)
        qlog.close()
        with open(a.truth, "w") as f:
            json.dump(truth, f, indent=2, sort_keys=True)
            f.write("\n")
    log("verdict:", json.dumps({k: truth[k] for k in ("completed", "sha256_ok", "recheck_ok",
                                                        "download_seconds")}))
    sys.exit(0 if ok else 1)


def run(a, api, proc, truth, peers):
    end = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            log("qbittorrent-nox exited (%s) before its Web API answered" % proc.returncode)
            return False
        try:
            truth["client_version"] = api.call("/api/v2/app/version", timeout=2).decode()
            break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > end:
                log("no Web API on 127.0.0.1:%d after 60 s" % a.webui_port)
                return False
            time.sleep(0.2)
    prefs = api.json("/api/v2/app/preferences")
    truth["preferences"] = {k: prefs.get(k) for k in PREF_KEYS}
    log("qBittorrent %s up; %s" % (truth["client_version"], json.dumps(truth["preferences"])))

    with open(a.torrent, "rb") as f:
        data = f.read()
    t0 = time.monotonic()
    r = api.call("/api/v2/torrents/add", multipart(
        {"savepath": os.path.abspath(a.save_dir), "paused": "false",
         "skip_checking": "false", "contentLayout": "Original"},
        {"torrents": (os.path.basename(a.torrent), data)}))
    log("add:", r.decode(errors="replace").strip())
    h, info = None, None
    deadline = t0 + a.timeout
    next_peers = 0.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log("qbittorrent-nox exited (%s) during the download" % proc.returncode)
            return False
        lst = api.json("/api/v2/torrents/info")
        if lst:
            info = lst[0]
            h = info["hash"]
            if time.monotonic() >= next_peers:
                peers.sample(api, h)
                next_peers = time.monotonic() + 0.5
            if info["progress"] >= 1.0 and info["state"] in SEEDING - {"checkingUP"}:
                break
        time.sleep(0.2)
    else:
        log("FAILED: not complete after %.0f s: %s" % (a.timeout, json.dumps(info)))
        truth["last_info"] = info
        return False
    truth["download_seconds"] = round(time.monotonic() - t0, 3)
    truth["completed"] = True
    peers.sample(api, h)
    props = api.json("/api/v2/torrents/properties?hash=" + h)
    truth["payload_bytes_received"] = props.get("total_downloaded")
    truth["wasted_bytes"] = props.get("total_wasted")
    truth["info_hash"] = h
    log("complete in %.2f s (%s)" % (truth["download_seconds"], info["state"]))

    # the client's own check: paused (nothing can arrive), every piece re-hashed
    api.call("/api/v2/torrents/pause", {"hashes": h})
    log0 = max([m.get("id", -1) for m in api.json("/api/v2/log/main")] or [-1])
    api.call("/api/v2/torrents/recheck", {"hashes": h})
    t_check = time.monotonic()
    seen_checking = False
    verdict = None
    while time.monotonic() < t_check + 120:
        time.sleep(0.2)
        info = api.json("/api/v2/torrents/info?hashes=" + h)[0]
        props = api.json("/api/v2/torrents/properties?hash=" + h)
        if info["state"] in CHECKING:
            seen_checking = True
            continue
        # qBittorrent's status is refreshed every 1.5 s (RefreshInterval): give a status
        # from before the recheck 3 s to be replaced, then take the settled state
        if time.monotonic() < t_check + 3.0:
            continue
        # proof that the recheck ran: a checking state seen, or (an 8 MiB check is over
        # in well under a refresh interval) its own log: a recheck of a paused torrent
        # resumes it to check and pauses it again once checked
        msgs = [m.get("message", "") for m in
                api.json("/api/v2/log/main?last_known_id=%d" % log0)]
        i = next((k for k, m in enumerate(msgs) if "Torrent resumed" in m), None)
        logged = i is not None and any("Torrent paused" in m for m in msgs[i + 1:])
        if not (seen_checking or logged) and time.monotonic() < t_check + 30:
            continue
        verdict = {"state": info["state"], "progress": info["progress"],
                   "pieces_have": props.get("pieces_have"),
                   "pieces_num": props.get("pieces_num"), "seen_checking": seen_checking,
                   "logged_resume_then_pause": logged,
                   "seconds": round(time.monotonic() - t_check, 3)}
        break
    truth["recheck"] = verdict
    truth["recheck_ok"] = bool(
        verdict and (verdict["seen_checking"] or verdict["logged_resume_then_pause"])
        and verdict["progress"] >= 1.0
        and verdict["pieces_have"] == verdict["pieces_num"] and verdict["pieces_num"])
    log("recheck:", json.dumps(verdict))

    path = os.path.join(a.save_dir, info["name"])
    truth["sha256"] = sha256_file(path) if os.path.isfile(path) else None
    truth["sha256_ok"] = truth["sha256"] == a.expect_sha256
    return truth["sha256_ok"] and truth["recheck_ok"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download")
    d.add_argument("--torrent", required=True)
    d.add_argument("--save-dir", required=True)
    d.add_argument("--profile", required=True, help="a fresh (absent or empty) directory")
    d.add_argument("--ip", required=True, help="the client's lab address")
    d.add_argument("--iface", required=True, help="the interface holding --ip")
    d.add_argument("--port", type=int, default=6881)
    d.add_argument("--webui-port", type=int, default=18080)
    d.add_argument("--expect-sha256", required=True)
    d.add_argument("--truth", required=True)
    d.add_argument("--timeout", type=float, default=120)
    d.add_argument("--qbittorrent", default="qbittorrent-nox")
    a = ap.parse_args()
    cmd_download(a)


if __name__ == "__main__":
    main()
