#!/usr/bin/env bash
# Seed the fuzz corpora from real captures.
#
#   fuzz/seed_corpus.sh [PCAP ...]
#
# Without arguments it reads pcaps/*.pcap (the lab captures) and
# /work/shared/pcaps-public/*.{pcap,pcapng,cap} (public BitTorrent captures; set PUBLIC_PCAPS
# to another directory), plus the .torrent files next to them. Every file is first rewritten
# as classic pcap with `tshark -F pcap` (pcapng, netmon, ...), then a small Python reader
# (standard library only) cuts it into the input format of each target, in
# fuzz/corpus/<target>/ (gitignored). Files are named by content hash, so re-running only
# adds what is new. Needs: tshark (or editcap), python3.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
public="${PUBLIC_PCAPS:-/work/shared/pcaps-public}"
out="$here/corpus"

if [ "$#" -gt 0 ]; then
    inputs=("$@")
else
    shopt -s nullglob
    inputs=("$root"/pcaps/*.pcap "$public"/*.pcap "$public"/*.pcapng "$public"/*.cap)
fi
torrents=()
shopt -s nullglob
torrents=("$root"/pcaps/*.torrent "$public"/*.torrent "$public"/*/*.torrent)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

converted=()
i=0
for f in "${inputs[@]}"; do
    i=$((i + 1))
    dst="$tmp/$i-$(basename "$f").pcap"
    if tshark -r "$f" -F pcap -w "$dst" >/dev/null 2>&1 || editcap -F pcap "$f" "$dst" >/dev/null 2>&1; then
        converted+=("$dst")
    else
        echo "skip (unreadable): $f" >&2
    fi
done

mkdir -p "$out"
python3 - "$out" "${#converted[@]}" "${converted[@]}" "${torrents[@]}" <<'PY'
import hashlib, os, struct, sys

out = sys.argv[1]
n = int(sys.argv[2])
pcaps = sys.argv[3:3 + n]
torrents = sys.argv[3 + n:]
TARGETS = ["link_decode", "bencode", "peerwire_messages", "peerwire_stream",
           "tcp_reassembly", "engine", "utp_header", "utp_reassembly", "metainfo", "splice",
           "classic_pcap", "tcp_frame", "utp_splice", "magnet", "http_range",
           "web_seed_path"]
for t in TARGETS:
    os.makedirs(os.path.join(out, t), exist_ok=True)
counts = {t: 0 for t in TARGETS}
seen = set()
PROTOCOL = b"\x13BitTorrent protocol"

def emit(target, data, limit=256 << 10):
    data = bytes(data[:limit])
    h = hashlib.sha1(data).hexdigest()
    if (target, h) in seen:
        return
    seen.add((target, h))
    path = os.path.join(out, target, h)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    counts[target] += 1

