#!/usr/bin/python3
"""peercache test lab: a hostile BitTorrent peer: lying metadata for the metadata fetch
(BEP 9, issue 14), or poisoned pieces (issue 20).

Python 3 standard library only (any python3 runs it). Usage:

  hostile_peer.py --listen IP:PORT (--torrent FILE | --info-hash HEX [--metadata-size N])
                  --mode wrong|silent [--stats-file F]
  hostile_peer.py --listen IP:PORT --torrent FILE --mode poison
                  [--announce URL] [--piece-delay S] [--stats-file F]

Listens on --listen (TCP; port 0: the kernel picks one, see "listen" in the stats file)
for connections about one swarm: the info-hash of --torrent (whose real info dictionary
it then knows) or --info-hash. Each connection gets a thread:

  1. it reads the peer's 68-byte handshake; a handshake for another info-hash (or not a
     BitTorrent handshake) is logged and the connection closed;
  2. it answers with its own handshake (reserved byte 5 = 0x10: BEP 10 extension
     protocol; peer id "-HP0001-" + mode) and a BEP 10 extended handshake advertising
     ut_metadata under id 3 (deliberately not 1, the id peercache asks for, so a mix-up
     of the two ids shows) and a metadata_size: the real info dictionary's length with
     --torrent, else --metadata-size;
  3. it reads messages until the peer closes (or SIGTERM). It never sends a bitfield,
     HAVE, UNCHOKE or PIECE, and never requests anything.

--mode wrong: every ut_metadata request (msg_type 0) is answered at once with a data
  message (msg_type 1, the right total_size, the right length for that piece) whose bytes
  are wrong: with --torrent, the real info dictionary with the first byte of its first
  piece hash flipped (still a well-formed dictionary of the same size, so only the SHA-1
  check against the info-hash can catch it); without, deterministic pseudo-random bytes
  (SHAKE-256 of the info-hash). Either way their SHA-1 is not the info-hash (checked at
  start). The requests are answered under the ut_metadata id the peer gave in its own
  extended handshake; a request from a peer that gave none is logged and not answered.
--mode silent: requests are read, counted and logged, never answered; the connection
  stays open, silent, until the peer closes it.

--mode poison (needs --torrent; issue 20): a peer that claims to have every piece and
  lies in every block. Step 2 becomes: its own handshake (reserved bytes all 0: no
  extension protocol, no fast extension; peer id "-HP0001-poison-" + 5 random hex
  digits), then a full BITFIELD (every piece of the torrent, spare bits 0) and an UNCHOKE,
  at once, whatever the peer says. Step 3: every REQUEST (index, begin, length) inside the
  torrent (length 1..128 KiB, begin + length within the piece) is answered with a PIECE
  of that index, begin and length whose bytes are random (os.urandom: never the real data,
  and every copy different), in order, each one --piece-delay S seconds (default 0) after
  the previous answer or its REQUEST, whichever is later (so a slow liar competes with an
  honest peer for the same pieces); a REQUEST outside the torrent is logged and not
  answered. Every other message (INTERESTED, HAVE, CANCEL, ...) is logged and ignored;
  it never requests anything. With --announce URL (an HTTP tracker's announce URL) it
  first makes itself known: a GET of URL with the torrent's info-hash, its peer id, the
  port of --listen, left=0, event=started, compact=1, sent from the --listen address
  (so the tracker records that address), retried every 0.5 s until the tracker answers
  with a dictionary without "failure reason" (bounded: 60 s, then exit 1); the stats
  file is written (listening) only after that, so a caller waiting for it knows the
  tracker lists this peer. Its stats file also has "announced" (true or false),
  "announce_interval" (the tracker's answer), "piece_requests" (REQUESTs received),
  "pieces_sent" (PIECE messages written to the socket), "piece_bytes_sent" (their block
  bytes), "sent" (list of {"conn", "index", "begin", "length"}), "bad_requests" (not
  answered), "cancels" and "peers" (list of {"conn", "peer"}: who connected).

Logs every connection, handshake, request, answer and close to stderr. --stats-file F:
a JSON object rewritten atomically (rename) at start (once listening: a caller can wait
for the file) and after every event:
  "pid", "mode", "listen" (IP:PORT actually bound), "info_hash", "metadata_size",
  "connections" (TCP connections accepted), "handshakes" (valid handshakes for our
  info-hash), "metadata_requests" (ut_metadata requests received, all connections),
  "requests" (list of {"conn", "piece"}), "data_sent" (ut_metadata data messages sent),
  "data_bytes_sent" (metadata bytes in them), "closed" (connections ended: by the peer or
  after an error), "closed_by_peer" (ended by the peer: EOF or reset), "final" (true once
  SIGTERM/SIGINT was handled).
Exits 0 on SIGTERM/SIGINT.
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

PSTR = b"\x13BitTorrent protocol"
HANDSHAKE_LEN = 68
EXTENDED = 20
OUR_UT_METADATA_ID = 3
METADATA_PIECE = 16 * 1024
MAX_MESSAGE = 1 << 20
MAX_BLOCK = 128 * 1024  # the largest REQUEST a poisoner answers (BEP 3 clients ask 16 KiB)
BITFIELD, UNCHOKE, REQUEST, PIECE, CANCEL = 5, 1, 6, 7, 8
MSG_NAMES = {0: "choke", 1: "unchoke", 2: "interested", 3: "not interested", 4: "have",
             5: "bitfield", 6: "request", 7: "piece", 8: "cancel", 9: "port", 20: "extended"}

STOP = threading.Event()


def log(*a):
    print("[hostile %s %s]" % (ARGS.mode if ARGS else "?", time.strftime("%H:%M:%S")), *a,
          file=sys.stderr, flush=True)


ARGS = None


# ---- bencode (just what is needed: decode with spans, encode of small dicts)

class BencodeError(ValueError):
    pass


def bdecode(data, i=0):
    """Decode one value at data[i:]; returns (value, end). Dict keys stay bytes."""
    if i >= len(data):
        raise BencodeError("truncated")
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            if not isinstance(k, bytes):
                raise BencodeError("dict key is not a string")
            v, i = bdecode(data, i)
            out[k] = v
        return out, i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        start = colon + 1
        if start + n > len(data):
            raise BencodeError("truncated string")
        return data[start:start + n], start + n
    raise BencodeError("bad byte %r at %d" % (c, i))


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, str):
        return bencode(v.encode())
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    raise TypeError(type(v))


def info_span(torrent):
    """(start, end) of the raw `info` value in a .torrent's top-level dictionary."""
    if torrent[:1] != b"d":
        raise BencodeError("a .torrent is a dictionary")
    i = 1
    while torrent[i:i + 1] != b"e":
        k, i = bdecode(torrent, i)
        start = i
        _, i = bdecode(torrent, i)
        if k == b"info":
            return start, i
    raise BencodeError("no info dictionary")


