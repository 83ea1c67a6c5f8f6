#!/bin/sh
# Flow-state figures for docs/benchmarks.md ("Flow state (issue 16, point 4)"): peak RSS
# and wall time of `peercache replay` over a 1 M-SYN flood (benches/syn_flood.py), at the
# default flow cap and at a 1,000-flow cap, and over 1 M SYNs of one flow (no setup).
# Prints the median of RUNS runs of each and the derived per-flow bytes and setup rate.
#
#   benches/flow_state.sh [path/to/peercache]    (default target/release/peercache)
set -eu
BIN=${1:-target/release/peercache}
DIR=${FLOW_STATE_DIR:-/tmp/peercache-flow-state}
RUNS=${RUNS:-3}
HERE=$(dirname "$0")
mkdir -p "$DIR"
[ -f "$DIR/syn_flood.pcap" ] || python3 "$HERE/syn_flood.py" "$DIR/syn_flood.pcap"
[ -f "$DIR/syn_same.pcap" ] || python3 "$HERE/syn_flood.py" --repeat "$DIR/syn_same.pcap"
printf 'flows:\n  max_flows: 1000\n' >"$DIR/small.yaml"
printf 'flows:\n  max_flows: 262144\n' >"$DIR/default.yaml"

# median of RUNS runs: "rss_kb wall_seconds cpu_seconds" (cpu = user + system: what one
# core spent, less sensitive than wall time to other work on the machine)
measure() {
    i=0
    : >"$DIR/runs"
    while [ $i -lt "$RUNS" ]; do
        /usr/bin/time -f '%M %e %U %S' -o "$DIR/t" "$BIN" replay --no-progress --json \
            --config "$2" "$1" >"$DIR/out.json"
        cat "$DIR/t" >>"$DIR/runs"
        i=$((i + 1))
    done
    rss=$(cut -d' ' -f1 "$DIR/runs" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
    sec=$(cut -d' ' -f2 "$DIR/runs" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
    cpu=$(awk '{ print $3 + $4 }' "$DIR/runs" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
    echo "$rss $sec $cpu"
}

set -- $(measure "$DIR/syn_flood.pcap" "$DIR/default.yaml")
cap_rss=$1 cap_sec=$2 cap_cpu=$3
set -- $(measure "$DIR/syn_flood.pcap" "$DIR/small.yaml")
small_rss=$1 small_sec=$2 small_cpu=$3
set -- $(measure "$DIR/syn_same.pcap" "$DIR/default.yaml")
same_rss=$1 same_sec=$2 same_cpu=$3
echo "flood, cap 262144:  peak RSS ${cap_rss} KiB, ${cap_sec} s wall, ${cap_cpu} s cpu"
echo "flood, cap 1000:    peak RSS ${small_rss} KiB, ${small_sec} s wall, ${small_cpu} s cpu"
echo "one flow, 1M SYNs:  peak RSS ${same_rss} KiB, ${same_sec} s wall, ${same_cpu} s cpu"
awk -v c="$cap_rss" -v s="$small_rss" -v t="$cap_sec" -v u="$same_sec" \
    -v tc="$cap_cpu" -v uc="$same_cpu" 'BEGIN {
    printf "per flow: %.0f bytes ((%d - %d) KiB / 262144)\n", (c - s) * 1024 / 262144, c, s
    printf "setup: %.0f k flows/s wall clock (1e6 / %s s)", 1e6 / t / 1e3, t
    if (t > u) printf ", %.0f k/s net of a 1M-frame run without setup (%s s)", 1e6 / (t - u) / 1e3, u
    printf "\n"
    printf "setup: %.0f k flows/s of cpu (1e6 / %s s)", 1e6 / tc / 1e3, tc
    if (tc > uc) printf ", %.0f k/s net of the run without setup (%s s)", 1e6 / (tc - uc) / 1e3, uc
    printf "\n"
}'
