#!/usr/bin/env bash
# Content-listener bench: HTTP throughput of peercache's content listener (`content.listen`,
# GET /v1/{infohash}/{piece}, optionally with a Range) against nginx serving the same bytes as
# static files from the same disk, side by side in one run, on loopback.
#
#   benches/content_bench.sh                        both servers (builds nothing: set PEERCACHE
#                                                   or run `cargo build --release` first)
#   benches/content_bench.sh --nginx-only           nginx only (the peercache side skipped)
#   benches/content_bench.sh --json FILE            also every raw number as JSON into FILE
#   SIZE=64MiB D=3 R=1 benches/content_bench.sh     a quick run
#
# Environment: SIZE content size (default 256MiB; bytes, or KiB/MiB/GiB, K/M/G), PIECE piece
# length (default 256KiB; a multiple of 16 KiB that divides SIZE), D seconds per wrk run
# (default 10), R rounds (default 3), C connections (default 32), WRK_THREADS (default 2),
# PEERCACHE the binary (default target/release/peercache of this checkout), TMPDIR where the
# work dir goes (default /var/tmp; the content, nginx's files and peercache's cache all live
# there, on one filesystem; removed on exit), PIECE_MEMORY the content listener's
# content.piece_memory_bytes (default 256MiB, its default: verified pieces kept in memory;
# 16MiB makes most requests read and hash their piece from disk).
#
# Setup: deterministic pseudo-random content of SIZE bytes and a v1 single-file .torrent for
# it (/usr/bin/python3 + libtorrent); every piece also as its own file static/{infohash}/{p},
# which nginx serves under `location /v1/ { alias .../static/; }`, so both servers answer the
# same URL. peercache's cache is filled with `peercache cache import` (every piece verified)
# and `peercache tap --iface lo` runs with a content listener; nginx runs with
# worker_processes 2 (the machine's 2 cores; peercache's side shares the same cores, and so
# does wrk), sendfile on, access_log off, open_file_cache on and keepalive_requests unlimited
# (wrk keeps its connections open; nginx 1.22 would close each after 1000 requests).
# Before the load, 3 random pieces are fetched from each server, whole and as one random
# 16 KiB block, and compared byte for byte with the content.
# Workloads, each one wrk run per server per round (A/B, A/B, ... for R rounds, after a 1 s
# warm-up of each), wrk with a generated Lua script choosing a random piece per request
# (seeded: both servers get the same request sequence):
#   block16k   GET /v1/{ih}/{p} with Range: bytes={b*16384}-{b*16384+16383}, b a random
#              block of the piece (206 answers)
#   piece      GET /v1/{ih}/{p}, the whole piece (200 answers)
# Output: medians over the rounds of requests/s and Gbit/s (every byte wrk read, headers
# included, over wrk's measured duration), p99 latency and responses with status >= 400
# (wrk's "Non-2xx or 3xx" count; any of those, a socket error, or a byte count that does not
# fit the bodies, e.g. whole pieces answering Range requests, fails the bench); the ratio
# peercache/nginx per workload; peak memory (VmHWM, read after the runs) of peercache's
# process and of nginx's workers summed (master apart). wrk shares the 2 cores with the
# server under test: the figures are for this machine as a whole, not the server alone.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
umask 022 # nginx's workers (nobody, when run as root) read the static files
PY=/usr/bin/python3
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-/usr/bin/wrk}
BIN=${PEERCACHE:-$HERE/../target/release/peercache}
D=${D:-10}
R=${R:-3}
C=${C:-32}
WRK_THREADS=${WRK_THREADS:-2}
NGINX_ONLY=0
JSON=""
BLOCK=16384

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "content_bench: $*" >&2; exit 1; }
log() { echo "content_bench: $*" >&2; }
while (($#)); do
    case $1 in
    --nginx-only) NGINX_ONLY=1; shift ;;
    --json) [[ $# -ge 2 && -n $2 ]] || usage; JSON=$(realpath -m -- "$2"); shift 2 ;;
    *) usage ;;
    esac
done

# bytes SPEC: a byte count as peercache reads one (KiB.. powers of 1024, K/KB.. of 1000)
bytes() {
    [[ $1 =~ ^([0-9]+)(B|KiB|MiB|GiB|K|KB|M|MB|G|GB)?$ ]] || die "not a byte count: $1"
    local n=${BASH_REMATCH[1]} m=1
    case ${BASH_REMATCH[2]} in
    KiB) m=1024 ;; MiB) m=$((1 << 20)) ;; GiB) m=$((1 << 30)) ;;
    K | KB) m=1000 ;; M | MB) m=1000000 ;; G | GB) m=1000000000 ;;
    esac
    echo $((n * m))
}
SIZE=$(bytes "${SIZE:-256MiB}")
PIECE=$(bytes "${PIECE:-256KiB}")
((PIECE >= BLOCK && PIECE % BLOCK == 0)) || die "PIECE must be a multiple of 16 KiB"
((SIZE >= PIECE && SIZE % PIECE == 0)) || die "SIZE must be a multiple of PIECE ($PIECE)"
NPIECES=$((SIZE / PIECE))
[[ $D =~ ^[0-9]+$ && $D -ge 1 ]] || die "D: seconds, >= 1"
[[ $R =~ ^[0-9]+$ && $R -ge 1 ]] || die "R: rounds, >= 1"
[[ $C =~ ^[0-9]+$ && $C -ge 1 ]] || die "C: connections, >= 1"
[[ $WRK_THREADS =~ ^[0-9]+$ && $WRK_THREADS -ge 1 && $WRK_THREADS -le $C ]] || die "WRK_THREADS: 1..C"
for t in "$NGINX" "$WRK" "$PY" curl cmp ps; do
    command -v "$t" >/dev/null || die "$t missing"
