#!/usr/bin/python3
"""Count BitTorrent messages in a capture with tshark (independent cross-check).

usage: tshark_counts.py PCAP [--port 6881] [--utp] [--by-direction] [--truth TRUTH.json]

Decodes tcp.port==PORT as BitTorrent, lists bittorrent.msg.type for every
message (a frame may carry several, reported comma-separated) and counts
PIECE (7) and REQUEST (6) messages plus the PIECE block bytes. Prints a JSON
object; with --truth, merges the counts into that truth file as
tshark_piece_messages / tshark_request_messages / tshark_piece_bytes (and
tshark_message_types, tshark_tcp_retransmissions, tshark_tcp_lost_segments).
With --by-direction (TCP only) also tshark_message_types_by_direction:
{"SRC_IP -> DST_IP": {type: count}}, e.g. the PIECEs each of several leechers
got (lab.sh tcp-repeat).

With --utp the peer connection is uTP (BEP 29) over UDP: tshark's bt-utp
heuristic dissector (--enable-heuristic bt_utp_udp) hands the uTP payload to
the BitTorrent dissector. The message counts come from that, leaving out the
DATA packets that resend an earlier (connection id, seq_nr): tshark dissects a
resend as new data, so a loaded run's resends would count twice (the count with
them is kept as tshark_piece_messages_with_resends); the same counts
with "-d udp.port==PORT,bt-utp" instead of the heuristic are recorded as
tshark_decode_as_*. tshark_utp_types counts the packets tshark's bt-utp
dissector recognises per bt-utp.type (0 DATA, 1 FIN, 2 STATE, 3 RESET, 4 SYN).
tshark 4.0 rejects uTP packets that carry libtorrent's close-reason extension
(type 3), so the script also parses every UDP payload's BEP 29 header itself:
utp_types, utp_packets, utp_connections (SYNs), utp_flows (distinct UDP
4-tuples), utp_directions (per direction: packets, types, connection ids, data
bytes, DATA resends), utp_extensions (1 selective ACK, 3 close reason),
utp_extension_lengths, utp_data_retransmissions (DATA packets repeating an
earlier (connection id, seq_nr) of the same direction) and
utp_data_payload_sizes (DATA payload-length histogram), plus
tcp_frames_on_bt_port (TCP frames to or from PORT; 0 for a uTP-only capture).
"""

import argparse
import collections
import json
import subprocess
import sys


# how tshark finds BitTorrent: TCP (decode-as) or uTP (heuristic / decode-as)
MODE_TCP, MODE_UTP_HEUR, MODE_UTP_DECODE_AS = "tcp", "utp-heuristic", "utp-decode-as"


def decode_args(port, mode):
    if mode == MODE_UTP_HEUR:
        return ["--enable-heuristic", "bt_utp_udp"]
    if mode == MODE_UTP_DECODE_AS:
        return ["-d", "udp.port==%d,bt-utp" % port]
    return [
        "-d", "tcp.port==%d,bittorrent" % port,
        # fast runs over veth can lose segments (real TCP retransmissions);
        # without this, tshark's reassembly miscounts messages around them
        "-o", "tcp.reassemble_out_of_order:TRUE",
    ]


def tshark_raw(pcap, port, display_filter, fields, mode=MODE_TCP):
    cmd = ["tshark", "-n", "-r", pcap] + decode_args(port, mode) + [
        "-Y", display_filter,
        "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
    ]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        yield line.split("\t")


def tshark_fields(pcap, port, display_filter, fields, mode=MODE_TCP):
    for cols in tshark_raw(pcap, port, display_filter, fields, mode):
        yield [[int(x, 0) for x in c.split(",") if x] for c in cols]


def message_counts(pcap, port, mode, skip_frames=()):
    """Message type counts and PIECE block bytes, leaving out the frames in skip_frames
    (uTP resends: tshark's bt-utp dissects a resent DATA packet as if it were new)."""
    skip = ""
    if skip_frames:
        skip = " && !(frame.number in {%s})" % ",".join(str(f) for f in sorted(skip_frames))
    # every message's type; a frame may carry several (comma-separated)
    types = collections.Counter()
    for (ts, *_rest) in tshark_fields(pcap, port, "bittorrent.msg" + skip,
                                      ["bittorrent.msg.type"], mode):
        types.update(ts)
    # PIECE block bytes = msg.length - 9. Keep-alives have a length (0) but no
    # type, so drop zero lengths to keep both lists aligned.
    piece_bytes = 0
    for row in tshark_fields(pcap, port, "bittorrent.msg.type == 7" + skip,
                             ["bittorrent.msg.type", "bittorrent.msg.length"], mode):
        ts, ls = row[0], [l for l in (row[1] if len(row) > 1 else []) if l > 0]
        piece_bytes += sum(l - 9 for t, l in zip(ts, ls) if t == 7)
    return types, piece_bytes