def wrong_metadata(info, info_hash, size):
    """Metadata of the right size that does not hash to the info-hash."""
    if info is not None:
        d, _ = bdecode(info)
        pieces = d.get(b"pieces")
        if not isinstance(pieces, bytes) or not pieces:
            raise BencodeError("info dictionary without piece hashes")
        key = b"6:pieces%d:" % len(pieces)
        at = info.index(key) + len(key)
        bad = bytearray(info)
        bad[at] ^= 0xFF
        bad = bytes(bad)
    else:
        bad = hashlib.shake_256(b"peercache hostile peer " + info_hash).digest(size)
    assert len(bad) == size
    assert hashlib.sha1(bad).digest() != info_hash
    return bad


# ---- stats

class Stats:
    def __init__(self, path, **fixed):
        self.path = path
        self.lock = threading.Lock()
        self.d = dict(fixed, pid=os.getpid(), connections=0, handshakes=0,
                      metadata_requests=0, requests=[], data_sent=0, data_bytes_sent=0,
                      closed=0, closed_by_peer=0, final=False)
        self.write()

    def bump(self, **kw):
        with self.lock:
            for k, v in kw.items():
                if isinstance(self.d[k], list):
                    self.d[k].append(v)
                elif isinstance(self.d[k], bool):
                    self.d[k] = v
                else:
                    self.d[k] += v
            self._write()

    def write(self):
        with self.lock:
            self._write()

    def _write(self):
        if not self.path:
            return
        tmp = "%s.tmp.%d" % (self.path, threading.get_ident())
        with open(tmp, "w") as f:
            json.dump(self.d, f, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)


