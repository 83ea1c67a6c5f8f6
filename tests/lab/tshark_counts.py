#!/usr/bin/python3
"""Count BitTorrent messages in a capture with tshark (independent cross-check).

usage: tshark_counts.py PCAP [--port 6881] [--truth TRUTH.json]

Decodes tcp.port==PORT as BitTorrent, lists bittorrent.msg.type for every
message (a frame may carry several, reported comma-separated) and counts
PIECE (7) and REQUEST (6) messages plus the PIECE block bytes. Prints a JSON
object; with --truth, merges the counts into that truth file as
tshark_piece_messages / tshark_request_messages / tshark_piece_bytes (and
tshark_message_types, tshark_tcp_retransmissions, tshark_tcp_lost_segments).
"""

import argparse
import collections
import json
import subprocess
import sys


def tshark_fields(pcap, port, display_filter, fields):
    cmd = [
        "tshark", "-n", "-r", pcap,
        "-d", "tcp.port==%d,bittorrent" % port,
        # fast runs over veth can lose segments (real TCP retransmissions);
        # without this, tshark's reassembly miscounts messages around them
        "-o", "tcp.reassemble_out_of_order:TRUE",
        "-Y", display_filter,
        "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
    ]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        cols = line.split("\t")
        yield [[int(x) for x in c.split(",") if x] for c in cols]


def counts(pcap, port):
    # every message's type; a frame may carry several (comma-separated)
    types = collections.Counter()
    for (ts, *_rest) in tshark_fields(pcap, port, "bittorrent.msg", ["bittorrent.msg.type"]):
        types.update(ts)
    # PIECE block bytes = msg.length - 9. Keep-alives have a length (0) but no
    # type, so drop zero lengths to keep both lists aligned.
    piece_bytes = 0
    for row in tshark_fields(pcap, port, "bittorrent.msg.type == 7",
                             ["bittorrent.msg.type", "bittorrent.msg.length"]):
        ts, ls = row[0], [l for l in (row[1] if len(row) > 1 else []) if l > 0]
        piece_bytes += sum(l - 9 for t, l in zip(ts, ls) if t == 7)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--truth")
    a = ap.parse_args()
    c = counts(a.pcap, a.port)
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
