#!/usr/bin/python3
"""TCP and uTP payload bytes in a capture, per direction of each connection (no tshark
needed).

usage: tcp_bytes.py PCAP [--src IP] [--sport PORT] [--dst-net CIDR]

Reads a classic libpcap file (tcpdump -w; Ethernet, optionally 802.1Q) and counts, for
every TCP segment whose source is --src (and source port --sport, and destination inside
--dst-net, when given), its TCP payload length taken from the IP header (ip total length
- IP header - TCP header), so a capture made with a small snap length (tcpdump -s 160:
headers only) counts the same as a full one. Prints a JSON object:

  payload_bytes      sum of the payload of every matching segment, retransmissions
                     included: what the sender put on the wire
  new_payload_bytes  the same without retransmitted bytes: per direction of a
                     connection, the size of the union of the sequence ranges the
                     segments carried (each byte of the stream counts once, however
                     often it was sent; a capture may also list segments out of order)
  segments, payload_segments, flows ([{src, sport, dst, dport, ...}, ...]),
  frames (all frames in the file), truncated_frames (captured length shorter than the
  headers: not counted, should be 0)

The same filter applied to UDP datagrams that parse as uTP (BEP 29: version 1, type
ST_DATA..ST_SYN, a well-formed extension chain) adds the uTP counts. The uTP payload is
what follows the uTP header and its extensions (UDP length - 8 - 20 - extensions): the
peer-wire bytes, as a TCP segment's payload is.

  utp_packets           matching uTP packets (any type)
  utp_data_packets      of which ST_DATA with a payload
  utp_payload_bytes     payload of every matching ST_DATA packet, resent ones included
  utp_new_payload_bytes the same counting each seq_nr of a connection direction
                        (source, destination, connection id) once: uTP numbers packets,
                        not bytes, so a resent packet repeats its seq_nr
  utp_flows             [{src, sport, dst, dport, conn_id, packets, payload_bytes,
                        new_payload_bytes}, ...]
  udp_other_datagrams   matching UDP datagrams that are not uTP (DHT, ...; not counted)
The TCP keys above keep their meaning (TCP only); payload_bytes + utp_payload_bytes is
everything the source sent on both transports.

  handshakes  {"tcp": {...}, "utp": {...}}: per transport, how many matching
              connection directions began (their first payload seen) with the plain
              BitTorrent handshake ("bittorrent": 0x13 "BitTorrent protocol") or with
              anything else ("other": on a BitTorrent connection an MSE/PE key
              exchange, whose later crypto_select, RC4 or plaintext, is encrypted and
              not visible here; or another protocol, e.g. HTTP), or whose first payload
              bytes the snap length cut ("unknown"). Each flow says it too ("start").
"""

import argparse
import ipaddress
import json
import struct
import sys