# ---- one connection

class PeerClosed(Exception):
    pass


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        try:
            b = sock.recv(n - len(buf))
        except (ConnectionResetError, ConnectionAbortedError) as e:
            raise PeerClosed("reset (%s)" % e)
        if not b:
            raise PeerClosed("EOF" if not buf else "EOF inside a message")
        buf += b
    return buf



def read_message(conn, n):
    """The next peer-wire message's body on connection `n`, keep-alives skipped; None when
    its length is over MAX_MESSAGE (logged: the caller closes)."""
    while True:
        (length,) = struct.unpack(">I", recv_exact(conn, 4))
        if length == 0:
            continue  # keep-alive
        if length > MAX_MESSAGE:
            log("conn %d: message of %d bytes, over %d; closing" % (n, length, MAX_MESSAGE))
            return None
        return recv_exact(conn, length)

def ext_message(ext_id, payload):
    return struct.pack(">IBB", 2 + len(payload), EXTENDED, ext_id) + payload


def serve(conn, n, peer, ctx):
    """One connection, until the peer closes it."""
    stats, args = ctx["stats"], ARGS
    t0 = time.monotonic()
    their_ut = None
    how = "error"
    try:
        hs = recv_exact(conn, HANDSHAKE_LEN)
        if hs[:20] != PSTR:
            log("conn %d from %s: not a BitTorrent handshake: %r; closing" % (n, peer, hs[:20]))
            return
        reserved, ih, pid = hs[20:28], hs[28:48], hs[48:68]
        if ih != ctx["info_hash"]:
            log("conn %d from %s: handshake for %s, not our %s; closing"
                % (n, peer, ih.hex(), ctx["info_hash"].hex()))
            return
        log("conn %d from %s: handshake, reserved %s (BEP 10 %s), peer id %r"
            % (n, peer, reserved.hex(), "yes" if reserved[5] & 0x10 else "no", pid))
        stats.bump(handshakes=1)
        if args.mode == "poison":
            stats.bump(peers={"conn": n, "peer": peer})
            poison(conn, n, ctx)
            return
        our_id = (b"-HP0001-" + args.mode.encode() + b"-" * 12)[:20]
        conn.sendall(PSTR + bytes([0, 0, 0, 0, 0, 0x10, 0, 0]) + ctx["info_hash"] + our_id)
        ext = bencode({"m": {"ut_metadata": OUR_UT_METADATA_ID},
                       "metadata_size": ctx["size"], "v": "hostile-" + args.mode})
        conn.sendall(ext_message(0, ext))
        log("conn %d: sent handshake and extended handshake (ut_metadata %d, metadata_size %d)"
            % (n, OUR_UT_METADATA_ID, ctx["size"]))
        while True:
            body = read_message(conn, n)
            if body is None:
                return
            length = len(body)
            mid = body[0]
            if mid != EXTENDED or len(body) < 2:
                log("conn %d: %s message (%d bytes), ignored"
                    % (n, MSG_NAMES.get(mid, "id %d" % mid), length))
                continue
            eid, payload = body[1], body[2:]
            if eid == 0:
                try:
                    d, _ = bdecode(payload)
                    m = d.get(b"m") if isinstance(d, dict) else None
                    u = m.get(b"ut_metadata") if isinstance(m, dict) else None
                    # BEP 10: id 0 disables the extension
                    their_ut = u if isinstance(u, int) and 0 < u < 256 else None
                except (BencodeError, ValueError) as e:
                    log("conn %d: extended handshake is not bencode (%s)" % (n, e))
                    continue
                log("conn %d: their extended handshake: %r (ut_metadata id %s)"
                    % (n, d, their_ut))
                continue
            if eid != OUR_UT_METADATA_ID:
                log("conn %d: extended message under id %d (not ours), ignored" % (n, eid))
                continue
            try:
                d, end = bdecode(payload)
                msg_type, piece = d[b"msg_type"], d.get(b"piece")
            except (BencodeError, ValueError, KeyError, TypeError) as e:
                log("conn %d: ut_metadata message is not a bencoded dict (%s)" % (n, e))
                continue
            if msg_type != 0:
                log("conn %d: ut_metadata msg_type %d piece %r, ignored" % (n, msg_type, piece))
                continue
            log("conn %d: ut_metadata request for piece %r" % (n, piece))
            stats.bump(metadata_requests=1, requests={"conn": n, "piece": piece})
            if args.mode == "silent":
                log("conn %d: not answering (silent)" % n)
                continue
            if their_ut is None:
                log("conn %d: the peer gave no ut_metadata id; cannot answer" % n)
                continue
            start = piece * METADATA_PIECE if isinstance(piece, int) else -1
            if not 0 <= start < ctx["size"]:
                log("conn %d: piece %r out of range; not answering" % (n, piece))
                continue
            data = ctx["wrong"][start:start + METADATA_PIECE]
            head = bencode({"msg_type": 1, "piece": piece, "total_size": ctx["size"]})
            conn.sendall(ext_message(their_ut, head + data))
            stats.bump(data_sent=1, data_bytes_sent=len(data))
            log("conn %d: sent WRONG data for piece %d (%d bytes, total_size %d)"
                % (n, piece, len(data), ctx["size"]))
    except PeerClosed as e:
        how = "peer"
        log("conn %d from %s: closed by the peer (%s) after %.2f s"
            % (n, peer, e, time.monotonic() - t0))
    except OSError as e:
        log("conn %d from %s: socket error %s after %.2f s" % (n, peer, e, time.monotonic() - t0))
    finally:
        try:
            conn.close()
        except OSError:
            pass
        if how == "peer":
            stats.bump(closed=1, closed_by_peer=1)
        else:
            stats.bump(closed=1)