done
"$PY" -c 'import libtorrent' 2>/dev/null || die "python3-libtorrent missing (for the .torrent)"
if ((!NGINX_ONLY)); then
    [[ -x $BIN ]] || die "$BIN not found (cargo build --release, or PEERCACHE=..., or --nginx-only)"
fi

OUT=$(mktemp -d "${TMPDIR:-/var/tmp}/peercache-content-bench.XXXXXX")
chmod 755 "$OUT"
NGINX_PID=""
PC_PID=""
# stop PID: SIGTERM, then SIGKILL after 10 s
stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $PC_PID ]] && stop "$PC_PID"
    [[ -n $NGINX_PID ]] && stop "$NGINX_PID"
    if [[ $rc != 0 ]]; then
        for f in "$OUT"/*.log "$OUT"/nginx/error.log; do
            [[ -s $f ]] && { echo "----- $f" >&2; tail -n 30 "$f" >&2; }
        done
    fi
    rm -rf -- "$OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_ports N: N free TCP ports on 127.0.0.1
free_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r NGINX_PORT PC_PORT PC_HTTP_PORT <<<"$(free_ports 3)"

# --- content, .torrent, static piece files
NAME=content-bench.bin
DATA=$OUT/data/$NAME
TORRENT=$OUT/$NAME.torrent
mkdir -p "$OUT/data" "$OUT/static/pending" "$OUT/cache" "$OUT/nginx/logs"
log "content: $SIZE bytes, $NPIECES pieces of $PIECE bytes, in $OUT"
IH=$("$PY" - "$OUT" "$NAME" "$SIZE" "$PIECE" <<'EOF'
import hashlib, os, random, sys
import libtorrent as lt
out, name, size, plen = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(0x70636362)  # deterministic: the same content on every run
hashes = []
with open(os.path.join(out, "data", name), "wb") as f:
    for p in range(size // plen):
        b = rng.randbytes(plen)
        f.write(b)
        with open(os.path.join(out, "static", "pending", str(p)), "wb") as pf:
            pf.write(b)
        hashes.append(hashlib.sha1(b).digest())
fs = lt.file_storage()
fs.add_file(name, size)
flags = getattr(lt.create_torrent, "v1_only", 0)
ct = lt.create_torrent(fs, plen, flags)
assert ct.num_pieces() == len(hashes)
for i, h in enumerate(hashes):
    ct.set_hash(i, h)
e = ct.generate()
e.pop(b"creation date", None)  # the same .torrent on every run
raw = lt.bencode(e)
with open(os.path.join(out, name + ".torrent"), "wb") as f:
    f.write(raw)
print(lt.torrent_info(raw).info_hashes().v1)
EOF
)
[[ $IH =~ ^[0-9a-f]{40}$ ]] || die "no infohash from the .torrent step: $IH"
mv "$OUT/static/pending" "$OUT/static/$IH"
log "infohash $IH"

# --- nginx
cat >"$OUT/nginx/nginx.conf" <<EOF
# content_bench.sh: static files, tuned as one would for this (sendfile, open files cached,
# connections kept as long as the client wants)
worker_processes 2;
error_log $OUT/nginx/error.log warn;
pid $OUT/nginx/nginx.pid;
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    open_file_cache max=100000 inactive=60s;
    types { }
    default_type application/octet-stream;
    client_body_temp_path $OUT/nginx/client_body_temp;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /v1/ {
            alias $OUT/static/;
        }
    }
}
EOF
"$NGINX" -t -q -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" -e "$OUT/nginx/error.log" >"$OUT/nginx-test.log" 2>&1 \
    || { cat "$OUT/nginx-test.log" >&2; die "nginx rejects its configuration"; }
"$NGINX" -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" -e "$OUT/nginx/error.log" -g 'daemon off;' \
    >"$OUT/nginx.log" 2>&1 &
NGINX_PID=$!

# wait_up NAME PID PORT SECONDS: until piece 0 answers
wait_up() {
    local name=$1 pid=$2 port=$3 secs=$4 i
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited while starting"
        curl -fsS "http://127.0.0.1:$port/v1/$IH/0" -o /dev/null 2>/dev/null && return 0
        sleep 0.1
    done
    die "$name did not answer on 127.0.0.1:$port within $secs s"
}
wait_up nginx "$NGINX_PID" "$NGINX_PORT" 10
SERVERS=(nginx)
declare -A PORT=([nginx]=$NGINX_PORT)

# --- peercache
PIECE_MEMORY=${PIECE_MEMORY:-256MiB}
if ((!NGINX_ONLY)); then
    log "peercache: cache import"
    "$BIN" cache --cache-dir "$OUT/cache" import "$TORRENT" "$OUT/data" >"$OUT/import.log" 2>&1 \
        || { cat "$OUT/import.log" >&2; die "peercache cache import failed"; }
    CAP=4GiB
    ((SIZE * 2 > 4 * (1 << 30))) && CAP=$((SIZE * 2))
    cat >"$OUT/peercache.yaml" <<EOF
cache:
  dir: $OUT/cache
  capacity_bytes: $CAP
content:
  listen: 127.0.0.1:$PC_PORT
  allow: [127.0.0.0/8]
  requests_per_second: 1000000
  burst: 1000000
  max_connections: 4096
  piece_memory_bytes: $PIECE_MEMORY
capture:
  # The tap is only the host process here (nothing matches): a small ring keeps its
  # memory out of the content listener's peak.
  filter: udp port 9
  buffer_bytes: 2MiB
EOF
    "$BIN" tap --iface lo --config "$OUT/peercache.yaml" --http "127.0.0.1:$PC_HTTP_PORT" \
        >"$OUT/peercache.log" 2>&1 &
    PC_PID=$!
    wait_up peercache "$PC_PID" "$PC_PORT" 30
    SERVERS+=(peercache)
    PORT[peercache]=$PC_PORT
fi

# Everything on disk and in the page cache before anything is measured: no writeback during
# a run, no first-touch reads in the first one.
sync
find "$OUT/static" "$OUT/cache" -type f -exec cat {} + >/dev/null

# --- correctness: 3 random pieces, whole and one random block, from each server
rand() { echo $(((RANDOM * 32768 + RANDOM) % $1)); }
for ((i = 0; i < 3; i++)); do
    p=$(rand "$NPIECES")
    b=$(rand $((PIECE / BLOCK)))
    start=$((p * PIECE + b * BLOCK))
    dd if="$DATA" of="$OUT/want.piece" iflag=skip_bytes,count_bytes skip=$((p * PIECE)) count="$PIECE" status=none
    dd if="$DATA" of="$OUT/want.block" iflag=skip_bytes,count_bytes skip="$start" count="$BLOCK" status=none
    for s in "${SERVERS[@]}"; do
        url="http://127.0.0.1:${PORT[$s]}/v1/$IH/$p"
        code=$(curl -sS -o "$OUT/got.piece" -w '%{http_code}' "$url") || die "$s: GET $url failed"
        [[ $code == 200 ]] || die "$s: GET $url: status $code, not 200"
        cmp -s "$OUT/want.piece" "$OUT/got.piece" || die "$s: GET $url: not the piece's bytes"
        range="bytes=$((b * BLOCK))-$((b * BLOCK + BLOCK - 1))"
        code=$(curl -sS -o "$OUT/got.block" -w '%{http_code}' -H "Range: $range" "$url") \
            || die "$s: GET $url ($range) failed"
        [[ $code == 206 ]] || die "$s: GET $url ($range): status $code, not 206"
        cmp -s "$OUT/want.block" "$OUT/got.block" || die "$s: GET $url ($range): not the block's bytes"
    done
    log "check: piece $p, block $b: the same bytes from ${SERVERS[*]}"
done

# --- wrk
cat >"$OUT/bench.lua" <<'EOF'
-- args: MODE (block|piece) INFOHASH NPIECES PIECE_LENGTH SEED
local nthreads = 0
function setup(thread)
    nthreads = nthreads + 1
    thread:set("tid", nthreads)
end

function init(args)
    mode = args[1]
    prefix = "/v1/" .. args[2] .. "/"
    npieces = tonumber(args[3])
    nblocks = math.floor(tonumber(args[4]) / 16384)
    -- the same sequence for every server given the same SEED
    math.randomseed(tonumber(args[5]) * 1000 + tid)
end

function request()
    local p = math.random(0, npieces - 1)
    if mode == "block" then
        local s = math.random(0, nblocks - 1) * 16384
        return wrk.format("GET", prefix .. p,
            { ["Range"] = string.format("bytes=%d-%d", s, s + 16383) })
    end
    return wrk.format("GET", prefix .. p)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK_RESULT %d %d %d %d %d %d %d %d %d %d\n",
        summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read,
        e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
EOF
WORKLOADS=(block16k piece)
declare -A MODE=([block16k]=block [piece]=piece) BODY=([block16k]=$BLOCK [piece]=$PIECE)
RESULTS=$OUT/results.tsv
: >"$RESULTS"
# run_wrk WORKLOAD SERVER SECONDS SEED OUTFILE
run_wrk() {
    local w=$1 s=$2 secs=$3 seed=$4 f=$5
    "$WRK" -t"$WRK_THREADS" -c"$C" -d"${secs}s" --timeout 5s -s "$OUT/bench.lua" \
        "http://127.0.0.1:${PORT[$s]}/" -- "${MODE[$w]}" "$IH" "$NPIECES" "$PIECE" "$seed" \
        >"$f" 2>&1 || { cat "$f" >&2; die "wrk failed ($w, $s)"; }
    kill -0 "$( [[ $s == nginx ]] && echo "$NGINX_PID" || echo "$PC_PID")" 2>/dev/null \
        || die "$s died during the $w run"
}
log "warm-up: 1 s per workload and server"
for w in "${WORKLOADS[@]}"; do
    for s in "${SERVERS[@]}"; do run_wrk "$w" "$s" 1 0 "$OUT/warmup.out"; done
done
for ((r = 1; r <= R; r++)); do
    for w in "${WORKLOADS[@]}"; do
        for s in "${SERVERS[@]}"; do
            f=$OUT/wrk.$w.$s.$r.out
            run_wrk "$w" "$s" "$D" "$r" "$f"
            line=$(grep '^WRK_RESULT ' "$f") || { cat "$f" >&2; die "no result line from wrk ($w, $s)"; }
            read -r _ req byt dur st ce re we to p50 p99 <<<"$line"
            printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                "$w" "$s" "$r" "$req" "$byt" "$dur" "$st" "$ce" "$re" "$we" "$to" "$p50" "$p99" >>"$RESULTS"
            log "round $r/$R $w $s: $req requests, $byt bytes in $dur us, $st status >= 400"
            ((st == 0)) || { cat "$f" >&2; die "$s: $st responses with status >= 400 ($w, round $r)"; }
            ((ce + re + we == 0)) || { cat "$f" >&2; die "$s: socket errors: connect $ce, read $re, write $we ($w, round $r)"; }
            ((req > 0)) || die "$s: no requests completed ($w, round $r)"
            # every body complete; at most 2 KiB of headers each (plus what was in flight)
            ((byt >= req * BODY[$w])) || die "$s: $byt bytes for $req requests: shorter than the ${BODY[$w]}-byte bodies ($w, round $r)"
            ((byt <= req * (BODY[$w] + 2048) + C * PIECE)) \
                || die "$s: $byt bytes for $req requests: more than ${BODY[$w]}-byte bodies ($w, round $r)"
        done
    done
done

# --- peak memory, after the runs: VmHWM (kB)
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
PC_HWM=0
[[ -n $PC_PID ]] && PC_HWM=$(hwm "$PC_PID")
NGINX_MASTER_HWM=$(hwm "$NGINX_PID")
NGINX_WORKERS_HWM=0
NGINX_WORKERS=0
for pid in $(ps --ppid "$NGINX_PID" -o pid=); do
    NGINX_WORKERS_HWM=$((NGINX_WORKERS_HWM + $(hwm "$pid")))
    NGINX_WORKERS=$((NGINX_WORKERS + 1))
done

"$PY" - "$RESULTS" "$JSON" "$IH" "$SIZE" "$PIECE" "$D" "$R" "$C" "$WRK_THREADS" "$NGINX_ONLY" \
    "$PC_HWM" "$NGINX_WORKERS_HWM" "$NGINX_WORKERS" "$NGINX_MASTER_HWM" <<'EOF'
import json, statistics, sys
(results, jpath, ih, size, plen, dur, rounds, conns, threads, nginx_only,
 pc_hwm, ng_hwm, ng_workers, ng_master) = sys.argv[1:]
keys = ["workload", "server", "round", "requests", "bytes", "duration_us", "status_errors",
        "connect_errors", "read_errors", "write_errors", "timeouts", "latency_p50_us", "latency_p99_us"]
runs = []
for line in open(results):
    v = line.rstrip("\n").split("\t")
    r = dict(zip(keys, [v[0], v[1]] + [int(x) for x in v[2:]]))
    secs = r["duration_us"] / 1e6
    r["req_per_s"] = r["requests"] / secs
    r["gbit_per_s"] = r["bytes"] * 8 / secs / 1e9
    runs.append(r)
workloads = list(dict.fromkeys(r["workload"] for r in runs))
servers = list(dict.fromkeys(r["server"] for r in runs))
med = {}
print("\n%s: %d pieces of %d KiB (%.0f MiB), %s s per run, median of %s rounds, %s connections,"
      " %s wrk threads" % (ih, int(size) // int(plen), int(plen) // 1024, int(size) / 2**20, dur,
                           rounds, conns, threads))
print("%-12s %-10s %12s %9s %11s %10s %9s %8s" % ("workload", "server", "req/s", "Gbit/s",
      "req/s min", "req/s max", "p99 ms", "non-2xx"))
for w in workloads:
    med[w] = {}
    for s in servers:
        rs = [r for r in runs if r["workload"] == w and r["server"] == s]
        q = [r["req_per_s"] for r in rs]
        m = med[w][s] = {
            "req_per_s": statistics.median(q),
            "gbit_per_s": statistics.median(r["gbit_per_s"] for r in rs),
            "latency_p99_ms": statistics.median(r["latency_p99_us"] for r in rs) / 1000,
            "latency_p50_ms": statistics.median(r["latency_p50_us"] for r in rs) / 1000,
            "status_errors": sum(r["status_errors"] for r in rs),
            "timeouts": sum(r["timeouts"] for r in rs),
        }
        print("%-12s %-10s %12.0f %9.2f %11.0f %10.0f %9.2f %8d" % (w, s, m["req_per_s"],
              m["gbit_per_s"], min(q), max(q), m["latency_p99_ms"], m["status_errors"]))
ratios = {}
if "peercache" in servers and "nginx" in servers:
    parts = []
    for w in workloads:
        a, b = med[w]["peercache"], med[w]["nginx"]
        ratios[w] = {"req_per_s": a["req_per_s"] / b["req_per_s"],
                     "gbit_per_s": a["gbit_per_s"] / b["gbit_per_s"]}
        parts.append("%s req/s %.2f, Gbit/s %.2f" % (w, ratios[w]["req_per_s"], ratios[w]["gbit_per_s"]))
    print("ratio peercache/nginx: " + "; ".join(parts))
mib = lambda kb: int(kb) / 1024
mem = {"nginx_workers_vmhwm_kib": int(ng_hwm), "nginx_workers": int(ng_workers),
       "nginx_master_vmhwm_kib": int(ng_master)}
if "peercache" in servers:
    mem["peercache_vmhwm_kib"] = int(pc_hwm)
print("peak memory (VmHWM): %snginx %.1f MiB (%s workers summed; master %.1f MiB)" % (
      "peercache %.1f MiB, " % mib(pc_hwm) if "peercache" in servers else "",
      mib(ng_hwm), ng_workers, mib(ng_master)))
if jpath:
    with open(jpath, "w") as f:
        json.dump({"config": {"infohash": ih, "size": int(size), "piece_length": int(plen),
                              "duration_s": int(dur), "rounds": int(rounds),
                              "connections": int(conns), "wrk_threads": int(threads),
                              "nginx_worker_processes": 2, "nginx_only": nginx_only == "1"},
                   "runs": runs, "medians": med, "ratios": ratios, "memory": mem},
                  f, indent=2)
        f.write("\n")
EOF
