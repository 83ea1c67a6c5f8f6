#!/usr/bin/env bash
# Inline bench (issue 5; a bench, not a timed test): in the lab's `bridge` topology
# (tests/lab/netns.sh: pc-sub <-> pc-box <-> pc-up, pc-box an address-less bridge), the box
# under test (LAB_BOX_CMD, e.g. `peercache inline`, same contract as tests/lab/inline.sh)
# against the kernel's bridge:
#   - latency the bridge adds: PINGS (default 1000) pings sub -> up, 10 ms apart; p50/p99/max
#     of the per-packet RTTs (parsed from each reply line, not ping's summary);
#   - forwarding rate: iperf3 TCP sub -> up (Gbit/s, IPERF_S seconds, default 5) and UDP with
#     64-byte payloads at full speed (packets/s that reached pc-up, loss);
#   - served-from-cache download speed against the rate-limited upstream speed, taken from a
#     tests/lab/inline.sh results file: fill (from the seeders, rate-limited) versus
#     libtorrent-again and aria2-again (from the cache when the box caches).
#
#   sudo LAB_BOX_CMD='exec target/release/peercache inline --subscriber-iface "$LAB_BOX_SUB_IF"
#        --upstream-iface "$LAB_BOX_UP_IF" --cache-dir "$LAB_BOX_WORK/cache"
#        --metainfo "$LAB_BOX_METAINFO_DIR" --report "$LAB_BOX_REPORT"' benches/inline_bench.sh
#   LAB_BOX_CMD_B='…'   a second box command measured in the same run (e.g. the build before
#                       a change); LAB_BOX_LABEL, LAB_BOX_LABEL_B name the two in the tables
#   benches/inline_bench.sh --results RESULTS.json   use an existing inline.sh results file
#   benches/inline_bench.sh --no-downloads           latency and forwarding only
#   benches/inline_bench.sh --serving   also "while serving": per bridge, tests/lab/inline.sh
#             profile overload twice, an iperf3 flow (TCP, then 64-byte UDP at full speed;
#             IPERF_S + 5 seconds) through the box while a stock libtorrent downloads the
#             file again (from the cache when the box caches); rows: the flow's rate, the
#             download's time and how much of it came from upstream
#   FLOWS=N   forwarding with N iperf3 flows at once (default 1), each from its own
#             subscriber address (198.18.0.2, .3, ...), each to its own server port: one IP
#             pair is one worker of `inline.workers`, so workers show only with FLOWS > 1;
#             the rows give the flows' sum
# Without --results (and without --no-downloads) it runs tests/lab/inline.sh once with
# LAB_BOX_CMD (kernel bridge when unset) into its work dir. Without LAB_BOX_CMD only the
# kernel bridge is measured. Needs root, the lab's packages and iperf3
# (tests/lab/install.sh); the forwarding rows are skipped when iperf3 is missing.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_DIR="$HERE/../tests/lab"
# shellcheck source=../tests/lab/netns.sh
source "$LAB_DIR/netns.sh"
PY=/usr/bin/python3
PINGS=${PINGS:-1000}
IPERF_S=${IPERF_S:-5}
FLOWS=${FLOWS:-1}
RESULTS=""
DOWNLOADS=1
SERVING=0
while (($#)); do
    case $1 in
    --results) RESULTS=$2; shift 2 ;;
    --no-downloads) DOWNLOADS=0; shift ;;
    --serving) SERVING=1; shift ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
[[ $(id -u) == 0 ]] || lab_die "must run as root (network namespaces)"
[[ $PINGS =~ ^[0-9]+$ && $PINGS -ge 10 && $PINGS -le 100000 ]] || lab_die "PINGS: 10..100000"
[[ $IPERF_S =~ ^[0-9]+$ && $IPERF_S -ge 1 && $IPERF_S -le 120 ]] || lab_die "IPERF_S: 1..120"
[[ $FLOWS =~ ^[0-9]+$ && $FLOWS -ge 1 && $FLOWS -le 16 ]] || lab_die "FLOWS: 1..16"
HAVE_IPERF=1
command -v iperf3 >/dev/null || { HAVE_IPERF=0; lab_log "iperf3 missing: no forwarding rows (tests/lab/install.sh)"; }
lab_wait_free "${LAB_WAIT_S:-0}" || lab_die "lab busy (namespaces exist; 'tests/lab/lab.sh down' clears leftovers)"