def torrent_layout(info):
    """(piece_length, total_length, num_pieces) of a v1 info dictionary."""
    d, _ = bdecode(info)
    plen, pieces = d.get(b"piece length"), d.get(b"pieces")
    if not isinstance(plen, int) or plen <= 0 or not isinstance(pieces, bytes) \
            or not pieces or len(pieces) % 20:
        raise BencodeError("info dictionary without piece length / piece hashes")
    if isinstance(d.get(b"length"), int):
        total = d[b"length"]
    else:
        total = sum(f[b"length"] for f in d[b"files"])
    n = len(pieces) // 20
    if not (n - 1) * plen < total <= n * plen:
        raise BencodeError("%d pieces of %d bytes do not hold %d bytes" % (n, plen, total))
    return plen, total, n


def bitfield(num_pieces):
    """Every piece: num_pieces bits set, the spare bits of the last byte 0 (BEP 3)."""
    bits = bytearray(b"\xff" * ((num_pieces + 7) // 8))
    if num_pieces % 8:
        bits[-1] = (0xFF << (8 - num_pieces % 8)) & 0xFF
    return bytes(bits)


def poison(conn, n, ctx):
    """--mode poison, after the peer's handshake: claim every piece, unchoke, and answer
    every REQUEST with random bytes. Returns when the peer closes (PeerClosed)."""
    stats, (plen, total, npieces) = ctx["stats"], ctx["layout"]
    conn.sendall(PSTR + bytes(8) + ctx["info_hash"] + ctx["peer_id"])
    bf = bitfield(npieces)
    conn.sendall(struct.pack(">IB", 1 + len(bf), BITFIELD) + bf
                 + struct.pack(">IB", 1, UNCHOKE))
    log("conn %d: sent handshake (peer id %r), BITFIELD (all %d pieces) and UNCHOKE"
        % (n, ctx["peer_id"], npieces))
    while True:
        body = read_message(conn, n)
        if body is None:
            return
        length = len(body)
        mid = body[0]
        if mid == CANCEL:
            stats.bump(cancels=1)
        if mid != REQUEST:
            log("conn %d: %s message (%d bytes), ignored"
                % (n, MSG_NAMES.get(mid, "id %d" % mid), length))
            continue
        if length != 13:
            log("conn %d: REQUEST of %d bytes (not 13), not answered" % (n, length))
            stats.bump(bad_requests=1)
            continue
        index, begin, blen = struct.unpack(">III", body[1:])
        stats.bump(piece_requests=1)
        psize = min(plen, total - index * plen) if index < npieces else 0
        if not (index < npieces and 0 < blen <= MAX_BLOCK and begin + blen <= psize):
            log("conn %d: REQUEST index %d begin %d length %d outside the torrent, not answered"
                % (n, index, begin, blen))
            stats.bump(bad_requests=1)
            continue
        if ARGS.piece_delay > 0:
            time.sleep(ARGS.piece_delay)
        conn.sendall(struct.pack(">IBII", 9 + blen, PIECE, index, begin) + os.urandom(blen))
        stats.bump(pieces_sent=1, piece_bytes_sent=blen,
                   sent={"conn": n, "index": index, "begin": begin, "length": blen})
        log("conn %d: sent RANDOM bytes for piece %d begin %d length %d"
            % (n, index, begin, blen))


def announce(url, info_hash, peer_id, listen, deadline_s=60.0):
    """Tell the HTTP tracker at url that this peer (the --listen address and port) has
    everything; retried every 0.5 s until it answers. Returns the tracker's interval."""
    import http.client
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        raise SystemExit("--announce: an http:// URL is needed, got %r" % url)
    q = urllib.parse.urlencode({
        "info_hash": info_hash, "peer_id": peer_id, "port": listen[1], "uploaded": 0,
        "downloaded": 0, "left": 0, "event": "started", "compact": 1, "numwant": 0,
    })
    path = (u.path or "/") + ("&" if u.query else "?") + (u.query + "&" if u.query else "") + q
    end = time.monotonic() + deadline_s
    while True:
        why = None
        try:
            c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5,
                                           source_address=(listen[0], 0))
            c.request("GET", path, headers={"User-Agent": "peercache-lab-hostile/poison"})
            r = c.getresponse()
            body = r.read()
            c.close()
            d, _ = bdecode(body)
            if r.status != 200 or not isinstance(d, dict):
                why = "HTTP %d: %r" % (r.status, body[:200])
            elif b"failure reason" in d:
                why = "failure reason %r" % d[b"failure reason"]
            else:
                log("announced to %s from %s:%d: %r" % (url, listen[0], listen[1], d))
                return d.get(b"interval")
        except (OSError, BencodeError, ValueError, http.client.HTTPException) as e:
            why = "%s: %s" % (type(e).__name__, e)
        if time.monotonic() >= end or STOP.is_set():
            raise SystemExit("announce to %s failed: %s" % (url, why))
        log("announce to %s failed (%s); retrying" % (url, why))
        time.sleep(0.5)


def parse_listen(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("--listen wants IP:PORT, got %r" % s)
    return host.strip("[]"), int(port)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True, type=parse_listen, help="IP:PORT (port 0: any)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--torrent", help=".torrent file: its info-hash and info dictionary")
    src.add_argument("--info-hash", help="40 hex digits (v1)")
    ap.add_argument("--metadata-size", type=int,
                    help="metadata_size to advertise (default with --torrent: the real one)")
    ap.add_argument("--mode", choices=["wrong", "silent", "poison"], required=True)
    ap.add_argument("--announce", metavar="URL",
                    help="poison: announce to this HTTP tracker first (from the --listen address)")
    ap.add_argument("--piece-delay", type=float, default=0.0, metavar="S",
                    help="poison: seconds before each PIECE answer (default 0)")
    ap.add_argument("--stats-file")
    args = ap.parse_args()
    ARGS = args

    info = None
    if args.torrent:
        with open(args.torrent, "rb") as f:
            t = f.read()
        a, b = info_span(t)
        info = t[a:b]
        info_hash = hashlib.sha1(info).digest()
    else:
        info_hash = bytes.fromhex(args.info_hash)
        if len(info_hash) != 20:
            ap.error("--info-hash wants 40 hex digits")
    size = args.metadata_size if args.metadata_size is not None else (
        len(info) if info is not None else None)
    if size is None or size <= 0:
        ap.error("--metadata-size N (> 0) is needed without --torrent")
    if args.mode == "poison" and info is None:
        ap.error("--mode poison needs --torrent (its pieces)")
    if (args.announce or args.piece_delay) and args.mode != "poison":
        ap.error("--announce and --piece-delay are for --mode poison")
    if not 0 <= args.piece_delay <= 60:
        ap.error("--piece-delay wants 0..60 seconds")
    layout = torrent_layout(info) if args.mode == "poison" else None
    if info is not None and size != len(info) and args.mode == "wrong":
        ap.error("--metadata-size differs from the torrent's info dictionary (%d)" % len(info))
    wrong = wrong_metadata(info, info_hash, size) if args.mode == "wrong" else None

    def on_signal(_sig, _frm):
        STOP.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    host, port = args.listen
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    lsock = socket.socket(fam, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(64)
    lsock.settimeout(0.2)
    bound = lsock.getsockname()
    listen = ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % (bound[0], bound[1])
    extra = {}
    peer_id = None
    if args.mode == "poison":
        peer_id = ("-HP0001-poison-" + os.urandom(3).hex()[:5]).encode()
        extra = dict(announced=False, announce_interval=None, piece_requests=0,
                     pieces_sent=0, piece_bytes_sent=0, sent=[], bad_requests=0, cancels=0,
                     peers=[], peer_id=peer_id.decode(), num_pieces=layout[2],
                     piece_length=layout[0], total_length=layout[1])
        if args.announce:
            # the tracker lists us before the stats file says we are listening
            extra["announce_interval"] = announce(args.announce, info_hash, peer_id,
                                                  (bound[0], bound[1]))
            extra["announced"] = True
    stats = Stats(args.stats_file, mode=args.mode, listen=listen,
                  info_hash=info_hash.hex(), metadata_size=size, **extra)
    ctx = {"stats": stats, "info_hash": info_hash, "size": size, "wrong": wrong,
           "layout": layout, "peer_id": peer_id}
    log("listening on %s for swarm %s (metadata_size %d)" % (listen, info_hash.hex(), size))

    n = 0
    while not STOP.is_set():
        try:
            conn, addr = lsock.accept()
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        except OSError as e:
            if STOP.is_set():
                break
            log("accept failed: %s" % e)
            time.sleep(0.05)
            continue
        n += 1
        conn.settimeout(None)
        peer = "%s:%d" % (addr[0], addr[1])
        log("conn %d from %s: accepted" % (n, peer))
        stats.bump(connections=1)
        threading.Thread(target=serve, args=(conn, n, peer, ctx), daemon=True).start()
    lsock.close()
    stats.bump(final=True)
    log("stopping: %s" % json.dumps({k: v for k, v in stats.d.items()
                                     if k not in ("requests", "sent")}))


if __name__ == "__main__":
    main()