def frames(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            return
        magic = struct.unpack("<I", hdr[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            end = "<"
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            end = ">"
        else:
            raise SystemExit("%s: not a classic pcap file (magic %08x)" % (path, magic))
        linktype = struct.unpack(end + "I", hdr[20:24])[0]
        if linktype != 1:
            raise SystemExit("%s: link type %d, expected Ethernet (1)" % (path, linktype))
        rec = struct.Struct(end + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            _ts, _tu, incl, _orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield data


BT_HANDSHAKE = b"\x13BitTorrent protocol"


def start_kind(payload):
    """How a connection direction began, from its first payload bytes (maybe cut)."""
    n = min(len(payload), len(BT_HANDSHAKE))
    if n == 0:
        return "unknown"
    if payload[:n] != BT_HANDSHAKE[:n]:
        return "other"
    return "bittorrent" if n == len(BT_HANDSHAKE) else "unknown"


def utp_packet(d, t, ip_payload_len):
    """(sport, dport, None | (type, conn_id, seq_nr, payload_len)) for the UDP datagram at
    offset t of frame d; the inner None: not uTP. None: headers cut by the snap length."""
    if len(d) < t + 8:
        return None
    sport, dport, ulen = struct.unpack("!HHH", d[t:t + 6])
    ulen = min(ulen, ip_payload_len)
    u = t + 8
    end = t + ulen
    if ulen < 8 + 20:
        return sport, dport, None
    if len(d) < u + 20:
        return None
    typ, ver = d[u] >> 4, d[u] & 0x0F
    if ver != 1 or typ > 4:
        return sport, dport, None
    ext = d[u + 1]
    conn_id = struct.unpack("!H", d[u + 2:u + 4])[0]
    seq = struct.unpack("!H", d[u + 16:u + 18])[0]
    p = u + 20
    while ext != 0:
        if p + 2 > end:
            return sport, dport, None   # chain runs past the datagram: not uTP
        if len(d) < p + 2:
            return None
        ext, elen = d[p], d[p + 1]
        p += 2 + elen
        if p > end:
            return sport, dport, None
    return sport, dport, (typ, conn_id, seq, end - p, d[p:end])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pcap")
    ap.add_argument("--src")
    ap.add_argument("--sport", type=int)
    ap.add_argument("--dst-net")
    a = ap.parse_args()
    src = ipaddress.IPv4Address(a.src).packed if a.src else None
    net = ipaddress.IPv4Network(a.dst_net) if a.dst_net else None

    flows = {}
    utp_flows = {}
    n_frames = truncated = udp_other = 0
    for d in frames(a.pcap):
        n_frames += 1
        off, etype = 14, None
        if len(d) >= 14:
            etype = struct.unpack("!H", d[12:14])[0]
            while etype == 0x8100 and len(d) >= off + 4:  # VLAN tags
                etype = struct.unpack("!H", d[off + 2:off + 4])[0]
                off += 4
        if etype != 0x0800:
            continue
        if len(d) < off + 20:
            truncated += 1
            continue
        vihl, tot_len, proto = d[off], struct.unpack("!H", d[off + 2:off + 4])[0], d[off + 9]
        ihl = (vihl & 0x0F) * 4
        frag = struct.unpack("!H", d[off + 6:off + 8])[0] & 0x1FFF
        if proto not in (6, 17) or frag != 0:
            continue
        s_ip, d_ip = d[off + 12:off + 16], d[off + 16:off + 20]
        t = off + ihl
        if proto == 17:
            if src is not None and s_ip != src:
                continue
            if net is not None and ipaddress.IPv4Address(d_ip) not in net:
                continue
            r = utp_packet(d, t, tot_len - ihl)
            if r is None:
                truncated += 1
                continue
            sport, dport, u = r
            if a.sport is not None and sport != a.sport:
                continue
            if u is None:
                udp_other += 1
                continue
            typ, conn_id, seq, plen, head = u
            key = (s_ip, sport, d_ip, dport, conn_id)
            fl = utp_flows.get(key)
            if fl is None:
                fl = utp_flows[key] = {"packets": 0, "data_packets": 0, "payload_bytes": 0,
                                       "hi": None, "seen": {}, "start": None}
            fl["packets"] += 1
            if typ != 0 or plen == 0:
                continue
            fl["data_packets"] += 1
            fl["payload_bytes"] += plen
            # unwrap the 16-bit seq_nr: nearest (signed) distance from the highest seen
            if fl["hi"] is None:
                fl["hi"] = seq
                n = seq
            else:
                dd = (seq - fl["hi"]) & 0xFFFF
                if dd >= 0x8000:
                    dd -= 1 << 16
                n = fl["hi"] + dd
                fl["hi"] = max(fl["hi"], n)
            fl["seen"].setdefault(n, plen)
            if fl["start"] is None or n < fl["start"][0]:
                fl["start"] = (n, start_kind(head))
            continue
        if len(d) < t + 20:
            truncated += 1
            continue
        sport, dport, seq = struct.unpack("!HHI", d[t:t + 8])
        doff = (d[t + 12] >> 4) * 4
        if src is not None and s_ip != src:
            continue
        if a.sport is not None and sport != a.sport:
            continue
        if net is not None and ipaddress.IPv4Address(d_ip) not in net:
            continue
        plen = max(0, tot_len - ihl - doff)
        key = (s_ip, sport, d_ip, dport)
        fl = flows.get(key)
        if fl is None:
            fl = flows[key] = {"segments": 0, "payload_segments": 0, "payload_bytes": 0,
                               "base": None, "hi": 0, "ranges": [], "start": None}
        fl["segments"] += 1
        if plen == 0:
            continue
        fl["payload_segments"] += 1
        fl["payload_bytes"] += plen
        # unwrap the 32-bit sequence number: offset from the flow's first data segment,
        # taken as the nearest (signed) distance from the highest end seen so far
        head = d[t + doff:t + doff + plen]
        if fl["base"] is None:
            fl["base"] = seq
        dist = (seq - fl["base"] - fl["hi"]) & 0xFFFFFFFF
        if dist >= 0x80000000:
            dist -= 1 << 32
        start = fl["hi"] + dist
        fl["ranges"].append((start, start + plen))
        if fl["start"] is None or start < fl["start"][0]:
            fl["start"] = (start, start_kind(head))
        fl["hi"] = max(fl["hi"], start + plen)

    for f in flows.values():
        new, cur_s, cur_e = 0, None, None
        for a_, b_ in sorted(f.pop("ranges")):
            if cur_e is None or a_ > cur_e:
                if cur_e is not None:
                    new += cur_e - cur_s
                cur_s, cur_e = a_, b_
            else:
                cur_e = max(cur_e, b_)
        if cur_e is not None:
            new += cur_e - cur_s
        f["new_payload_bytes"] = new
    out = {"frames": n_frames, "truncated_frames": truncated, "flows": []}
    for k in ("segments", "payload_segments", "payload_bytes", "new_payload_bytes"):
        out[k] = sum(f[k] for f in flows.values())
    for (s, sp, d, dp), f in sorted(flows.items()):
        out["flows"].append({
            "src": str(ipaddress.IPv4Address(s)), "sport": sp,
            "dst": str(ipaddress.IPv4Address(d)), "dport": dp,
            "segments": f["segments"], "payload_bytes": f["payload_bytes"],
            "new_payload_bytes": f["new_payload_bytes"],
            "start": f["start"][1] if f["start"] else None,
        })
    out["utp_flows"] = []
    for (s, sp, d, dp, cid), f in sorted(utp_flows.items()):
        out["utp_flows"].append({
            "src": str(ipaddress.IPv4Address(s)), "sport": sp,
            "dst": str(ipaddress.IPv4Address(d)), "dport": dp, "conn_id": cid,
            "packets": f["packets"], "data_packets": f["data_packets"],
            "payload_bytes": f["payload_bytes"],
            "new_payload_bytes": sum(f["seen"].values()),
            "start": f["start"][1] if f["start"] else None,
        })
    for k in ("packets", "data_packets", "payload_bytes", "new_payload_bytes"):
        out["utp_" + k] = sum(f[k] for f in out["utp_flows"])
    out["udp_other_datagrams"] = udp_other
    out["handshakes"] = {}
    for tr, lst in (("tcp", out["flows"]), ("utp", out["utp_flows"])):
        h = out["handshakes"][tr] = {"bittorrent": 0, "other": 0, "unknown": 0}
        for f in lst:
            if f["start"]:
                h[f["start"]] += 1
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