# ---- classic pcap reader ----
def read_pcap(path):
    with open(path, "rb") as f:
        buf = f.read()
    magic = buf[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return None, []
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", buf[20:24])[0] & 0x0FFFFFFF
    frames, p = [], 24
    while p + 16 <= len(buf):
        sec, frac, incl, orig = struct.unpack(e + "IIII", buf[p:p + 16])
        p += 16
        data = buf[p:p + incl]
        p += incl
        usec = frac // 1000 if nano else frac
        frames.append((sec * 1_000_000 + usec, data, orig))
    return linktype, frames

# ---- minimal Ethernet / IP / TCP / UDP dissection ----
def dissect(frame):
    """-> dict with l3 offset, ethertype, proto, endpoints, tcp fields and payload, or None."""
    if len(frame) < 14:
        return None
    et, off = struct.unpack(">H", frame[12:14])[0], 14
    while et in (0x8100, 0x88A8) and len(frame) >= off + 4:
        et, off = struct.unpack(">H", frame[off + 2:off + 4])[0], off + 4
    ip = frame[off:]
    d = {"l3": off, "ethertype": et}
    if et == 0x0800 and len(ip) >= 20 and ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        frag = struct.unpack(">H", ip[6:8])[0]
        d.update(proto=ip[9], src=ip[12:16], dst=ip[16:20], frag=(frag & 0x3FFF) != 0)
        l4 = ip[ihl:max(ihl, min(total, len(ip)))]
    elif et == 0x86DD and len(ip) >= 40 and ip[0] >> 4 == 6:
        plen = struct.unpack(">H", ip[4:6])[0]
        d.update(proto=ip[6], src=ip[8:24], dst=ip[24:40], frag=ip[6] == 44)
        l4 = ip[40:40 + plen]
    else:
        return d
    if d["frag"]:
        return d
    if d["proto"] == 6 and len(l4) >= 20:
        sport, dport, seq, ack, doff_flags = struct.unpack(">HHIIH", l4[:14])
        doff = (doff_flags >> 12) * 4
        d.update(sport=sport, dport=dport, seq=seq, ack=ack, flags=doff_flags & 0x3F,
                 payload=l4[doff:])
    elif d["proto"] == 17 and len(l4) >= 8:
        sport, dport = struct.unpack(">HH", l4[:4])
        d.update(sport=sport, dport=dport, payload=l4[8:])
    return d

FIN, SYN, RST, ACK = 1, 2, 4, 16

def link_variants(frame, d):
    """The same IP packet under the other link types (selector byte of link_decode)."""
    ip = frame[d["l3"]:]
    et = d["ethertype"]
    sll = struct.pack(">HHH", 0, 1, 6) + frame[6:12] + b"\0\0" + struct.pack(">H", et)
    sll2 = struct.pack(">HHIHBB", et, 0, 2, 1, 0, 6) + frame[6:12] + b"\0\0"
    af = 2 if et == 0x0800 else 30
    return [(1, sll + ip), (2, sll2 + ip), (3, ip), (4, struct.pack("<I", af) + ip)]

# ---- per-flow bookkeeping ----
def flow_key(d):
    a, b = (d["src"], d["sport"]), (d["dst"], d["dport"])
    return (d["proto"],) + ((a, b) if a <= b else (b, a)), (0 if a <= b else 1)

def reassemble(segs):
    """segs: [(seq, syn, payload)] of one direction, in capture order -> contiguous bytes
    from the first byte (stops at the first hole)."""
    isn = None
    for seq, syn, _ in segs:
        if syn:
            isn = (seq + 1) & 0xFFFFFFFF
            break
    if isn is None:
        data_segs = [s for s in segs if s[2]]
        if not data_segs:
            return b"", False
        isn = data_segs[0][0]
    pieces = {}
    for seq, syn, pl in segs:
        if not pl:
            continue
        if syn:
            seq = (seq + 1) & 0xFFFFFFFF
        off = (seq - isn) & 0xFFFFFFFF
        if off >= 1 << 31:
            continue
        if off not in pieces or len(pl) > len(pieces[off]):
            pieces[off] = pl
    out, pos = bytearray(), 0
    for off in sorted(pieces):
        pl = pieces[off]
        if off > pos:
            break
        if off + len(pl) > pos:
            out += pl[pos - off:]
            pos = off + len(pl)
    return bytes(out), any(s[1] for s in segs)

def messages(stream):
    """Cut a peer-wire stream (from its first byte) into framed messages."""
    p, msgs = 0, []
    if stream.startswith(PROTOCOL):
        msgs.append(stream[:68])
        p = 68
    while p + 4 <= len(stream):
        ln = struct.unpack(">I", stream[p:p + 4])[0]
        if ln > (1 << 21) or p + 4 + ln > len(stream):
            break
        msgs.append(stream[p:p + 4 + ln])
        p += 4 + ln
    return msgs

def dt_byte(prev, ts):
    if ts < prev:
        return 0xF0 + min(15, (prev - ts) // 1_000_000)
    ms = (ts - prev) / 1000
    return min(0xEF, int(round(ms ** 0.5)))

def engine_seed(flags, frames):
    if not frames:
        return None
    out = bytearray([flags])
    out += struct.pack(">I", (frames[0][0] // 1_000_000) & 0xFFFFFFFF)
    prev = frames[0][0] // 1_000_000 * 1_000_000
    for ts, data, orig in frames:
        link = 0x80 if orig > len(data) else 0
        out += struct.pack(">HBB", len(data), link, dt_byte(prev, ts)) + data
        prev = ts
    return out

def splice_seed(flags, frames):
    """splice target: Ethernet frames, the port chosen by the IPv4 source (198.18/15 is the
    subscriber side, as in the lab), timers after every 8th frame."""
    if not frames:
        return None
    out = bytearray([flags])
    prev = frames[0][0]
    for n, (ts, data, orig) in enumerate(frames):
        upstream = not (len(data) > 28 and data[26] == 198 and data[27] == 18)
        ctl = (1 if upstream else 0) | (2 if n % 8 == 7 else 0)
        out += struct.pack(">HBB", len(data), ctl, dt_byte(prev, ts) if ts >= prev else 0) + data
        prev = ts
    return out

def utp_header(b):
    """(type, conn_id, seq, ack, payload length) if `b` passes wire::utp's checks."""
    if len(b) < 20 or b[0] & 15 != 1 or b[0] >> 4 > 4:
        return None
    ext, at, n = b[1], 20, 0
    while ext:
        n += 1
        if n > 4 or ext > 4 or at + 2 > len(b):
            return None
        nxt, ln = b[at], b[at + 1]
        if at + 2 + ln > len(b) or (ext == 1 and ln == 0):
            return None
        ext, at = nxt, at + 2 + ln
    t = b[0] >> 4
    if at < len(b) and t in (2, 3, 4):
        return None
    cid, seq, ack = struct.unpack(">H", b[2:4])[0], *struct.unpack(">HH", b[16:20])
    return (t, cid, seq, ack, len(b) - at)

def utp_ops(fl, pkts):
    """utp_reassembly input: data / ack / start_at operations, direction 0 = first sender."""
    out = bytearray([0])
    first = None
    for i, (t, cid, seq, ack, plen) in pkts:
        d = fl["udp_dir"][i]
        if first is None:
            first = d
        d = 0 if d == first else 1
        if t == 4:  # SYN: the initiator's data starts at seq + 1
            out += bytes([(6 << 1) | d]) + struct.pack(">H", (seq + 1) & 0xFFFF)
            continue
        if t == 3:
            continue
        out += bytes([(4 << 1) | (1 - d)]) + struct.pack(">H", ack)
        if t == 0:
            out += bytes([d]) + struct.pack(">HH", seq, min(plen, 6000))
    return bytes(out)

def utp_splice_seed(fl, pkts, cfg):
    """utp_splice target: the flow's uTP packets after both handshakes (the target opens
    the connection itself), as operations: direction, type, in-order numbers (retransmits
    as negative seq offsets), the real window, the real selective ack (when the packet had
    one), REQUESTs parsed from S's payloads, R's DATA as its PIECE stream by length, other
    payloads as fuzz bytes, and the time between packets."""
    syn = [(i, h) for i, h in pkts if h[0] == 4]
    if not syn:
        return None
    si, (_, x, s0, _, _) = syn[0]
    s_dir = fl["udp_dir"][si]
    r0 = None
    for i, (t, cid, seq, ack, plen) in pkts:
        if fl["udp_dir"][i] != s_dir and t == 2 and ack == s0:
            r0 = seq
            break
    if r0 is None:
        return None
    out = bytearray([cfg]) + struct.pack(">HHH", x, s0, r0)
    hs = {0: False, 1: False}  # both handshakes passed: the target's prologue covers them
    nxt = {0: (s0 + 2) & 0xFFFF, 1: (r0 + 1) & 0xFFFF}
    prev_ts, nops = None, 0
    for i, (t, cid, seq, ack, plen) in pkts:
        from_r = 0 if fl["udp_dir"][i] == s_dir else 1
        pl = fl["udp"][i]
        body = pl[len(pl) - plen:] if plen else b""
        ts = fl["frames"][i][0]
        if not (hs[0] and hs[1]):
            if t == 0 and body.startswith(PROTOCOL):
                hs[from_r] = True
            continue
        kind = {0: 0, 2: 1, 1: 2, 3: 3, 4: 4}.get(t)
        if kind is None:
            continue
        dt = 0 if prev_ts is None else min(255, int(((max(0, ts - prev_ts)) / 100) ** 0.5))
        prev_ts = ts
        a = 0
        if t in (0, 1):
            d = (seq - nxt[from_r] + 0x8000) % 0x10000 - 0x8000
            if d >= 0:
                nxt[from_r] = (seq + 1) & 0xFFFF
            elif d >= -16:
                a = ((d << 3) | 1) & 0xFF
        wnd = struct.unpack(">I", pl[12:16])[0]
        ctl = from_r | (kind << 1) | 0x80
        extra = bytes([min(255, int((wnd / 64) ** 0.5))])
        if pl[1] == 1:  # a selective ack first: the receiver's real one, its length
            ctl |= 0x10
            extra += bytes([0x80 | (min(8, pl[21]) - 1 if pl[21] else 0)])
        payload = b""
        if t == 0:
            reqs = []
            if not from_r:
                p = 0
                while p + 17 <= len(body) and body[p:p + 5] == b"\0\0\0\x0d\x06":
                    idx, begin = struct.unpack(">II", body[p + 5:p + 13])
                    reqs.append((idx & 0xFF, (begin // 16384) & 3))
                    p += 17
            if reqs:
                for k in range(0, len(reqs), 4):
                    part = reqs[k:k + 4]
                    c = ctl if k == 0 else (ctl & 0x81)
                    e = extra if k == 0 else extra[:1]
                    out += bytes([c | (1 << 5), a, 0, dt if k == 0 else 0]) + e
                    out += bytes([len(part) - 1]) + b"".join(bytes(r) for r in part)
                    nops += 1
                continue
            if from_r:
                ctl |= 3 << 5
                payload = bytes([min(255, max(1, plen // 8))])
            else:
                payload = bytes([min(255, len(body))]) + body[:255]
        out += bytes([ctl, a, 0, dt]) + extra + payload
        nops += 1
        if nops >= 300:
            break
    return bytes(out) if nops else None

for path in pcaps:
    # classic_pcap: the file itself (converted to classic pcap), its first 64 KiB.
    with open(path, "rb") as f:
        emit("classic_pcap", f.read(64 << 10))
    linktype, frames = read_pcap(path)
    if linktype != 1 or not frames:
        continue  # all our captures are Ethernet; others would need their own dissector
    flows = {}
    for idx, (ts, data, orig) in enumerate(frames):
        d = dissect(data)
        # link_decode: a sample of raw frames, and the same packets under other link types.
        if idx < 30 or idx % max(1, len(frames) // 40) == 0:
            emit("link_decode", bytes([0, 0, 6]) + data)
            if d and "proto" in d and idx % 3 == 0:
                for sel, v in link_variants(data, d):
                    emit("link_decode", bytes([sel, 0, d["proto"]]) + v)
        if not d or "payload" not in d:
            continue
        # tcp_frame: TCP frames, most with SACK or timestamps (the options a rewrite maps),
        # under control bytes from the frame's own numbers: seq/ack/window moved, SACK
        # edges shifted (or collapsed, every 4th), payload offset and cut point.
        if d["proto"] == 6 and (idx < 60 or idx % max(1, len(frames) // 60) == 0):
            delta = 0xFFFFFFFF if idx % 4 == 3 else (idx * 7919) & 0xFFFFFFFF
            ctl = struct.pack(">IIHIBB", (d["seq"] + 1000) & 0xFFFFFFFF,
                              (d["ack"] + 7) & 0xFFFFFFFF, idx & 0xFFFF, delta,
                              idx & 0xFF, (idx * 31) & 0xFF)
            emit("tcp_frame", ctl + data)
        key, dr = flow_key(d)
        fl = flows.setdefault(key, {"frames": [], "segs": ([], []), "udp": [], "udp_dir": []})
        fl["frames"].append((ts, data, orig))
        if d["proto"] == 6:
            fl["segs"][dr].append((d["seq"], bool(d["flags"] & SYN), d["payload"],
                                   d["ack"], d["flags"]))
        else:
            fl["udp"].append(d["payload"])
            fl["udp_dir"].append(dr)
            pl = d["payload"]
            if pl[:1] == b"d":
                emit("bencode", pl)  # DHT (KRPC) messages are bencoded dictionaries

    # uTP (BEP 29): utp_header gets the UDP payloads that pass the header checks;
    # utp_reassembly each uTP flow's packets as its operations; engine the flow's frames.
    for key, fl in flows.items():
        if key[0] != 17:
            continue
        utp = [(i, h) for i, pl in enumerate(fl["udp"]) for h in [utp_header(pl)] if h]
        if not utp:
            continue
        for i, h in utp[:64] + utp[64::max(1, len(utp) // 64)]:
            emit("utp_header", fl["udp"][i][:512])
        if len(utp) < 3:
            continue
        fr = fl["frames"]
        emit("engine", engine_seed(0x04, fr[:40]))
        emit("engine", engine_seed(0x05, fr[:40]))
        if len(fr) > 80:
            mid = len(fr) // 2
            emit("engine", engine_seed(0x04, fr[mid:mid + 40]))
        for start in (0, len(utp) // 2):
            emit("utp_reassembly", utp_ops(fl, utp[start:start + 300]))
        # splice: the uTP connection's frames as they came (the splice follows uTP too).
        emit("splice", splice_seed(0, fr[:200]))
        # utp_splice: the connection from after its handshakes (IPv4, IPv6, tiny caps).
        for cfg in (0, 1, 2):
            seed = utp_splice_seed(fl, utp, cfg)
            if seed:
                emit("utp_splice", seed)

    # http_range and web_seed_path: HTTP requests in the captures (tracker announces, and
    # the web-seed clients of pcaps/webseed-clients.pcap): each Range header under a few
    # representation lengths and caps, each request path (without its query), also with
    # the /ws/{info-hash}/ prefix taken off as the web seed does.
    for key, fl in flows.items():
        if key[0] != 6:
            continue
        for dr in (0, 1):
            stream, _ = reassemble([x[:3] for x in fl["segs"][dr]])
            for head in stream.split(b"\r\n\r\n"):
                line = head.split(b"\r\n", 1)[0]
                parts = line.split(b" ")
                if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD") or not parts[2].startswith(b"HTTP/1."):
                    continue
                path = parts[1].split(b"?", 1)[0].lstrip(b"/")
                emit("web_seed_path", path)
                if path.startswith(b"ws/") and path.count(b"/") >= 2:
                    emit("web_seed_path", path.split(b"/", 2)[2])
                for h in head.split(b"\r\n")[1:]:
                    if h.lower().startswith(b"range:"):
                        value = h.split(b":", 1)[1].strip()
                        for length, cap in ((1 << 20, 0x00), (16384, 0x40), (1, 0xC0), (7 << 30, 0x80)):
                            emit("http_range", struct.pack("<Q", length) + bytes([cap]) + value)

    # engine: the first frames of the capture, mixed flows (UDP/DHT, ARP, ...).
    head = frames[:40]
    emit("engine", engine_seed(0x04, head))
    emit("engine", engine_seed(0x05, head))

    def bt_score(fl):
        s = b"".join(x[2] for x in fl["segs"][0][:4] + fl["segs"][1][:4])
        return (PROTOCOL in s, sum(len(x[2]) for x in fl["segs"][0] + fl["segs"][1]))

    tcp_flows = [f for k, f in flows.items() if k[0] == 6]
    tcp_flows.sort(key=bt_score, reverse=True)
    for rank, fl in enumerate(tcp_flows[:8]):
        fr = fl["frames"]
        # engine: one connection from its start, and a window from its middle (mid-stream
        # pick-up); tiny caps on every other seed.
        emit("engine", engine_seed(0x04 | (rank & 1), fr[:40]))
        emit("splice", splice_seed(rank & 1, fr[:200]))
        if len(fr) > 80:
            mid = len(fr) // 2
            emit("engine", engine_seed(0x06 | (rank & 1), fr[mid:mid + 40]))
        # HTTP bodies (tracker responses) are bencoded.
        for segs in fl["segs"]:
            for s in segs:
                pl = s[2]
                if b"\r\n\r\nd" in pl:
                    emit("bencode", pl.split(b"\r\n\r\n", 1)[1])
        # tcp_reassembly: the connection's own segment / ack sequence.
        isn = []
        for segs in fl["segs"]:
            syn = [s[0] for s in segs if s[4] & SYN]
            isn.append(syn[0] if syn else (segs[0][0] if segs else 0))
        ops = bytearray([0]) + struct.pack(">II", isn[0], isn[1])
        nops = 0
        order = sorted(
            [(i, dr, s) for dr in (0, 1) for i, s in enumerate(fl["segs"][dr])],
            key=lambda x: x[0])
        # Interleave the directions roughly as captured.
        merged = []
        ptr = [0, 0]
        for ts, data, orig in fr:
            d = dissect(data)
            if not d or d.get("proto") != 6:
                continue
            _, dr = flow_key(d)
            if ptr[dr] < len(fl["segs"][dr]):
                merged.append((dr, fl["segs"][dr][ptr[dr]]))
                ptr[dr] += 1
        for dr, (seq, syn, pl, ack, flags) in merged[:200]:
            if flags & ACK:
                ops += bytes([(1 - dr) | (4 << 1)]) + struct.pack(">I", (ack - isn[1 - dr]) & 0xFFFFFFFF)
            sf = (1 if flags & SYN else 0) | (2 if flags & FIN else 0)
            ops += bytes([dr, sf]) + struct.pack(">IH", (seq - isn[dr]) & 0xFFFFFFFF, min(len(pl), 0xFFFF))
            nops += 1
        if nops:
            emit("tcp_reassembly", ops)
        # Byte streams: peerwire_stream, peerwire_messages, bencode.
        for dr in (0, 1):
            segs = [(s[0], s[1], s[2]) for s in fl["segs"][dr]]
            stream, syn_seen = reassemble(segs)
            if not stream:
                continue
            is_bt = stream.startswith(PROTOCOL)
            mode = 1 if (syn_seen and is_bt) else 0
            emit("peerwire_stream", bytes([mode, 0]) + stream[:48 << 10])
            emit("peerwire_stream", bytes([mode | 2, 0]) + stream[:16 << 10])
            # Chopped into small pieces with a gap in the middle.
            ctl = bytes([0x05, 0x3F, 0x44, 0x81, 0xC3, 0x10, 0x82])
            emit("peerwire_stream", bytes([mode, len(ctl)]) + ctl + stream[:24 << 10])
            if len(stream) > 64 << 10:
                mid = len(stream) // 2
                emit("peerwire_stream", bytes([0, 0]) + stream[mid:mid + (32 << 10)])
            for s in segs[:60]:
                if s[2]:
                    emit("peerwire_messages", s[2][:4096])
            kinds = {}
            for m in messages(stream):
                if m.startswith(PROTOCOL):
                    emit("peerwire_messages", m)
                    continue
                if len(m) < 5:
                    continue
                mid_ = m[4]
                kinds[mid_] = kinds.get(mid_, 0) + 1
                if kinds[mid_] <= 3:
                    emit("peerwire_messages", m[:4096])
                    emit("peerwire_messages", m[4:4096])  # `[id][body]`
                if mid_ == 20 and len(m) > 6:
                    emit("bencode", m[6:])  # extended payload after the extended id

# Synthetic uTP records for the engine (cfg bit 4, link 0x40; see fuzz_targets/engine.rs):
# SYN, STATE answering it, handshakes both ways, DATA with reordering, FIN both ways.
def rec(ctl, sd, ad, body=b"", pair=0):
    r = bytes([ctl, pair, sd & 0xFF, ad & 0xFF]) + body
    return struct.pack(">HBB", len(r), 0x40, 3) + r
bitfield = struct.pack(">IB", 2, 5) + b"\xff"
synth = (rec(4 << 1, 0, 0) + rec(1 | 2 << 1, 0, 0) + rec(5 << 1, 1, 0)
         + rec(1 | 5 << 1, 1, 0) + rec(0, 2, 0, bitfield) + rec(0, -1, 0, struct.pack(">IB", 1, 2))
         + rec(1 | 2 << 1, 0, 0) + rec(1 << 1, 2, 0) + rec(1 | 1 << 1, 1, 0))
for flags in (0x14, 0x15, 0x16):
    emit("engine", bytes([flags]) + struct.pack(">I", 1_700_000_000) + synth)

for t in torrents:
    with open(t, "rb") as f:
        data = f.read()
    emit("bencode", data)
    emit("metainfo", data)
    # The info dictionary alone (what ut_metadata carries) and a ut_metadata data message.
    i = data.find(b"4:infod")
    if i >= 0:
        info = data[i + 6:-1]
        emit("bencode", info)
        emit("metainfo", info)
        hdr = b"d8:msg_typei1e5:piecei0e10:total_sizei%dee" % len(info)
        emit("bencode", hdr + info[:16384])
        # magnet: the torrent's own link as clients write it (hex and base32 info-hash, its
        # name, a tracker, peers in both families), and cut short.
        import base64, urllib.parse
        ih = hashlib.sha1(info).digest()
        name = urllib.parse.quote(os.path.basename(t).rsplit(".", 1)[0])
        for xt in (ih.hex(), base64.b32encode(ih).decode()):
            link = ("magnet:?xt=urn:btih:%s&dn=%s&tr=http%%3A%%2F%%2F198.19.0.1%%3A6969%%2Fannounce"
                    "&x.pe=198.19.0.2:6881&x.pe=%%5B2001%%3Adb8%%3A%%3A2%%5D%%3A51413" % (xt, name))
            emit("magnet", link.encode())
            emit("magnet", link[: len(link) // 2].encode())

for t in TARGETS:
    print(f"{t}: {counts[t]} seeds -> {os.path.join(out, t)}")
PY