def counts(pcap, port):
    types, piece_bytes = message_counts(pcap, port, MODE_TCP)
    # TCP anomalies seen by tshark (a capture with retransmissions is a
    # harder, still valid, test input)
    retrans = sum(1 for _ in tshark_fields(pcap, port, "tcp.analysis.retransmission", ["frame.number"]))
    lost = sum(1 for _ in tshark_fields(pcap, port, "tcp.analysis.lost_segment", ["frame.number"]))
    return {
        "tshark_tcp_retransmissions": retrans,
        "tshark_tcp_lost_segments": lost,
        "tshark_piece_messages": types.get(7, 0),
        "tshark_request_messages": types.get(6, 0),
        "tshark_piece_bytes": piece_bytes,
        "tshark_message_types": {str(k): v for k, v in sorted(types.items())},
    }


def by_direction(pcap, port):
    """Message type counts per IP direction ("198.19.0.2 -> 198.18.0.3": {"7": 64})."""
    dirs = {}
    for cols in tshark_raw(pcap, port, "bittorrent.msg",
                           ["ip.src", "ip.dst", "bittorrent.msg.type"]):
        if len(cols) < 3:
            continue
        c = dirs.setdefault("%s -> %s" % (cols[0], cols[1]), collections.Counter())
        c.update(int(x, 0) for x in cols[2].split(",") if x)
    return {k: {str(t): n for t, n in sorted(c.items())} for k, c in sorted(dirs.items())}


UTP_TYPE_NAMES = {0: "DATA", 1: "FIN", 2: "STATE", 3: "RESET", 4: "SYN"}
UTP_EXT_NAMES = {1: "selective_ack", 2: "extension_bits", 3: "close_reason"}


def utp_type_key(t):
    return "%d_%s" % (t, UTP_TYPE_NAMES.get(t, "?"))


def parse_utp(payload):
    """BEP 29 header of one UDP payload: (type, conn_id, seq_nr, [(ext_type, ext_len)],
    data_len), or None if it is not a version-1 uTP packet."""
    if len(payload) < 20 or payload[0] & 0x0F != 1 or payload[0] >> 4 > 4:
        return None
    typ, nxt, conn_id = payload[0] >> 4, payload[1], int.from_bytes(payload[2:4], "big")
    seq_nr = int.from_bytes(payload[16:18], "big")
    off, exts = 20, []
    while nxt:
        if off + 2 > len(payload):
            return None
        ext_len = payload[off + 1]
        exts.append((nxt, ext_len))
        nxt = payload[off]
        off += 2 + ext_len
    if off > len(payload):
        return None
    return typ, conn_id, seq_nr, exts, len(payload) - off


