#!/usr/bin/env python3
"""A SYN flood as a classic pcap, for the flow-state figures in docs/benchmarks.md
("Flow state (issue 16, point 4)"): N TCP SYNs (default 1,000,000) on Ethernet, each a new
5-tuple inside 198.18.0.0/15 (RFC 2544 benchmarking space), so every frame sets up a flow and
none is ever answered. Deterministic: the same arguments give the same bytes.

    python3 benches/syn_flood.py /tmp/syn_flood.pcap [N]
    python3 benches/syn_flood.py --repeat /tmp/syn_same.pcap [N]   # one flow, N SYNs

`--repeat` writes the same number of frames all on one 5-tuple: replaying it costs the
decode and the lookup but no flow setup, so the difference in wall time is the setup.
"""

import struct
import sys


def ip_checksum(header):
    s = sum(struct.unpack("!10H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(i, repeat):
    # Clients in 198.18.0.0/16, servers in 198.19.0.0/16: 65,536 source addresses times
    # source ports from 1024, so 5-tuples stay distinct up to ~4e9 frames.
    k = 0 if repeat else i
    src = bytes([198, 18, (k >> 8) & 0xFF, k & 0xFF])
    dst = bytes([198, 19, (k >> 16) & 0xFF, 1])
    sport = 1024 + ((k >> 16) % 64000)
    dport = 6881
    tcp = struct.pack("!HHIIBBHHH", sport, dport, k * 7919 & 0xFFFFFFFF, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), k & 0xFFFF, 0x4000, 64, 6, 0, src, dst))
    ip[10:12] = struct.pack("!H", ip_checksum(bytes(ip)))
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + bytes(ip) + tcp


def main():
    args = sys.argv[1:]
    repeat = "--repeat" in args
    args = [a for a in args if a != "--repeat"]
    if not args:
        sys.exit(__doc__)
    path = args[0]
    n = int(args[1]) if len(args) > 1 else 1_000_000
    with open(path, "wb") as out:
        # Classic pcap, microsecond timestamps, Ethernet (linktype 1).
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk = []
        for i in range(n):
            f = frame(i, repeat)
            # 1 µs apart from a fixed epoch: all within one idle timeout, so the cap (not
            # expiry) is what bounds the table.
            ts = 1_700_000_000_000_000 + i
            chunk.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(f), len(f)) + f)
            if len(chunk) == 65536:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))


if __name__ == "__main__":
    main()
