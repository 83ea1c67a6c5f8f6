#!/usr/bin/env bash
# Side-by-side replay benchmark: peercache against tcpflow (TCP reassembly to files) and
# tshark (BitTorrent dissection) on the same capture, in the same run. Prints wall time,
# throughput in Gbit/s of capture-file bytes, and peak memory (max RSS) of each.
#
#   benches/side_by_side.sh [PCAP]     default: pcaps/large/lab-large.pcap
#                                      (make it with: sudo tests/lab/lab.sh large)
#   PEERCACHE=path/to/peercache benches/side_by_side.sh    times that build instead
# Each tool runs RUNS times (default 5); the best wall time is kept. The file is read once
# first so every tool starts with it in the page cache. tcpflow leaves its output in the page
# cache (written back later, outside its time); peercache's cache writes are durable before
# it exits, so tcpflow also runs once more followed by `sync -f` on its output, the like-for-
# like comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
PCAP=${1:-pcaps/large/lab-large.pcap}
RUNS=${RUNS:-5}
[[ -f $PCAP ]] || { echo "side_by_side: $PCAP not found (sudo tests/lab/lab.sh large)" >&2; exit 1; }
for t in tcpflow tshark /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "side_by_side: $t missing (sudo deploy/install-deps.sh)" >&2; exit 1; }
done
if [[ -n ${PEERCACHE:-} ]]; then
    BIN=$PEERCACHE # another build to compare, e.g. before a change
else
    cargo build --release --quiet
    BIN=${CARGO_TARGET_DIR:-target}/release/peercache
fi
SIZE=$(stat -c %s "$PCAP")
cat "$PCAP" >/dev/null
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

measure() { # name, command...
    local name=$1; shift
    local best="" rss=0
    for _ in $(seq "$RUNS"); do
        # Outside the timing: a fresh output directory, and no dirty pages left from the
        # run before (they would be written back during this one).
        rm -rf "$OUT/work"; mkdir -p "$OUT/work"; sync
        /usr/bin/time -f '%e %M' -o "$OUT/t" "$@" >"$OUT/stdout" 2>"$OUT/stderr" || {
            echo "side_by_side: $name failed:" >&2; tail -3 "$OUT/stderr" >&2; return 1; }
        read -r secs kb <"$OUT/t"
        if [[ -z $best ]] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; fi
        ((kb > rss)) && rss=$kb
    done
    awk -v n="$name" -v s="$best" -v b="$SIZE" -v r="$rss" 'BEGIN{
        g = (s > 0) ? b*8/s/1e9 : 0;
        printf "%-34s %9.2f s %9.2f Gbit/s %10.1f MiB\n", n, s, g, r/1024 }'
}

echo "capture: $PCAP ($(awk -v b="$SIZE" 'BEGIN{printf "%.1f MiB", b/1048576}')), best of $RUNS runs"
printf "%-34s %11s %16s %14s\n" tool wall throughput "peak RSS"
measure "peercache replay --json"          "$BIN" replay --json --no-progress "$PCAP"
cp "$OUT/stdout" "$OUT/peercache.json"
measure "peercache replay --workers 2"     "$BIN" replay --json --no-progress --workers 2 "$PCAP"
TORRENT=${PCAP%.pcap}.torrent
if [[ -f $TORRENT ]]; then
    mkdir -p "$OUT/meta" && cp "$TORRENT" "$OUT/meta/"
    # Verification against the .torrent, then also crash-safe writes into a fresh cache.
    measure "peercache + verify (no cache)"    "$BIN" replay --json --no-progress --metainfo "$OUT/meta" "$PCAP"
    measure "peercache + verify + cache writes" "$BIN" replay --json --no-progress --metainfo "$OUT/meta" --cache-dir "$OUT/work/cache" "$PCAP"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); s=r["swarms"][0]; print("  verified %d/%d pieces, stored %d bytes" % (s["pieces_verified"], s["pieces"], r["cache"]["stored_bytes"]))' "$OUT/stdout"
fi
measure "tcpflow -r (streams to files)"    tcpflow -r "$PCAP" -o "$OUT/work"
measure "tcpflow -r, then sync -f"         bash -c 'tcpflow -r "$1" -o "$2" && sync -f "$2"' _ "$PCAP" "$OUT/work"
measure "tshark -Y bittorrent (dissect)"   tshark -r "$PCAP" -o tcp.reassemble_out_of_order:TRUE -d tcp.port==6881,bittorrent -Y "bittorrent.msg.type == 7" -T fields -e frame.number
python3 - "$OUT/peercache.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = sum(s["piece_messages"] for s in r["swarms"])
print(f"peercache: {r['frames']} frames, {p} PIECE messages, gaps {r['reassembly']['gaps']}")
PY