def utp_counts(pcap, port):
    # uTP packets as tshark's bt-utp dissector sees them (heuristic)
    tshark_types = collections.Counter()
    for (ts,) in tshark_fields(pcap, port, "bt-utp", ["bt-utp.type"], MODE_UTP_HEUR):
        tshark_types.update(ts)
    # every UDP packet, headers parsed here (tshark 4.0's bt-utp rejects packets
    # carrying libtorrent's close-reason extension, type 3)
    udp_frames = 0
    ptypes, flows, exts, ext_lens, sizes = (collections.Counter() for _ in range(5))
    dirs = {}
    non_utp, resent_frames = [], []
    for cols in tshark_raw(pcap, port, "udp",
                           ["frame.number", "ip.src", "udp.srcport", "ip.dst", "udp.dstport",
                            "udp.payload"], MODE_TCP):
        cols += [""] * (6 - len(cols))
        udp_frames += 1
        h = parse_utp(bytes.fromhex(cols[5].replace(":", "")))
        if h is None:
            non_utp.append(int(cols[0]))
            continue
        typ, conn_id, seq_nr, ext, dlen = h
        ptypes[typ] += 1
        a, b = "%s:%s" % (cols[1], cols[2]), "%s:%s" % (cols[3], cols[4])
        flows[tuple(sorted([a, b]))] += 1
        d = dirs.setdefault("%s -> %s" % (a, b), {"packets": 0, "types": collections.Counter(),
                                                  "connection_ids": set(), "data_bytes": 0,
                                                  "seen": set(), "retrans": 0, "retrans_bytes": 0})
        d["packets"] += 1
        d["types"][utp_type_key(typ)] += 1
        d["connection_ids"].add(conn_id)
        d["data_bytes"] += dlen
        if typ == 0:
            # a DATA packet whose (connection id, seq_nr) was already sent: uTP resend
            if (conn_id, seq_nr) in d["seen"]:
                d["retrans"] += 1
                d["retrans_bytes"] += dlen
                resent_frames.append(int(cols[0]))
            d["seen"].add((conn_id, seq_nr))
        for e, l in ext:
            exts[e] += 1
            ext_lens["%d_%s/len=%d" % (e, UTP_EXT_NAMES.get(e, "?"), l)] += 1
        if typ == 0:
            sizes[dlen] += 1
    tcp_bt = sum(1 for _ in tshark_raw(pcap, port, "tcp.port == %d" % port, ["frame.number"]))
    # the messages on the wire once each: resent DATA packets left out
    types, piece_bytes = message_counts(pcap, port, MODE_UTP_HEUR, resent_frames)
    dtypes, dpiece_bytes = message_counts(pcap, port, MODE_UTP_DECODE_AS, resent_frames)
    with_resends, _ = message_counts(pcap, port, MODE_UTP_HEUR)
    return {
        "tshark_mode": "utp: --enable-heuristic bt_utp_udp, resent DATA frames left out",
        "tshark_piece_messages_with_resends": with_resends.get(7, 0),
        "tshark_piece_messages": types.get(7, 0),
        "tshark_request_messages": types.get(6, 0),
        "tshark_piece_bytes": piece_bytes,
        "tshark_message_types": {str(k): v for k, v in sorted(types.items())},
        "tshark_decode_as_piece_messages": dtypes.get(7, 0),
        "tshark_decode_as_request_messages": dtypes.get(6, 0),
        "tshark_decode_as_piece_bytes": dpiece_bytes,
        "tshark_decode_as_message_types": {str(k): v for k, v in sorted(dtypes.items())},
        "tshark_utp_packets": sum(tshark_types.values()),
        "tshark_utp_types": {utp_type_key(k): v for k, v in sorted(tshark_types.items())},
        "udp_frames": udp_frames,
        "udp_frames_not_utp": non_utp,
        "utp_packets": sum(ptypes.values()),
        "utp_types": {utp_type_key(k): v for k, v in sorted(ptypes.items())},
        "utp_connections": ptypes.get(4, 0),
        "utp_flows": len(flows),
        "utp_flow_packets": {"%s <-> %s" % k: n for k, n in sorted(flows.items())},
        "utp_directions": {k: {"packets": d["packets"], "types": dict(sorted(d["types"].items())),
                               "connection_ids": sorted(d["connection_ids"]),
                               "data_bytes": d["data_bytes"],
                               "data_retransmissions": d["retrans"],
                               "data_retransmitted_bytes": d["retrans_bytes"]}
                           for k, d in sorted(dirs.items())},
        "utp_extensions": {"%d_%s" % (k, UTP_EXT_NAMES.get(k, "?")): v
                           for k, v in sorted(exts.items())},
        "utp_extension_lengths": dict(sorted(ext_lens.items())),
        "utp_data_retransmissions": sum(d["retrans"] for d in dirs.values()),
        "utp_data_payload_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "tcp_frames_on_bt_port": tcp_bt,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--utp", action="store_true", help="peer connection is uTP over UDP")
    ap.add_argument("--by-direction", action="store_true",
                    help="also count message types per IP direction (TCP only)")
    ap.add_argument("--truth")
    a = ap.parse_args()
    if a.by_direction and a.utp:
        ap.error("--by-direction is for TCP captures")
    c = utp_counts(a.pcap, a.port) if a.utp else counts(a.pcap, a.port)
    if a.by_direction:
        c["tshark_message_types_by_direction"] = by_direction(a.pcap, a.port)
    if a.truth:
        with open(a.truth) as f:
            truth = json.load(f)
        truth.update(c)
        with open(a.truth, "w") as f:
            json.dump(truth, f, indent=2, sort_keys=True)
            f.write("\n")
    json.dump(c, sys.stdout)
    print()


if __name__ == "__main__":
    main()