OUT=$(mktemp -d /tmp/peercache-inline-bench.XXXXXX)
chmod 755 "$OUT"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n ${LAB_BOX_KIND:-} ]]; then lab_box_bridge_stop || true; fi
    lab_teardown
    if [[ $rc != 0 ]]; then
        for f in "$OUT"/*.log; do [[ -f $f ]] && { echo "----- $f" >&2; tail -n 30 "$f" >&2; }; done
        lab_log "bench failed; work dir kept: $OUT"
    else
        rm -rf -- "$OUT"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# measure KIND CMD: one lab, one bridge, every measurement into $OUT/KIND.*
measure() {
    local kind=$1 cmd=$2 pid
    lab_log "--- $kind"
    lab_setup_bridge
    mkdir -p "$OUT/$kind-box" "$OUT/$kind-meta"
    # the same environment as tests/lab/inline.sh gives the box (no torrents here)
    export LAB_BOX_LOG="$OUT/$kind-box.log" LAB_BOX_WORK="$OUT/$kind-box" \
        LAB_BOX_METAINFO_DIR="$OUT/$kind-meta" LAB_BOX_REPORT="$OUT/$kind-box/report.json"
    lab_box_bridge_start "$cmd"
    # warm-up (ARP, learning), then the timed run
    lab_in "$LAB_SUB_NS" ping -n -q -c 20 -i 0.01 -W 1 "$LAB_SEEDER_IP" >/dev/null || true
    lab_in "$LAB_SUB_NS" timeout $((PINGS / 50 + 60)) ping -n -i 0.01 -c "$PINGS" -W 1 \
        "$LAB_SEEDER_IP" >"$OUT/$kind.ping" 2>&1 || true
    if ((HAVE_IPERF)); then
        local i pids=() cl=()
        for ((i = 0; i < FLOWS; i++)); do
            ((i == 0)) || lab_add_sub_ip "198.18.0.$((2 + i))"
            lab_bg "$LAB_UP_NS" "$OUT/$kind-iperf3-server.$i.log" iperf3 -s -B "$LAB_SEEDER_IP" -p $((5201 + i))
            pids+=("$LAB_LAST_PID")
            lab_wait_port "$LAB_UP_NS" "$LAB_SEEDER_IP" $((5201 + i)) 50 || lab_die "iperf3 server did not start"
        done
        # flows [TCP|UDP]: FLOWS clients at once, each from its own address
        flows() {
            local proto=$1 j extra=() cpids=()
            [[ $proto == udp ]] && extra=(-u -b 0 -l 64)
            for ((j = 0; j < FLOWS; j++)); do
                lab_in "$LAB_SUB_NS" timeout $((IPERF_S + 30)) iperf3 -c "$LAB_SEEDER_IP" \
                    -p $((5201 + j)) -B "198.18.0.$((2 + j))" "${extra[@]}" -t "$IPERF_S" -J \
                    >"$OUT/$kind.$proto.$j.json" 2>"$OUT/$kind-iperf3-$proto.$j.log" &
                cpids+=($!)
            done
            for j in "${cpids[@]}"; do wait "$j" || lab_log "iperf3 $proto failed ($kind)"; done
        }
        flows tcp
        sleep 0.5
        flows udp
        for i in "${pids[@]}"; do lab_stop "$i" TERM 50; done
    fi
    lab_box_bridge_stop
    lab_teardown
}

measure kernel ""
BOXES=""
if [[ -n ${LAB_BOX_CMD:-} ]]; then measure box "$LAB_BOX_CMD"; BOXES=box; fi
if [[ -n ${LAB_BOX_CMD_B:-} ]]; then measure box_b "$LAB_BOX_CMD_B"; BOXES="$BOXES,box_b"; fi

if ((SERVING)); then
    for k in kernel ${BOXES//,/ }; do
        case $k in kernel) cmd="" ;; box) cmd=$LAB_BOX_CMD ;; *) cmd=$LAB_BOX_CMD_B ;; esac
        for fk in tcp udp64; do
            lab_log "--- while serving: $k, iperf3 $fk"
            # the lab's lock is this script's: the child inherits it (LAB_LOCK_FD)
            LAB_LOCK_FD=$LAB_LOCK_FD LAB_BOX_CMD=$cmd LAB_INLINE_PROFILE=overload LAB_FLOOD_KIND=$fk \
                LAB_FLOOD_S=$((IPERF_S + 5)) LAB_WAIT_S=${LAB_WAIT_S:-30} \
                "$LAB_DIR/inline.sh" "$OUT/serving-$k-$fk/results.json" >"$OUT/serving-$k-$fk.log" 2>&1 \
                || { tail -n 40 "$OUT/serving-$k-$fk.log" >&2; lab_die "tests/lab/inline.sh (overload) failed"; }
        done
    done
fi

if ((DOWNLOADS)) && [[ -z $RESULTS ]]; then
    lab_log "--- downloads: tests/lab/inline.sh (${LAB_BOX_CMD:+box command}${LAB_BOX_CMD:-kernel bridge})"
    RESULTS="$OUT/inline/results.json"
    LAB_LOCK_FD=$LAB_LOCK_FD LAB_WAIT_S=${LAB_WAIT_S:-30} "$LAB_DIR/inline.sh" "$RESULTS" >"$OUT/inline.log" 2>&1 \
        || { tail -n 40 "$OUT/inline.log" >&2; lab_die "tests/lab/inline.sh failed"; }
fi

"$PY" - "$OUT" "$PINGS" "${RESULTS:-}" "$BOXES" "${LAB_BOX_LABEL:-box (LAB_BOX_CMD)}" \
    "${LAB_BOX_LABEL_B:-box (LAB_BOX_CMD_B)}" "$FLOWS" "$SERVING" <<'EOF'
import json, os, re, sys
out, pings, results, boxes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
nflows = int(sys.argv[7])
kinds = ["kernel"] + [b for b in boxes.split(",") if b]
label = {"kernel": "kernel bridge", "box": sys.argv[5], "box_b": sys.argv[6]}
width = max(20, max(len(label[k]) for k in kinds))

def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None

print("\nlatency: %d pings pc-sub -> pc-up through pc-box, 10 ms apart (RTT, ms)" % pings)
print("%-*s %8s %8s %8s %8s %7s %14s" % (width, "bridge", "p50", "p99", "max", "mean", "loss",
      "p99 added us"))
p99 = {}
for k in kinds:
    rtts = [float(m.group(1)) for m in re.finditer(r"time=([0-9.]+) ms", open(os.path.join(out, k + ".ping")).read())]
    loss = 100.0 * (pings - len(rtts)) / pings
    f = lambda v: "%8.3f" % v if v is not None else "%8s" % "-"
    p99[k] = pct(rtts, 99)
    added = ("%14.0f" % ((p99[k] - p99["kernel"]) * 1000)
             if k != "kernel" and p99[k] is not None and p99.get("kernel") is not None else "%14s" % "-")
    print("%-*s %s %s %s %s %6.1f%% %s" % (width, label[k], f(pct(rtts, 50)), f(p99[k]),
          f(max(rtts) if rtts else None), f(sum(rtts) / len(rtts) if rtts else None), loss, added))

if any(os.path.exists(os.path.join(out, k + ".tcp.0.json")) for k in kinds):
    print("\nforwarding: iperf3 pc-sub -> pc-up (offloads off on every veth), %d flow%s at once%s"
          % (nflows, "" if nflows == 1 else "s", "" if nflows == 1 else ", summed"))
    print("%-*s %14s %9s %16s %9s %10s" % (width, "bridge", "TCP Gbit/s", "of kernel",
          "UDP 64 B pkt/s", "of kernel", "UDP loss"))
    base = {}
    for k in kinds:
        g = p = None
        try:
            g = sum(load(os.path.join(out, "%s.tcp.%d.json" % (k, j)))["end"]["sum_received"]["bits_per_second"]
                    for j in range(nflows)) / 1e9
        except (TypeError, KeyError):
            pass
        try:
            us = [load(os.path.join(out, "%s.udp.%d.json" % (k, j)))["end"]["sum"] for j in range(nflows)]
            p = sum((s["packets"] - s["lost_packets"]) / s["seconds"] for s in us)
            sent = sum(s["packets"] for s in us)
            loss = "%9.1f%%" % (100.0 * sum(s["lost_packets"] for s in us) / sent)
        except (TypeError, KeyError, ZeroDivisionError):
            loss = "%10s" % "-"
        if k == "kernel":
            base = {"g": g, "p": p}
        ratio = lambda v, b: "%8.0f%%" % (100.0 * v / b) if v is not None and b else "%9s" % "-"
        print("%-*s %s %s %s %s %s" % (width, label[k],
              "%14.3f" % g if g is not None else "%14s" % "-", ratio(g, base.get("g")),
              "%16.0f" % p if p is not None else "%16s" % "-", ratio(p, base.get("p")), loss))

if int(sys.argv[8]):
    print("\nwhile serving: an iperf3 flow pc-sub -> pc-up while stock libtorrent downloads the file"
          " again (inline.sh profile overload)")
    print("%-*s %-6s %22s %14s %10s %8s" % (width, "bridge", "flow", "flow rate", "download s",
          "upstream", "served"))
    for k in kinds:
        for fk in ("tcp", "udp64"):
            r = load(os.path.join(out, "serving-%s-%s" % (k, fk), "results.json"))
            if not r:
                continue
            s = r["steps"][-1]
            it = (s.get("flood") or {}).get("iperf") or {}
            try:
                if fk == "tcp":
                    rate = "%.3f Gbit/s" % (it["end"]["sum_received"]["bits_per_second"] / 1e9)
                else:
                    e = it["end"]["sum"]
                    rate = "%.0f pkt/s, %.0f%% lost" % ((e["packets"] - e["lost_packets"]) / e["seconds"], e["lost_percent"])
            except (KeyError, TypeError, ZeroDivisionError):
                rate = "-"
            up = s.get("upstream", {})
            sent = max(x for x in (up.get("seeder_payload_upload_bytes"), up.get("tcp_payload_bytes"), 0) if x is not None)
            served = (s.get("box_metrics") or {}).get("served_blocks")
            print("%-*s %-6s %22s %14s %9.1f%% %8s" % (width, label[k], fk, rate,
                  "%.2f" % s["download_seconds"] if s.get("completed") else "failed",
                  100.0 * sent / r["file_size"], served if served is not None else "-"))

if results:
    r = json.load(open(results))
    size = r["file_size"]
    print("\ndownloads (%s): %.1f MiB file, seeders limited to %s B/s; %s"
          % (results, size / 1048576, r["upload_limit"],
             "box command" if r["box"]["kind"] == "command" else "kernel bridge (nothing cached)"))
    print("%-17s %-10s %9s %12s %10s" % ("step", "client", "seconds", "MiB/s", "upstream"))
    for s in r["steps"]:
        secs = s.get("download_seconds")
        up = s.get("upstream", {})
        sent = max(x for x in (up.get("seeder_payload_upload_bytes"), up.get("tcp_payload_bytes"), 0) if x is not None)
        print("%-17s %-10s %9s %12s %9.1f%%" % (
            s["name"], s["client"], "%.3f" % secs if secs else "-",
            "%.2f" % (size / 1048576 / secs) if secs and s.get("completed") else "-",
            100.0 * sent / size))
    by = {s["name"]: s for s in r["steps"]}
    def speed(n):
        s = by.get(n)
        return size / s["download_seconds"] if s and s.get("completed") and s.get("download_seconds") else None
    up_speed = speed("fill")
    for n in ("libtorrent-again", "aria2-again"):
        v = speed(n)
        if v and up_speed:
            print("%s / fill (served from cache vs rate-limited upstream): %.1fx" % (n, v / up_speed))
EOF
exit 0
