#!/usr/bin/env bash
# peercache test lab, end to end through an inline box (issue 5): the `bridge` topology of
# netns.sh (pc-sub <-> pc-box <-> pc-up, pc-box an address-less layer-2 bridge), one box
# process bridging bxs0/bxu0 for the whole run, opentracker and two rate-limited libtorrent
# seeders in pc-up, and one download per step by a fresh client on its own subscriber
# address in pc-sub:
#
#   fill              libtorrent at 198.18.0.2 downloads torrent A (the box's cache fills)
#   libtorrent-again  libtorrent at 198.18.0.3 downloads A again (new save dir)
#   aria2-again       aria2c at 198.18.0.4 downloads A again (plain BitTorrent)
#   seeder-freeze     libtorrent at 198.18.0.5 downloads A; the seeder is frozen (SIGSTOP)
#                     as soon as this leecher has its first payload bytes (see below)
#   http              curl at 198.18.0.6 fetches a file from python's http.server at
#                     198.19.0.1:8080 (plain HTTP through the box)
#   encrypted         libtorrent at 198.18.0.7 downloads torrent B (other content) from
#                     the second seeder 198.19.0.3, RC4 forced on both ends
#
# That is profile "plain" (env LAB_INLINE_PROFILE, default plain): every libtorrent with
# MSE/PE off and TCP only, aria2 told to speak plain BitTorrent. Two more profiles run
# STOCK clients (issue 13), where no client setting touches encryption or transports:
#   stock  both seeders at libtorrent's own defaults (MSE "enabled": plaintext and RC4
#          offered; uTP and TCP both on), and
#     fill              libtorrent (stock) at 198.18.0.2 downloads A
#     libtorrent-again  libtorrent (stock) at 198.18.0.3 downloads A again
#     aria2-again       aria2c at its defaults at 198.18.0.4 (no --bt-require-crypto /
#                       --bt-min-crypto-level: aria2 tries MSE first, then plain)
#     qbittorrent-again qbittorrent-nox (Debian's, profile fresh, encryption and uTP/TCP
#                       mixed mode at their defaults; tests/lab/qbt.py) at 198.18.0.8
#     encrypted         libtorrent at 198.18.0.7, RC4 forced on the client only (the stock
#                       seeder 198.19.0.3 then selects RC4), downloads torrent B
#   utp    libtorrent with TCP disabled everywhere (seeders and clients speak uTP only;
#          encryption at libtorrent's default unless LAB_INLINE_UTP_ENCRYPTION=plain):
#     fill, libtorrent-again   as above
# and one where the box is given NO metainfo (issue 14: it must fetch it from the swarm,
# BEP 9, over a management link of its own):
#   fetch  clients and seeders as in plain (plain BitTorrent, TCP only, downloads started
#          from the .torrent, so no client ever exchanges metadata on the wire):
#     fill, libtorrent-again, aria2-again   as in plain
#          LAB_BOX_METAINFO_DIR is an empty directory (the script counts its files before
#          and after: "box.metainfo_files_at_start/_at_end"), and pc-box gets a
#          management link (netns.sh lab_add_box_mgmt: bxm0 198.19.1.1/30 <-> pc-up pcm0,
#          a port of the bridge pcbr0 that then holds pc-up's addresses and 198.19.1.2/30;
#          route to 198.19.0.0/24 via 198.19.1.2), whose address the box command gets as
#          LAB_BOX_MGMT_IP (e.g. for `metainfo_fetch.bind` in a config it writes into
#          LAB_BOX_WORK). Before the steps the script fetches the metadata of torrent A
#          itself over that link, from 198.19.1.1 to the seeder (a BEP 9 exchange in a few
#          lines of Python, "mgmt_link" in the results): the lab's proof that the seeder
#          answers there. Each step records "mgmt" (pcm0's kernel counters in pc-up over the
#          step: what crossed the management link, the box's own connections), besides the
#          usual upstream measurements, which count only the bridged path.
# Lab hygiene stays in every profile (DHT/LSD/PeX/UPnP/NAT-PMP off, each client bound
# to its own lab address, SSRF mitigation off, several connections per IP): it keeps
# the traffic inside the lab and touches neither encryption nor transports.
#
#   tests/lab/inline.sh [RESULTS.json]    (default: env LAB_INLINE_RESULTS, else
#                                          /tmp/peercache-inline/results.json)
#
# The script measures and records; it does not judge (tests/inline.rs does): it exits 0
# once the sequence ran and RESULTS.json is written, even if a step failed (that step
# then says "completed": false; its log is printed and the work dir kept), and non-zero
# only when the lab itself could not run (setup, box command died, ...), or, with
# LAB_INLINE_STRICT=1, when a step did not complete byte-identical.
#
# The box: env LAB_BOX_CMD, run with `bash -c` in pc-box (use `exec` so SIGTERM reaches
# the program), with in its environment:
#   LAB_BOX_SUB_IF=bxs0 LAB_BOX_UP_IF=bxu0   the two ports to bridge (subscriber, upstream)
#   LAB_SUB_NET=198.18.0.0/24 LAB_UP_NET=198.19.0.0/24
#   LAB_BOX_METAINFO_DIR   a directory holding the run's two .torrent files (A and B)
#   LAB_BOX_WORK           an empty directory for it (cache, report, ...)
#   LAB_BOX_REPORT         $LAB_BOX_WORK/report.json: where the run looks for its report
# It is ready when a line of its output contains "bridging" (bounded: LAB_BOX_READY_S,
# default 60); it gets SIGTERM after the last step and LAB_BOX_STOP_S (default 30) seconds
# to exit and write its report. Its output and report are copied beside RESULTS.json
# (box.log, box-report.json). With LAB_BOX_MGMT_IP set (profile fetch) the box command
# also has it in its environment. E.g.
#   LAB_BOX_CMD='exec peercache inline --subscriber-iface "$LAB_BOX_SUB_IF"
#     --upstream-iface "$LAB_BOX_UP_IF" --cache-dir "$LAB_BOX_WORK/cache"
#     --metainfo "$LAB_BOX_METAINFO_DIR" --report "$LAB_BOX_REPORT"' tests/lab/inline.sh
# Without LAB_BOX_CMD pc-box gets the kernel's bridge: the reference that validates the
# lab (every step completes byte-identical; nothing is cached, so upstream ~ 100%).
#
# A tap beside the box (any profile; made for fetch): env LAB_TAP_CMD, run with `bash -c`
# in pc-box in the background for the whole run (use `exec`), started once the box is
# bridging and before the first step, with in its environment LAB_BOX_SUB_IF,
# LAB_SUB_NET, LAB_UP_NET, LAB_BOX_WORK, LAB_BOX_MGMT_IP (empty without a management
# link) and LAB_TAP_REPORT ($LAB_BOX_WORK/tap-report.json). Its stdout goes to
# $LAB_TAP_REPORT (`peercache tap --json` prints its report there on exit), its stderr to
# tap.log. Its cache directory must be $LAB_BOX_WORK/tap-cache (and its HTTP port not the
# box's 9750). Ready when tap.log says "capturing on" (bounded: LAB_TAP_READY_S, default
# 60); SIGTERM after the last step, before the box's, and LAB_TAP_STOP_S (default 30)
# seconds to exit. tap.log and tap-report.json are copied beside RESULTS.json; "tap" in the
# results has its exit code, the report's path, and "cache_ls": `peercache cache ls --json
# --cache-dir $LAB_BOX_WORK/tap-cache` after it stopped ("box.cache_ls" likewise for
# $LAB_BOX_WORK/cache, the box's, if it made one there). The peercache binary for those
# listings: env LAB_PEERCACHE, else `peercache` on PATH, else the repo's
# target/release/peercache. E.g. (fetch)
#   LAB_TAP_CMD='printf "metainfo_fetch:\n  bind: %s\n" "$LAB_BOX_MGMT_IP" >"$LAB_BOX_WORK/tap.yaml"
#     && exec peercache tap --json --iface "$LAB_BOX_SUB_IF" --subscriber-net "$LAB_SUB_NET"
#     --cache-dir "$LAB_BOX_WORK/tap-cache" --http 127.0.0.1:9751 --config "$LAB_BOX_WORK/tap.yaml"'
#
# Upstream bytes of a step ("upstream" in each step), measured two independent ways:
#   seeder_payload_upload_bytes / seeder_total_upload_bytes: the step's seeder's own
#       libtorrent counters (total_payload_upload = piece data it sent; total_upload = all
#       peer-protocol bytes), as the difference of two fresh snapshots (peer.py
#       --stats-file, SIGUSR1) taken before the step and after the client exited;
#   tcp_payload_bytes / tcp_new_payload_bytes: TCP payload bytes sent by the step's server
#       (seeder address 198.19.0.2 or 198.19.0.3, any port: each seeder has an address of
#       its own and binds its connections to it; http 198.19.0.1 port 8080) to any
#       subscriber address, in a capture on pcu0 in pc-up (the upstream side of the
#       box) covering the step: all segments / without retransmissions (tcp_bytes.py);
#       tcp_payload_bytes_all: every TCP payload byte from pc-up to the subscribers in that
#       capture (tracker replies included); if_tx_bytes / if_tx_packets: pcu0's kernel
#       counters (whole frames, ARP and headers included). capture_drops: packets tcpdump
#       lost (kernel drops + filtered but unwritten; should be 0, the tcp_* are then exact).
#   utp_payload_bytes / utp_new_payload_bytes: the same for uTP (the capture takes
#       `tcp or udp`): payload of the ST_DATA packets the step's seeder sent to the
#       subscribers, all / each seq_nr once (tcp_bytes.py); utp_payload_bytes_all: every
#       uTP payload byte from pc-up to the subscribers;
#   upstream_payload_bytes = tcp_payload_bytes + utp_payload_bytes and
#   upstream_new_payload_bytes = tcp_new_payload_bytes + utp_new_payload_bytes: what the
#       server sent on both transports (the seeder's own counters count both already).
# With a box command, "box_metrics" of a step: the changes of the box's Prometheus
# counters (peercache_inline_*, peercache_bt_*, peercache_utp_*,
# peercache_metainfo_fetch_*; LAB_BOX_METRICS_URL,
# default http://127.0.0.1:9750/metrics in pc-box) over the step, its served_blocks /
# served_bytes picked out; the box publishes them about every second, so a step's
# figures may carry a second of its neighbour's.
# "connections" of a step (client_detail.connections): what its peer connections
# actually used (uTP or TCP; RC4, MSE-then-plaintext or plain), from the client itself
# (libtorrent peer_info flags, qBittorrent's peer flags; aria2's info log says nothing
# of it). For every client, upstream.handshakes: how the server's side of each
# connection began on the wire, per transport (plain BitTorrent handshake, or "other":
# for BitTorrent an MSE key exchange; tcp_bytes.py).
# The seeder-freeze step's capture stops before the seeder is resumed (SIGCONT); its
# seeder counters are read after (a frozen process cannot answer), so they may include a
# few bytes it wrote after waking into connections the client had closed.
#
# "Half-way" in seeder-freeze: the client SIGSTOPs the seeder itself (peer.py
# --freeze-pid) as soon as it has received LAB_FREEZE_AT_BYTES payload bytes (default 1,
# i.e. its first data): by then the connection is fully set up (handshake, bitfield,
# unchoke, requests flowing, the first PIECE passed the box), and whatever still comes
# must come from the cache. The step records the payload bytes before/after the freeze,
# those received while frozen, and "completed_while_frozen"; a test can then require e.g.
# that at least half the file arrived after the freeze. With LAB_INLINE_EXPECT_CACHE=0
# (default without LAB_BOX_CMD) the client resumes the seeder after LAB_FREEZE_HOLD_S
# (default 3) seconds, so the step completes through a plain bridge too (and shows what a
# frozen seeder delivers: ~nothing); with 1 (default with LAB_BOX_CMD) the seeder stays
# frozen until the download ends or times out.
#
# Profile "overload" (issue 16): stock clients as in "stock"; step libtorrent-again runs
# while iperf3 floods the box with 64-byte UDP datagrams at full speed from pc-sub to pc-up
# (LAB_FLOOD_S seconds, default 15, from 1 s before the download). The step's "flood"
# records iperf3's result, each namespace's /proc/net/snmp and every veth's counters on
# the path before and after, and the times, so a test can check that the download
# completed byte-identical, that no receiver saw a bad checksum, and that the drop
# counters account for what the receiver missed (tests/inline.rs).
#
# Env: LAB_SIZE_MIB (file size of A and B, 1..256, default 8), LAB_PIECE_KIB (16..4096,
#      default 64), LAB_UPLOAD_LIMIT (each seeder's upload limit in bytes/s, default
#      1048576; 0: none), LAB_FREEZE_AT_BYTES, LAB_FREEZE_HOLD_S, LAB_INLINE_EXPECT_CACHE
#      (above), LAB_STEP_TIMEOUT_S (per download; default 3 x size/limit + 60),
#      LAB_INLINE_PROFILE (plain|stock|utp|fetch|overload), LAB_FLOOD_S (overload: the
#      flood's seconds, default 15), LAB_FLOOD_KIND (overload: udp64, the default, or
#      tcp: one iperf3 TCP flow instead, for the bench's "while serving" rows), LAB_INLINE_UTP_ENCRYPTION (default|plain),
#      LAB_INLINE_STEPS (comma list, a subset of the profile's steps in the same order;
#      default all of them), LAB_QBT_WEBUI_PORT (default 18080, in pc-sub),
#      LAB_INLINE_STRICT=1, LAB_KEEP=1 (keep the work dir), LAB_WAIT_S (wait up to N s
#      while the lab is busy; default 0), LAB_TAP_CMD, LAB_TAP_READY_S, LAB_TAP_STOP_S,
#      LAB_PEERCACHE (above); LAB_BOX_LOG is set by the script.
# Needs root and the packages of tests/lab/install.sh.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=netns.sh
source "$LAB_DIR/netns.sh"

PY=/usr/bin/python3
PEER="$LAB_DIR/peer.py"
BT_PORT=6881
TRACKER_PORT=6969
TRACKER_URL="http://$LAB_TRACKER_IP:$TRACKER_PORT/announce"
HTTP_IP=$LAB_TRACKER_IP
HTTP_PORT=8080
ALL_STEPS=(fill libtorrent-again aria2-again seeder-freeze http encrypted)   # profile plain
STOCK_STEPS=(fill libtorrent-again aria2-again qbittorrent-again encrypted)
UTP_STEPS=(fill libtorrent-again)
FETCH_STEPS=(fill libtorrent-again aria2-again)
OVERLOAD_STEPS=(fill libtorrent-again)
FLOOD_PORT=5301
MIB=$((1024 * 1024))

WORK=""
CAP_PID=""
TAP_PID=""       # LAB_TAP_CMD's pid (tap_start)
MGMT=0           # 1: pc-box has its management link (profile fetch)
M_MGMT0=()
SEEDER_PIDS=()   # python pids of the seeders (for SIGCONT in cleanup)
declare -A SERVER_PIDS   # tracker, seeder, seeder-enc, http-server -> pid (lab_bg)
STEP_FAILED=0

int_env() {
    local v=${!1:-$2}
    [[ $v =~ ^[0-9]+$ ]] && ((10#$v >= $3 && 10#$v <= $4)) \
        || lab_die "$1 must be an integer in $3..$4 (got '$v')"
    echo "$((10#$v))"
}

on_signal() {
    lab_log "caught SIG$1, cleaning up"
    if [[ $1 == INT ]]; then exit 130; fi
    exit 143
}

print_logs() {
    local f
    for f in "$WORK"/*.log "$WORK"/box/*.log; do
        [[ -f $f ]] || continue
        echo "----- $f (last 40 lines)" >&2
        tail -n 40 "$f" >&2
    done
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${SEEDER_PIDS[@]:-}"; do
        [[ -n $pid ]] && kill -CONT "$pid" 2>/dev/null || true
    done
    if [[ -n $CAP_PID ]]; then lab_stop "$CAP_PID" INT 50; fi
    if [[ -n $TAP_PID ]]; then lab_stop "$TAP_PID" TERM 100; fi
    if [[ -n ${LAB_BOX_KIND:-} ]]; then lab_box_bridge_stop || true; fi
    lab_teardown
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $rc != 0 ]]; then
            print_logs
            lab_log "FAILED (exit $rc); work dir kept: $WORK"
        elif [[ ${LAB_KEEP:-0} == 1 || $STEP_FAILED == 1 ]]; then
            lab_log "work dir kept: $WORK"
        else
            rm -rf -- "$WORK"
        fi
    fi
    exit "$rc"
}

need_root_and_tools() {
    [[ $(id -u) == 0 ]] || lab_die "must run as root (network namespaces)"
    local t
    for t in ip ethtool ping ss tcpdump opentracker aria2c curl timeout; do
        command -v "$t" >/dev/null || lab_die "missing $t (run tests/lab/install.sh)"
    done
    if [[ ${PROFILE:-plain} == stock ]]; then
        command -v qbittorrent-nox >/dev/null || lab_die "missing qbittorrent-nox (run tests/lab/install.sh)"
    fi
    if [[ ${PROFILE:-plain} == overload ]]; then
        command -v iperf3 >/dev/null || lab_die "missing iperf3 (run tests/lab/install.sh)"
    fi
    "$PY" -c 'import libtorrent' 2>/dev/null || lab_die "python3-libtorrent missing for $PY"
}

json_get() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# ---- results: one "key<TAB>type<TAB>value" file per step (type s string, n number,
# b bool, j JSON file, z null; dotted keys nest), assembled by write_results.
STEP_KV=""
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$STEP_KV"; }
STEP_NO=0
step_open() { # NAME CLIENT [again: start the same step over]
    [[ ${3:-} == again ]] || STEP_NO=$((STEP_NO + 1))
    STEP_KV=$(printf '%s/steps/%02d-%s.kv' "$WORK" "$STEP_NO" "$1")
    : >"$STEP_KV"
    put name s "$1"
    put client s "$2"
    lab_log "=== step $STEP_NO: $1 ($2)${3:+ (again)}"
}

# ---- measurements around a step
# cap_start NAME: tcpdump on the upstream veth (pcu0 in pc-up), TCP and UDP (uTP) headers
# only.
cap_start() {
    local pcap="$WORK/cap/$1.pcap" log="$WORK/cap/$1.tcpdump.log" i
    # --immediate-mode: every packet is handed to tcpdump at once (otherwise the kernel
    # ring's last, partly filled block may still be unread when tcpdump stops)
    lab_bg "$LAB_UP_NS" "$log" tcpdump -i "$LAB_UP_IF" -n -s 160 -B 16384 --immediate-mode \
        -U -Z root -w "$pcap" 'tcp or udp'
    CAP_PID=$LAB_LAST_PID
    for ((i = 0; i < 50; i++)); do
        grep -q 'listening on' "$log" 2>/dev/null && break
        kill -0 "$CAP_PID" 2>/dev/null || { cat "$log" >&2; lab_die "tcpdump died"; }
        sleep 0.1
    done
    grep -q 'listening on' "$log" || lab_die "tcpdump not listening on $LAB_UP_IF"
    CAP_PCAP=$pcap
    CAP_LOG=$log
}
# cap_stop: sets CAP_DROPS = packets the kernel dropped + packets that passed the filter
# but never reached the file (-1: tcpdump printed no statistics).
cap_stop() {
    local dropped captured received
    sleep 0.5   # the last ACKs/FINs
    lab_stop "$CAP_PID" INT 100
    CAP_PID=""
    dropped=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$CAP_LOG")
    captured=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$CAP_LOG")
    received=$(sed -n 's/^\([0-9]*\) packets\{0,1\} received by filter.*/\1/p' "$CAP_LOG")
    if [[ -n $dropped && -n $captured && -n $received ]]; then
        CAP_DROPS=$((dropped + received - captured))
    else
        CAP_DROPS=-1
    fi
    ((CAP_DROPS == 0)) || lab_log "WARNING: capture $CAP_PCAP incomplete ($(tr '\n' ' ' <"$CAP_LOG"))"
}

# seeder_snapshot STATS_FILE PID: fresh upload counters of a seeder (SIGUSR1, then wait,
# bounded, until its stats file was rewritten twice: the second write began after the
# signal). Prints "payload total".
stat_field() { sed -n "s/.*\"$2\": \\([0-9]*\\).*/\\1/p" "$1"; }
seeder_snapshot() {
    local f=$1 pid=$2 seq0 seq i
    seq0=$(stat_field "$f" seq)
    if kill -USR1 "$pid" 2>/dev/null; then
        for ((i = 0; i < 50; i++)); do
            seq=$(stat_field "$f" seq)
            [[ -n $seq && -n $seq0 ]] && ((seq >= seq0 + 2)) && break
            sleep 0.1
        done
        ((i < 50)) || lab_log "warning: seeder $pid did not refresh $f"
    else
        lab_log "warning: seeder $pid is gone; its last counters are used"
    fi
    echo "$(stat_field "$f" total_payload_upload) $(stat_field "$f" total_upload)"
}

# box_metrics OUT: the box's Prometheus counters now (peercache_inline_*, _bt_*, _utp_*,
# _metainfo_fetch_*)
# as a JSON object {"name{labels}": value}; {} without a box command or when it does not
# answer (bounded: 3 s).
box_metrics() {
    if [[ ${LAB_BOX_KIND:-} != command ]]; then echo '{}' >"$1"; return 0; fi
    lab_in "$LAB_BOX_NS" curl -s --max-time 3 "${LAB_BOX_METRICS_URL:-http://127.0.0.1:9750/metrics}" 2>/dev/null \
        | "$PY" -c '
import json, re, sys
out = {}
for line in sys.stdin:
    m = re.match(r"(peercache_(?:inline|bt|utp|metainfo_fetch)_[A-Za-z0-9_]*(?:\{[^}]*\})?)\s+([0-9.eE+-]+)$", line.strip())
    if m:
        out[m.group(1)] = float(m.group(2))
json.dump(out, sys.stdout, sort_keys=True)' >"$1" 2>/dev/null || echo '{}' >"$1"
}

# mgmt_stats ARRAY: pc-up's kernel counters of its end of the box's management link
# (pcm0): tx_bytes tx_packets rx_bytes rx_packets (tx: what pc-up sent the box's own
# connections; whole frames).
mgmt_stats() {
    local -n _out=$1
    local c
    _out=()
    for c in tx_bytes tx_packets rx_bytes rx_packets; do
        _out+=("$(lab_if_stat "$LAB_UP_NS" "$LAB_UP_MGMT_IF" "$c")")
    done
}

# measure_begin NAME SEEDER_STATS SEEDER_PID (the last two empty: no seeder)
measure_begin() {
    M_SEEDER_STATS=$2
    M_SEEDER_PID=$3
    if [[ -n $M_SEEDER_PID ]]; then
        read -r M_PAY0 M_TOT0 < <(seeder_snapshot "$M_SEEDER_STATS" "$M_SEEDER_PID")
    fi
    M_TX0=$(lab_if_stat "$LAB_UP_NS" "$LAB_UP_IF" tx_bytes)
    M_TXP0=$(lab_if_stat "$LAB_UP_NS" "$LAB_UP_IF" tx_packets)
    if ((MGMT)); then mgmt_stats M_MGMT0; fi
    box_metrics "$WORK/cap/$STEP_NO.box0.json"
    cap_start "$1"
    M_T0=$(date +%s.%N)
}

# measure_end SERVER_IP [SERVER_PORT]: stop the capture, resume the seeder (SIGCONT, a
# no-op unless frozen), read its counters, count the capture; writes "upstream.*".
measure_end() {
    local ip=$1 port=${2:-} t1 tx1 txp1 pay1 tot1 counts all sport=()
    t1=$(date +%s.%N)
    cap_stop
    tx1=$(lab_if_stat "$LAB_UP_NS" "$LAB_UP_IF" tx_bytes)
    txp1=$(lab_if_stat "$LAB_UP_NS" "$LAB_UP_IF" tx_packets)
    if ((MGMT)); then
        local -a m1
        mgmt_stats m1
        put mgmt.if_tx_bytes n $((m1[0] - M_MGMT0[0]))
        put mgmt.if_tx_packets n $((m1[1] - M_MGMT0[1]))
        put mgmt.if_rx_bytes n $((m1[2] - M_MGMT0[2]))
        put mgmt.if_rx_packets n $((m1[3] - M_MGMT0[3]))
    fi
    put wall_seconds n "$(awk -v a="$M_T0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')"
    if [[ -n $M_SEEDER_PID ]]; then
        kill -CONT "$M_SEEDER_PID" 2>/dev/null || true
        read -r pay1 tot1 < <(seeder_snapshot "$M_SEEDER_STATS" "$M_SEEDER_PID")
        put upstream.seeder_payload_upload_bytes n $((pay1 - M_PAY0))
        put upstream.seeder_total_upload_bytes n $((tot1 - M_TOT0))
    else
        put upstream.seeder_payload_upload_bytes z ""
        put upstream.seeder_total_upload_bytes z ""
    fi
    counts="$WORK/cap/$STEP_NO.server.json"
    all="$WORK/cap/$STEP_NO.all.json"
    [[ -n $port ]] && sport=(--sport "$port")
    "$PY" "$LAB_DIR/tcp_bytes.py" "$CAP_PCAP" --src "$ip" "${sport[@]}" \
        --dst-net "$LAB_SUB_NET" >"$counts"
    "$PY" "$LAB_DIR/tcp_bytes.py" "$CAP_PCAP" --dst-net "$LAB_SUB_NET" >"$all"
    put upstream.server s "$ip${port:+:$port}"
    local tcp tcpn utp utpn
    tcp=$(json_get "$(cat "$counts")" payload_bytes)
    tcpn=$(json_get "$(cat "$counts")" new_payload_bytes)
    utp=$(json_get "$(cat "$counts")" utp_payload_bytes)
    utpn=$(json_get "$(cat "$counts")" utp_new_payload_bytes)
    put upstream.tcp_payload_bytes n "$tcp"
    put upstream.tcp_new_payload_bytes n "$tcpn"
    put upstream.tcp_payload_bytes_all n "$(json_get "$(cat "$all")" payload_bytes)"
    put upstream.utp_payload_bytes n "$utp"
    put upstream.utp_new_payload_bytes n "$utpn"
    put upstream.utp_payload_bytes_all n "$(json_get "$(cat "$all")" utp_payload_bytes)"
    put upstream.upstream_payload_bytes n $((tcp + utp))
    put upstream.upstream_new_payload_bytes n $((tcpn + utpn))
    put upstream.tcp_counts j "$counts"
    "$PY" -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["handshakes"], sys.stdout)' \
        "$counts" >"$counts.hs"
    put upstream.handshakes j "$counts.hs"
    put upstream.if_tx_bytes n $((tx1 - M_TX0))
    put upstream.if_tx_packets n $((txp1 - M_TXP0))
    put upstream.capture_drops n "$CAP_DROPS"
    put upstream.capture s "$CAP_PCAP"
    if [[ ${LAB_BOX_KIND:-} == command ]]; then
        sleep 1.2   # the box publishes its counters about every second
        box_metrics "$WORK/cap/$STEP_NO.box1.json"
        "$PY" - "$WORK/cap/$STEP_NO.box0.json" "$WORK/cap/$STEP_NO.box1.json" \
            >"$WORK/cap/$STEP_NO.boxdelta.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
d = {k: v - a.get(k, 0) for k, v in b.items() if v != a.get(k, 0)}
d = {k: int(v) if float(v).is_integer() else v for k, v in d.items()}
out = {"answered": bool(b), "delta": d,
       "served_blocks": d.get("peercache_inline_served_blocks_total", 0) if b else None,
       "served_bytes": d.get("peercache_inline_served_bytes_total", 0) if b else None}
json.dump(out, sys.stdout, sort_keys=True)
EOF
        put box_metrics j "$WORK/cap/$STEP_NO.boxdelta.json"
    fi
}

# step_result OK SHA: the common verdict fields; logs and keeps the work dir on failure.
step_result() { # COMPLETED(true|false) SHA256 EXPECTED_SHA256 LOG
    local ok=$1 sha=$2 want=$3 log=$4 same=false
    [[ -n $sha && $sha == "$want" ]] && same=true
    put completed b "$ok"
    put sha256 s "$sha"
    put expected_sha256 s "$want"
    put sha256_ok b "$same"
    put log s "$RDIR/logs/$(basename "$log")"   # copied there at the end
    if [[ $ok != true || $same != true ]]; then
        STEP_FAILED=1
        lab_log "step failed (completed=$ok, byte-identical=$same); log $log:"
        tail -n 40 "$log" >&2 || true
    fi
}

# add_sub_ip IP: a subscriber address for one client (unless there already: 198.18.0.2,
# or a step run again)
add_sub_ip() {
    lab_in "$LAB_SUB_NS" ip -o -4 addr show dev "$LAB_SUB_IF" | grep -q " $1/" || lab_add_sub_ip "$1"
}

# ---- profile overload: a UDP flood through the box around one step
# flood_counters FILE: every namespace's /proc/net/snmp and the path's veth counters, as
# JSON.
flood_counters() {
    local ns_if entries=() ns iface stat
    for ns_if in "$LAB_SUB_NS:$LAB_SUB_IF" "$LAB_BOX_NS:$LAB_BOX_SUB_IF" \
        "$LAB_BOX_NS:$LAB_BOX_UP_IF" "$LAB_UP_NS:$LAB_UP_IF"; do
        ns=${ns_if%%:*} iface=${ns_if#*:}
        for stat in rx_packets tx_packets rx_dropped tx_dropped; do
            entries+=("veth.$iface.$stat=$(lab_if_stat "$ns" "$iface" "$stat")")
        done
    done
    for ns in "$LAB_SUB_NS" "$LAB_UP_NS"; do
        lab_in "$ns" cat /proc/net/snmp >"$WORK/flood.$ns.snmp"
        entries+=("snmp.$ns=$WORK/flood.$ns.snmp")
    done
    "$PY" - "$1" "${entries[@]}" <<'PYEOF'
import json, sys
out, d = sys.argv[1], {"veth": {}, "snmp": {}}
for e in sys.argv[2:]:
    k, v = e.split("=", 1)
    kind, rest = k.split(".", 1)
    if kind == "veth":
        iface, stat = rest.rsplit(".", 1)
        d["veth"].setdefault(iface, {})[stat] = int(v)
    else:
        lines = [l.split() for l in open(v)]
        snmp = {}
        for names, vals in zip(lines[0::2], lines[1::2]):
            proto = names[0].rstrip(":")
            snmp[proto] = {n: int(x) for n, x in zip(names[1:], vals[1:])}
        d["snmp"][rest] = snmp
json.dump(d, open(out, "w"), indent=1)
PYEOF
}

flood_start() {
    FLOOD_S=$(int_env LAB_FLOOD_S 15 3 600)
    local how=(-u -b 0 -l 64)
    case ${LAB_FLOOD_KIND:-udp64} in
    udp64) ;;
    tcp) how=() ;;
    *) lab_die "LAB_FLOOD_KIND must be udp64 or tcp (got '$LAB_FLOOD_KIND')" ;;
    esac
    lab_bg "$LAB_UP_NS" "$WORK/flood-server.log" iperf3 -s -B "$LAB_SEEDER_IP" -p "$FLOOD_PORT"
    FLOOD_SERVER=$LAB_LAST_PID
    lab_wait_port "$LAB_UP_NS" "$LAB_SEEDER_IP" "$FLOOD_PORT" 50 || lab_die "iperf3 server did not start"
    flood_counters "$WORK/flood-before.json"
    FLOOD_T0=$(date +%s.%N)
    rm -f "$WORK/flood-ended"
    (
        lab_in "$LAB_SUB_NS" timeout $((FLOOD_S + 30)) iperf3 -c "$LAB_SEEDER_IP" \
            -p "$FLOOD_PORT" -B "$LAB_SUB_IP" "${how[@]}" -t "$FLOOD_S" -J \
            >"$WORK/flood-iperf.json" 2>"$WORK/flood-client.log"
        rc=$?
        date +%s.%N >"$WORK/flood-ended"
        exit "$rc"
    ) &
    FLOOD_CLIENT=$!
    lab_log "flood: iperf3 ${LAB_FLOOD_KIND:-udp64} at full speed, $FLOOD_S s"
    sleep 1
}

# flood_stop: after the step (its STEP_KV still open): wait for the flood's end, then the
# counters again; writes "flood.*" into the step.
flood_stop() {
    local t_step_end rc=0
    t_step_end=$(date +%s.%N)
    wait "$FLOOD_CLIENT" || rc=$?
    sleep 1   # what is still in flight lands (or is dropped) before the counters are read
    flood_counters "$WORK/flood-after.json"
    lab_stop "$FLOOD_SERVER" TERM 50
    put flood.seconds n "$FLOOD_S"
    put flood.kind s "${LAB_FLOOD_KIND:-udp64}"
    put flood.client_exit n "$rc"
    put flood.started_unix n "$FLOOD_T0"
    put flood.step_ended_unix n "$t_step_end"
    put flood.ended_unix n "$(cat "$WORK/flood-ended" 2>/dev/null || echo 0)"
    if [[ -s $WORK/flood-iperf.json ]]; then put flood.iperf j "$WORK/flood-iperf.json"
    else put flood.iperf z ""; fi
    put flood.before j "$WORK/flood-before.json"
    put flood.after j "$WORK/flood-after.json"
    put flood.interfaces s "$LAB_SUB_IF $LAB_BOX_SUB_IF $LAB_BOX_UP_IF $LAB_UP_IF"
    put flood.namespaces s "$LAB_SUB_NS $LAB_UP_NS"
    lab_log "flood ended (iperf3 exit $rc)"
}

box_alive() {
    [[ ${LAB_BOX_KIND:-} != command ]] || kill -0 "$LAB_BOX_PID" 2>/dev/null
}

# ---- the tap beside the box (LAB_TAP_CMD; see the header)
# tap_start: run it in pc-box, stdout -> $LAB_TAP_REPORT, stderr -> $WORK/tap.log; wait
# (bounded) until it says "capturing on".
tap_start() {
    local log="$WORK/tap.log" ready_s i
    ready_s=$(int_env LAB_TAP_READY_S 60 1 600)
    : >"$log"
    # as lab_bg, but stdout and stderr apart; the lab's lock stays with this shell
    ip netns exec "$LAB_BOX_NS" env LAB_BOX_SUB_IF="$LAB_BOX_SUB_IF" LAB_SUB_NET="$LAB_SUB_NET" \
        LAB_UP_NET="$LAB_UP_NET" LAB_BOX_WORK="$LAB_BOX_WORK" \
        LAB_BOX_MGMT_IP="${LAB_BOX_MGMT_IP:-}" LAB_TAP_REPORT="$LAB_TAP_REPORT" \
        bash -c "$LAB_TAP_CMD" >"$LAB_TAP_REPORT" 2>"$log" {LAB_LOCK_FD}>&- &
    TAP_PID=$!
    LAB_PIDS+=("$TAP_PID")
    for ((i = 0; i < ready_s * 10; i++)); do
        grep -q 'capturing on' "$log" 2>/dev/null && break
        if ! kill -0 "$TAP_PID" 2>/dev/null; then
            cat "$log" >&2
            lab_die "tap command exited before it was capturing (log: $log)"
        fi
        sleep 0.1
    done
    grep -q 'capturing on' "$log" \
        || { cat "$log" >&2; lab_die "tap command not capturing after ${ready_s}s (log: $log)"; }
    lab_log "tap command capturing on $LAB_BOX_SUB_IF in $LAB_BOX_NS (pid $TAP_PID, log $log)"
}

# tap_stop: SIGTERM, LAB_TAP_STOP_S (default 30) seconds to exit, then SIGKILL. Sets
# TAP_EXIT: its exit status or "killed".
tap_stop() {
    local stop_s i rc=0
    stop_s=$(int_env LAB_TAP_STOP_S 30 1 600)
    TAP_EXIT=""
    if kill -0 "$TAP_PID" 2>/dev/null; then
        kill -TERM "$TAP_PID" 2>/dev/null || true
        for ((i = 0; i < stop_s * 10; i++)); do
            kill -0 "$TAP_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$TAP_PID" 2>/dev/null; then
            lab_log "tap command (pid $TAP_PID) ignored SIGTERM for ${stop_s}s, killing"
            kill -KILL "$TAP_PID" 2>/dev/null || true
            TAP_EXIT=killed
        fi
    fi
    wait "$TAP_PID" 2>/dev/null || rc=$?
    [[ -n $TAP_EXIT ]] || TAP_EXIT=$rc
    TAP_PID=""
    lab_log "tap command stopped (exit $TAP_EXIT)"
}

# peercache_bin: the binary for `cache ls` (LAB_PEERCACHE, PATH, the repo's release build);
# empty if none.
peercache_bin() {
    local b=${LAB_PEERCACHE:-}
    [[ -n $b ]] || b=$(command -v peercache 2>/dev/null || true)
    [[ -n $b ]] || b="$LAB_DIR/../../target/release/peercache"
    if [[ -x $b ]]; then echo "$b"; fi
}

# put_cache_ls KEY DIR: `peercache cache ls --json --cache-dir DIR` into the results at KEY
# (null, and KEY_error saying why, when that fails or there is no binary).
put_cache_ls() {
    local key=$1 dir=$2 bin out="$WORK/$1.cache-ls.json" err="$WORK/$1.cache-ls.err"
    bin=$(peercache_bin)
    if [[ -z $bin ]]; then
        put "$key" z ""
        put "${key}_error" s "no peercache binary (LAB_PEERCACHE)"
    elif "$bin" cache ls --json --cache-dir "$dir" >"$out" 2>"$err"; then
        put "$key" j "$out"
    else
        put "$key" z ""
        put "${key}_error" s "$(tr '\n' ' ' <"$err")"
    fi
}

# mgmt_probe INFO_HASH SEEDER_IP: the lab's own check of the box's management link: from
# 198.19.1.1 in pc-box, a BitTorrent connection to the seeder (port BT_PORT) that asks for
# the swarm's metadata (BEP 10 handshake, BEP 9 ut_metadata requests; never a piece) and
# checks that it hashes to the info-hash. Prints a JSON object; bounded (about 15 s).
mgmt_probe() {
    lab_in "$LAB_BOX_NS" timeout -k 2 20 "$PY" - "$LAB_BOX_MGMT_IP" "$2" "$BT_PORT" "$1" <<'EOF'
import hashlib, json, os, socket, struct, sys, time

src, dst, port, ih = sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
out = {"from": src, "to": "%s:%d" % (dst, port), "connected": False, "handshake_ok": False,
       "extension_bit": False, "ut_metadata": None, "metadata_size": None,
       "metadata_ok": False, "error": None}
t0 = time.monotonic()


def benc(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    return b"d" + b"".join(benc(k) + benc(v) for k, v in sorted(x.items())) + b"e"


def bdec(b, i=0):  # -> (value, end)
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while b[i:i + 1] != b"e":
            v, i = bdec(b, i)
            items.append(v)
        if c == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2])), i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("closed by the peer")
        buf += d
    return buf


try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    s.connect((dst, port))
    out["connected"] = True
    reserved = bytearray(8)
    reserved[5] |= 0x10  # BEP 10
    # peer id: not Azureus-style (no client code of anyone's), recognisable in the seeder's log
    s.sendall(b"\x13BitTorrent protocol" + bytes(reserved) + ih + b"peercache-lab-probe-")
    hs = recv_exact(s, 68)
    out["handshake_ok"] = hs[:20] == b"\x13BitTorrent protocol" and hs[28:48] == ih
    out["extension_bit"] = bool(hs[25] & 0x10)
    ext = benc({"m": {"ut_metadata": 3}})
    s.sendall(struct.pack(">IBB", len(ext) + 2, 20, 0) + ext)
    pieces, size = {}, None
    while True:
        if time.monotonic() - t0 > 12:
            out["error"] = "no metadata within 12 s"
            break
        m = recv_exact(s, struct.unpack(">I", recv_exact(s, 4))[0])
        if len(m) < 2 or m[0] != 20:
            continue
        if m[1] == 0:
            d, _ = bdec(m, 2)
            out["ut_metadata"] = d.get(b"m", {}).get(b"ut_metadata")
            size = out["metadata_size"] = d.get(b"metadata_size")
            if not out["ut_metadata"] or not size:
                out["error"] = "no ut_metadata / metadata_size in the extended handshake"
                break
            for p in range((size + 16383) // 16384):
                r = benc({"msg_type": 0, "piece": p})
                s.sendall(struct.pack(">IBB", len(r) + 2, 20, out["ut_metadata"]) + r)
        elif m[1] == 3:
            d, end = bdec(m, 2)
            if d.get(b"msg_type") == 2:
                out["error"] = "request rejected"
                break
            if d.get(b"msg_type") == 1:
                pieces[d[b"piece"]] = m[end:]
            if size and sum(map(len, pieces.values())) >= size:
                data = b"".join(pieces[k] for k in sorted(pieces))
                out["metadata_ok"] = hashlib.sha1(data).digest() == ih
                break
    s.close()
except Exception as e:  # recorded; the judge reads it
    out["error"] = "%s: %s" % (type(e).__name__, e)
out["seconds"] = round(time.monotonic() - t0, 3)
json.dump(out, sys.stdout, sort_keys=True)
EOF
}

# ---- the clients
# libtorrent_step NAME IP TORRENT SHA ENC TRANSPORT SEEDER_IP STATS PID [peer.py leech args...]
# (ENC plain|rc4|default, TRANSPORT tcp|utp|default: peer.py's --encryption/--transport)
# python3-libtorrent 2.0.8 very rarely segfaults in a client (seen twice in ~25 runs of
# 8 MiB, never in the box's favour or against it): a client killed by a signal, with no
# verdict written, is run once more, from scratch (new measurements); the step then
# records "crashed_attempt_exit_code".
libtorrent_step() {
    local attempt crash=""
    for attempt in 1 2; do
        libtorrent_attempt "$attempt" "$crash" "$@"
        [[ -n $LT_CRASH ]] || break
        crash=$LT_CRASH
        ((attempt == 1)) && lab_log "$1: libtorrent client died of a signal (exit $crash, log $WORK/$1.log); once more"
    done
}

libtorrent_attempt() {
    local attempt=$1 crash=$2 name=$3 ip=$4 torrent=$5 sha=$6 enc=$7 transport=$8 sip=$9
    local stats=${10} spid=${11}
    shift 11
    local truth="$WORK/$name.truth.json" log="$WORK/$name.log" rc=0 ok=false got=""
    LT_CRASH=""
    if ((attempt == 1)); then
        step_open "$name" libtorrent
    else
        mv -f "$log" "$WORK/$name.crashed.log"
        rm -rf -- "$WORK/dl/$name" "$truth"
        step_open "$name" libtorrent again
        put crashed_attempt_exit_code n "$crash"
    fi
    put leecher_ip s "$ip"
    put encryption s "$enc"
    put transport s "$transport"
    put file_size n "$SIZE"
    add_sub_ip "$ip"
    measure_begin "$name" "$stats" "$spid"
    # shellcheck disable=SC2086  # LAB_LEECH_WRAP: a debugging prefix, e.g.
    # 'gdb -q -batch -ex run -ex "thread apply all bt" --args' (a client crash's stack)
    lab_in "$LAB_SUB_NS" timeout -k 5 $((STEP_TMO + 90)) ${LAB_LEECH_WRAP:-} "$PY" "$PEER" leech \
        --torrent "$torrent" --save-dir "$WORK/dl/$name" \
        --listen "$ip:$BT_PORT" --outgoing-interfaces "$ip" --encryption "$enc" \
        --transport "$transport" \
        --expect-sha256 "$sha" --truth "$truth" --timeout "$STEP_TMO" --recheck \
        "$@" 2>"$log" || rc=$?
    measure_end "$sip"
    put exit_code n "$rc"
    # 124: timeout's verdict (not a crash); > 128: killed by a signal
    if ((attempt == 1 && rc > 128)) && [[ ! -f $truth ]]; then
        LT_CRASH=$rc
        return 0
    fi
    if [[ -f $truth ]]; then
        put client_detail j "$truth"
        [[ $(json_get "$(cat "$truth")" completed) == True ]] && ok=true
        if [[ $ok == true ]]; then
            got=$(json_get "$(cat "$truth")" sha256)
            put download_seconds n "$(json_get "$(cat "$truth")" download_seconds)"
            # libtorrent's own check: no piece failed its SHA-1 on the way, and a full
            # recheck of the file on disk passes
            if [[ $(json_get "$(cat "$truth")" recheck_ok) == True \
                && $(json_get "$(cat "$truth")" hash_failures) == 0 ]]; then
                put client_hash_check_ok b true
            else
                put client_hash_check_ok b false
            fi
        fi
    fi
    if [[ $ok != true ]]; then
        put download_seconds z ""
        put client_hash_check_ok b false
    fi
    step_result "$ok" "$got" "$sha" "$log"
    [[ $ok == true ]] && lab_log "$name: done in $(json_get "$(cat "$truth")" download_seconds)s"
    rm -rf -- "$WORK/dl/$name"   # checked: keep the disk use flat
}

aria2_step() { # NAME IP
    local name=$1 ip=$2 log="$WORK/$1.log" alog="$WORK/$1.aria2.log" rc=0 ok=false got=""
    local dir="$WORK/dl/$1" t0 t1 wrong check_rc=0
    step_open "$name" aria2
    put client_version s "$(aria2c --version | awk 'NR==1{print $3}')"
    put leecher_ip s "$ip"
    put encryption s "$ARIA2_ENC"
    put transport s tcp   # aria2 speaks no uTP
    put file_size n "$SIZE"
    add_sub_ip "$ip"
    measure_begin "$name" "$SEEDER_STATS" "$SEEDER_PID"
    t0=$(date +%s.%N)
    # profile plain: plain BitTorrent only (no MSE/PE); stock: aria2's own defaults
    # (ARIA2_CRYPTO empty). Either way every socket bound to its address, no DHT/LSD/PeX
    # (lab hygiene), exits when done (--seed-time=0); aria2 checks every piece's SHA-1 as
    # it arrives (--check-integrity; a bad piece logs "We got wrong piece") and the whole
    # file before it would seed (--bt-hash-check-seed)
    # shellcheck disable=SC2086  # ARIA2_CRYPTO: zero or two flags
    lab_in "$LAB_SUB_NS" timeout -k 5 $((STEP_TMO + 30)) aria2c \
        --no-conf=true --dir="$dir" --seed-time=0 --interface="$ip" \
        --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false $ARIA2_CRYPTO --disable-ipv6=true \
        --listen-port="$BT_PORT" --file-allocation=none \
        --timeout=30 --connect-timeout=10 --bt-stop-timeout="$STEP_TMO" \
        --bt-tracker-connect-timeout=10 --bt-tracker-timeout=20 \
        --summary-interval=0 --console-log-level=notice \
        --log="$alog" --log-level=info --enable-color=false \
        --check-integrity=true --bt-hash-check-seed=true --auto-save-interval=0 \
        "$TORRENT_A" >"$log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    measure_end "$LAB_SEEDER_IP"
    put exit_code n "$rc"
    put download_seconds n "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')"
    wrong=$(grep -c 'We got wrong piece' "$alog" 2>/dev/null || true)
    put hash_failures n "${wrong:-0}"
    if [[ $rc == 0 && -f $dir/$NAME_A ]]; then
        ok=true
        got=$(sha256sum "$dir/$NAME_A" | awk '{print $1}')
        # aria2's own verdict on the file on disk: a second aria2c that only checks
        # every piece hash (--hash-check-only) and exits 0 when all pass
        lab_in "$LAB_SUB_NS" timeout -k 5 120 aria2c --no-conf=true --dir="$dir" \
            --interface="$ip" --check-integrity=true --hash-check-only=true \
            --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
            --disable-ipv6=true --summary-interval=0 --console-log-level=notice \
            --enable-color=false "$TORRENT_A" >>"$log" 2>&1 || check_rc=$?
        put hash_check_only_exit_code n "$check_rc"
        if [[ $check_rc == 0 && ${wrong:-0} == 0 ]] && grep -q 'Verification finished successfully' "$log"; then
            put client_hash_check_ok b true
        else
            put client_hash_check_ok b false
        fi
    else
        put client_hash_check_ok b false
    fi
    cat "$alog" >>"$log" 2>/dev/null || true
    step_result "$ok" "$got" "$SHA_A" "$log"
    rm -rf -- "$dir"
}

# qbittorrent_step NAME IP: qbittorrent-nox (stock) downloads torrent A through
# tests/lab/qbt.py (fresh profile, Web API; its recheck is the client's own check).
qbittorrent_step() {
    local name=$1 ip=$2 log="$WORK/$1.log" truth="$WORK/$1.truth.json" rc=0 ok=false got=""
    local prof="$WORK/qbt-$1"
    step_open "$name" qbittorrent
    put client_version s "$(qbittorrent-nox --version 2>/dev/null | awk '{print $2}')"
    put leecher_ip s "$ip"
    put encryption s default
    put transport s default
    put file_size n "$SIZE"
    add_sub_ip "$ip"
    rm -rf -- "$prof"
    measure_begin "$name" "$SEEDER_STATS" "$SEEDER_PID"
    lab_in "$LAB_SUB_NS" timeout -k 10 $((STEP_TMO + 200)) "$PY" "$LAB_DIR/qbt.py" download \
        --torrent "$TORRENT_A" --save-dir "$WORK/dl/$name" --profile "$prof" \
        --ip "$ip" --iface "$LAB_SUB_IF" --port "$BT_PORT" --webui-port "$QBT_WEBUI_PORT" \
        --expect-sha256 "$SHA_A" --truth "$truth" --timeout "$STEP_TMO" 2>"$log" || rc=$?
    measure_end "$LAB_SEEDER_IP"
    put exit_code n "$rc"
    {
        echo "----- qbittorrent-nox output"
        cat "$prof/qbittorrent-nox.log" 2>/dev/null
        echo "----- qBittorrent's log"
        cat "$prof/qBittorrent/data/logs/qbittorrent.log" 2>/dev/null
    } >>"$log"
    if [[ -f $truth ]]; then
        put client_detail j "$truth"
        [[ $(json_get "$(cat "$truth")" completed) == True ]] && ok=true
    fi
    if [[ $ok == true ]]; then
        got=$(json_get "$(cat "$truth")" sha256)
        [[ $got == None ]] && got=""
        put download_seconds n "$(json_get "$(cat "$truth")" download_seconds)"
        if [[ $(json_get "$(cat "$truth")" recheck_ok) == True ]]; then
            put client_hash_check_ok b true
        else
            put client_hash_check_ok b false
        fi
    else
        put download_seconds z ""
        put client_hash_check_ok b false
    fi
    step_result "$ok" "$got" "$SHA_A" "$log"
    [[ $ok == true ]] && lab_log "$name: done in $(json_get "$(cat "$truth")" download_seconds)s"
    rm -rf -- "$WORK/dl/$name" "$prof"
}

http_step() { # NAME IP
    local name=$1 ip=$2 log="$WORK/$1.log" rc=0 ok=false got="" out="$WORK/dl/$1.bin" w
    step_open "$name" curl
    put leecher_ip s "$ip"
    put file_size n "$SIZE"
    put client_hash_check_ok z ""
    add_sub_ip "$ip"
    measure_begin "$name" "" ""
    w=$(lab_in "$LAB_SUB_NS" timeout -k 5 $((STEP_TMO + 30)) curl -sS --fail \
        --interface "$ip" --max-time "$STEP_TMO" -o "$out" \
        -w '%{size_download} %{time_total}' "http://$HTTP_IP:$HTTP_PORT/http.bin" 2>"$log") || rc=$?
    measure_end "$HTTP_IP" "$HTTP_PORT"
    echo "curl: $w (exit $rc)" >>"$log"
    put exit_code n "$rc"
    if [[ $rc == 0 && -f $out ]]; then
        ok=true
        got=$(sha256sum "$out" | awk '{print $1}')
        put download_seconds n "${w#* }"
    else
        put download_seconds z ""
    fi
    step_result "$ok" "$got" "$SHA_HTTP" "$log"
    rm -f -- "$out"
}

# skipped_step NAME CLIENT WHY
skipped_step() {
    step_open "$1" "$2"
    put completed b false
    put skipped s "$3"
    STEP_FAILED=1
    lab_log "step $1 skipped: $3"
}

# check_servers STEP: the tracker, seeders and http.server must outlive every step; a
# dead one makes the rest of the run meaningless (exit status 139 = segfault).
check_servers() {
    local name pid rc
    for name in tracker seeder seeder-enc http-server; do
        pid=${SERVER_PIDS[$name]}
        kill -0 "$pid" 2>/dev/null && continue
        rc=0
        wait "$pid" 2>/dev/null || rc=$?
        lab_die "$name (pid $pid) exited with status $rc during step $1 (log: $WORK/$name.log)"
    done
}

# ---- setup
start_tracker() {
    local dir="$WORK/tracker" user=_opentracker h
    mkdir -p "$dir"
    chmod 755 "$dir"
    : >"$dir/whitelist.txt"
    for h in "$@"; do echo "$h" >>"$dir/whitelist.txt"; done
    chmod 644 "$dir/whitelist.txt"
    id "$user" >/dev/null 2>&1 || user=nobody
    lab_bg "$LAB_UP_NS" "$WORK/tracker.log" \
        opentracker -i "$LAB_TRACKER_IP" -p "$TRACKER_PORT" -P "$TRACKER_PORT" \
        -d "$dir" -u "$user" -w /whitelist.txt
    SERVER_PIDS[tracker]=$LAB_LAST_PID
    lab_wait_port "$LAB_UP_NS" "$LAB_TRACKER_IP" "$TRACKER_PORT" 50 \
        || { cat "$WORK/tracker.log" >&2; lab_die "tracker did not start"; }
    sleep 0.3   # whitelist is loaded by a thread right after start
    lab_log "tracker up at $TRACKER_URL"
}

# start_seeder NAME TORRENT IP ENC TRANSPORT: sets SEEDER_STARTED_PID (python's pid) and
# the stats file
start_seeder() {
    local name=$1 torrent=$2 ip=$3 enc=$4 transport=$5 ready="$WORK/$1.ready"
    local stats="$WORK/$1.stats.json" pid
    lab_bg "$LAB_UP_NS" "$WORK/$name.log" \
        "$PY" "$PEER" seed --torrent "$torrent" --data-dir "$WORK/seed" \
        --listen "$ip:$BT_PORT" --outgoing-interfaces "$ip" --encryption "$enc" \
        --transport "$transport" --upload-limit "$UPLOAD_LIMIT" \
        --stats-file "$stats" --ready-file "$ready" --max-seconds 3600
    lab_wait_file "$ready" 300 "$LAB_LAST_PID" \
        || { cat "$WORK/$name.log" >&2; lab_die "$name not ready"; }
    pid=$(stat_field "$stats" pid)
    [[ -n $pid ]] || lab_die "$name: no pid in $stats"
    [[ $pid == "$LAB_LAST_PID" ]] || lab_log "note: $name python pid $pid (started as $LAB_LAST_PID)"
    SEEDER_PIDS+=("$pid")
    SERVER_PIDS[$name]=$LAB_LAST_PID
    SEEDER_STARTED_PID=$pid
    lab_log "$name up at $ip:$BT_PORT (pid $pid, encryption $enc, transport $transport, upload limit $UPLOAD_LIMIT B/s)"
}

write_results() { # RESULTS_FILE
    "$PY" - "$1" "$WORK/top.kv" "$WORK"/steps/*.kv <<'EOF'
import json, sys
out, top, steps = sys.argv[1], sys.argv[2], sys.argv[3:]

def load(path):
    d = {}
    for line in open(path):
        k, t, v = line.rstrip("\n").split("\t", 2)
        if t == "s":
            val = v
        elif t == "n":
            val = float(v) if "." in v else int(v)
        elif t == "b":
            val = v == "true"
        elif t == "j":
            val = json.load(open(v))
        else:
            val = None
        cur = d
        parts = k.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = val
    return d

r = load(top)
r["steps"] = [load(p) for p in steps]
r["all_completed"] = all(s.get("completed") for s in r["steps"])
r["all_byte_identical"] = all(s.get("sha256_ok") for s in r["steps"])
json.dump(r, open(out, "w"), indent=2, sort_keys=True)
open(out, "a").write("\n")
EOF
}

print_summary() { # RESULTS_FILE
    "$PY" - "$1" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
size = r["file_size"]
print("[lab] profile %s; box: %s; file %d bytes; seeder upload limit %s B/s"
      % (r.get("profile"), r["box"]["kind"], size, r["upload_limit"]))
print("[lab] %-17s %-11s %-5s %-5s %-5s %8s %10s %10s %10s %7s %7s %-18s %s"
      % ("step", "client", "done", "same", "check", "seconds", "seeder-pay", "tcp-pay",
         "utp-pay", "up/size", "served", "conns", "wire-handshakes"))
for s in r["steps"]:
    u = s.get("upstream", {})
    pay = u.get("seeder_payload_upload_bytes")
    tcp = u.get("tcp_payload_bytes")
    utp = u.get("utp_payload_bytes")
    m = max(x for x in (pay, u.get("upstream_payload_bytes"), 0) if x is not None)
    served = (s.get("box_metrics") or {}).get("served_blocks")
    c = (s.get("client_detail") or {}).get("connections") or {}
    conns = ",".join("%s:%d" % (k, c[k]) for k in ("utp", "tcp", "rc4", "mse_plaintext", "plain")
                     if c.get(k))
    hs = " ".join("%s:%s=%d" % (tr, k, n) for tr, d in sorted((u.get("handshakes") or {}).items())
                  for k, n in sorted(d.items()) if n)
    print("[lab] %-17s %-11s %-5s %-5s %-5s %8s %10s %10s %10s %6.1f%% %7s %-18s %s"
          % (s["name"], s["client"], s.get("completed"), s.get("sha256_ok"),
             s.get("client_hash_check_ok"), s.get("download_seconds"), pay, tcp, utp,
             100.0 * m / size, served, conns, hs))
    f = (s.get("client_detail") or {}).get("freeze")
    if f:
        print("[lab]   freeze: %s" % json.dumps(f, sort_keys=True))
    if s.get("mgmt"):
        print("[lab]   management link: %s" % json.dumps(s["mgmt"], sort_keys=True))
if r.get("mgmt_link"):
    print("[lab] management link probe: %s" % json.dumps(r["mgmt_link"].get("probe"), sort_keys=True))
ih = r["torrents"]["plain"]["info_hash"]

def swarm_a(path):
    try:
        rep = json.load(open(path))
    except Exception as e:
        return "unreadable report (%s)" % e
    a = [x for x in rep.get("swarms", []) if x.get("info_hash") == ih]
    a = a[0] if a else {}
    return "swarm A metainfo %s, pieces %s, pieces_cached %s; metainfo_fetch %s" % (
        a.get("metainfo"), a.get("pieces"), a.get("pieces_cached"),
        json.dumps(rep.get("metainfo_fetch"), sort_keys=True))

if r["box"].get("report"):
    print("[lab] box: %s" % swarm_a(r["box"]["report"]))
    print("[lab] box: metainfo files given: %s at start, %s at end" % (
        r["box"].get("metainfo_files_at_start"), r["box"].get("metainfo_files_at_end")))
t = r.get("tap")
if t:
    print("[lab] tap: exit %s; %s" % (t.get("exit_code"),
          swarm_a(t["report"]) if t.get("report") else "no report"))
    print("[lab] tap: cache ls %s" % json.dumps(t.get("cache_ls"), sort_keys=True))
EOF
}

main() {
    PROFILE=${LAB_INLINE_PROFILE:-plain}
    # per profile: the seeders' and clients' --encryption/--transport (peer.py), aria2's
    # crypto flags
    local utp_enc=${LAB_INLINE_UTP_ENCRYPTION:-default}
    [[ $utp_enc == default || $utp_enc == plain ]] \
        || lab_die "LAB_INLINE_UTP_ENCRYPTION must be default or plain (got '$utp_enc')"
    case $PROFILE in
    plain)
        SEED_ENC=plain SEED_TRANSPORT=tcp SEED2_ENC=rc4 SEED2_TRANSPORT=tcp
        LEECH_ENC=plain LEECH_TRANSPORT=tcp
        ARIA2_ENC=plain ARIA2_CRYPTO="--bt-require-crypto=false --bt-min-crypto-level=plain" ;;
    stock)
        SEED_ENC=default SEED_TRANSPORT=default SEED2_ENC=default SEED2_TRANSPORT=default
        LEECH_ENC=default LEECH_TRANSPORT=default
        ARIA2_ENC=default ARIA2_CRYPTO="" ;;
    utp)
        SEED_ENC=$utp_enc SEED_TRANSPORT=utp SEED2_ENC=rc4 SEED2_TRANSPORT=utp
        LEECH_ENC=$utp_enc LEECH_TRANSPORT=utp
        ARIA2_ENC=plain ARIA2_CRYPTO="" ;;
    overload)   # as stock; a flood around libtorrent-again
        SEED_ENC=default SEED_TRANSPORT=default SEED2_ENC=default SEED2_TRANSPORT=default
        LEECH_ENC=default LEECH_TRANSPORT=default
        ARIA2_ENC=default ARIA2_CRYPTO="" ;;
    fetch)   # as plain; what differs is the box's side (no metainfo, a management link)
        SEED_ENC=plain SEED_TRANSPORT=tcp SEED2_ENC=rc4 SEED2_TRANSPORT=tcp
        LEECH_ENC=plain LEECH_TRANSPORT=tcp
        ARIA2_ENC=plain ARIA2_CRYPTO="--bt-require-crypto=false --bt-min-crypto-level=plain" ;;
    *) lab_die "LAB_INLINE_PROFILE must be plain, stock, utp, fetch or overload (got '$PROFILE')" ;;
    esac
    QBT_WEBUI_PORT=$(int_env LAB_QBT_WEBUI_PORT 18080 1024 65535)
    need_root_and_tools
    local results=${1:-${LAB_INLINE_RESULTS:-/tmp/peercache-inline/results.json}}
    local size_mib piece_kib wait_s expect hold steps s
    size_mib=$(int_env LAB_SIZE_MIB 8 1 256)
    piece_kib=$(int_env LAB_PIECE_KIB 64 16 4096)
    UPLOAD_LIMIT=$(int_env LAB_UPLOAD_LIMIT $MIB 0 $((1 << 30)))
    SIZE=$((size_mib * MIB))
    if [[ -n ${LAB_BOX_CMD:-} ]]; then expect=1; else expect=0; fi
    expect=$(int_env LAB_INLINE_EXPECT_CACHE "$expect" 0 1)
    if ((expect)); then hold=0; else hold=3; fi
    hold=$(int_env LAB_FREEZE_HOLD_S "$hold" 0 3600)
    FREEZE_AT=$(int_env LAB_FREEZE_AT_BYTES 1 1 $((1 << 40)))
    local rated=60
    ((UPLOAD_LIMIT > 0)) && rated=$(((SIZE + UPLOAD_LIMIT - 1) / UPLOAD_LIMIT))
    STEP_TMO=$(int_env LAB_STEP_TIMEOUT_S $((3 * rated + 60)) 10 7200)
    local known=()
    case $PROFILE in
    plain) known=("${ALL_STEPS[@]}") ;;
    stock) known=("${STOCK_STEPS[@]}") ;;
    utp) known=("${UTP_STEPS[@]}") ;;
    fetch) known=("${FETCH_STEPS[@]}") ;;
    overload) known=("${OVERLOAD_STEPS[@]}") ;;
    esac
    steps=${LAB_INLINE_STEPS:-$(IFS=,; echo "${known[*]}")}
    for s in ${steps//,/ }; do
        [[ " ${known[*]} " == *" $s "* ]] || lab_die "unknown step '$s' in profile $PROFILE (known: ${known[*]})"
    done
    mkdir -p "$(dirname "$results")"
    results=$(cd "$(dirname "$results")" && pwd)/$(basename "$results")
    local rdir
    rdir=$(dirname "$results")
    RDIR=$rdir
    rm -rf -- "$results" "$rdir/box.log" "$rdir/box-report.json" "$rdir/logs" \
        "$rdir/tap.log" "$rdir/tap-report.json"

    wait_s=$(int_env LAB_WAIT_S 0 0 3600)
    lab_wait_free "$wait_s" \
        || lab_die "lab busy: namespace(s) $(ip netns list | awk '{print $1}' | xargs) exist (another run? leftovers: 'lab.sh down')"
    WORK=$(mktemp -d /tmp/peercache-inline.XXXXXX)
    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM
    mkdir -p "$WORK/seed" "$WORK/dl" "$WORK/cap" "$WORK/steps" "$WORK/metainfo" "$WORK/box" "$WORK/http"
    chmod 755 "$WORK"
    lab_log "work dir $WORK; results -> $results"

    # two torrents (A plain, B for the encrypted step) and the HTTP file, all different
    local facts_a facts_b
    NAME_A=inline-a.bin
    facts_a=$("$PY" "$PEER" make --out-dir "$WORK/seed" --name "$NAME_A" --size "$SIZE" \
        --piece-length $((piece_kib * 1024)) --seed peercache-inline-a --tracker "$TRACKER_URL")
    facts_b=$("$PY" "$PEER" make --out-dir "$WORK/seed" --name inline-b.bin --size "$SIZE" \
        --piece-length $((piece_kib * 1024)) --seed peercache-inline-b --tracker "$TRACKER_URL")
    TORRENT_A="$WORK/seed/$NAME_A.torrent"
    TORRENT_B="$WORK/seed/inline-b.bin.torrent"
    SHA_A=$(json_get "$facts_a" sha256)
    SHA_B=$(json_get "$facts_b" sha256)
    # profile fetch: the box gets no metainfo (its directory stays empty)
    [[ $PROFILE == fetch ]] || cp "$TORRENT_A" "$TORRENT_B" "$WORK/metainfo/"
    "$PY" -c '
import hashlib, sys
with open(sys.argv[1], "wb") as f:
    for i in range(0, int(sys.argv[2]), 1 << 20):
        f.write(hashlib.shake_256(b"peercache-inline-http" + i.to_bytes(8, "big")).digest(min(1 << 20, int(sys.argv[2]) - i)))
' "$WORK/http/http.bin" "$SIZE"
    SHA_HTTP=$(sha256sum "$WORK/http/http.bin" | awk '{print $1}')
    chmod -R a+rX "$WORK/metainfo" "$WORK/seed" "$WORK/http"

    local top="$WORK/top.kv"
    STEP_KV=$top
    : >"$top"
    put version n 1
    put profile s "$PROFILE"
    put profile_settings.seeder s "encryption $SEED_ENC, transport $SEED_TRANSPORT"
    put profile_settings.seeder_enc s "encryption $SEED2_ENC, transport $SEED2_TRANSPORT"
    put profile_settings.libtorrent s "encryption $LEECH_ENC, transport $LEECH_TRANSPORT"
    put file_size n "$SIZE"
    put piece_length n $((piece_kib * 1024))
    put upload_limit n "$UPLOAD_LIMIT"
    put step_timeout_seconds n "$STEP_TMO"
    put expect_cache b "$( ((expect)) && echo true || echo false)"
    put freeze_at_bytes n "$FREEZE_AT"
    put freeze_hold_seconds n "$hold"
    put torrents.plain.info_hash s "$(json_get "$facts_a" info_hash)"
    put torrents.plain.sha256 s "$SHA_A"
    put torrents.plain.name s "$NAME_A"
    put torrents.encrypted.info_hash s "$(json_get "$facts_b" info_hash)"
    put torrents.encrypted.sha256 s "$SHA_B"
    put torrents.encrypted.name s inline-b.bin
    put http.sha256 s "$SHA_HTTP"
    put http.url s "http://$HTTP_IP:$HTTP_PORT/http.bin"
    put work_dir s "$WORK"   # removed at the end unless LAB_KEEP=1 or something failed

    # the lab, then the box (one process for every step)
    lab_setup_bridge
    if [[ $PROFILE == fetch ]]; then
        lab_add_box_mgmt
        MGMT=1
        export LAB_BOX_MGMT_IP
        put mgmt_link.box s "$LAB_BOX_NS $LAB_BOX_MGMT_IF $LAB_BOX_MGMT_IP/30"
        put mgmt_link.up s "$LAB_UP_NS $LAB_UP_MGMT_IF $LAB_UP_MGMT_IP/30"
    else
        unset LAB_BOX_MGMT_IP
    fi
    export LAB_BOX_METAINFO_DIR="$WORK/metainfo" LAB_BOX_WORK="$WORK/box"
    export LAB_BOX_REPORT="$WORK/box/report.json" LAB_BOX_LOG="$WORK/box.log"
    export LAB_TAP_REPORT="$WORK/box/tap-report.json"
    put box.metainfo_files_at_start n "$(find "$LAB_BOX_METAINFO_DIR" -mindepth 1 | wc -l)"
    local t_run0
    t_run0=$(date +%s.%N)
    lab_box_bridge_start "${LAB_BOX_CMD:-}"
    STEP_KV=$top
    put box.kind s "$LAB_BOX_KIND"
    if [[ $LAB_BOX_KIND == command ]]; then put box.cmd s "$LAB_BOX_CMD"; else put box.cmd z ""; fi
    if [[ -n ${LAB_TAP_CMD:-} ]]; then
        tap_start
        STEP_KV=$top
        put tap.cmd s "$LAB_TAP_CMD"
    else
        put tap z ""
    fi

    start_tracker "$(json_get "$facts_a" info_hash)" "$(json_get "$facts_b" info_hash)"
    start_seeder seeder "$TORRENT_A" "$LAB_SEEDER_IP" "$SEED_ENC" "$SEED_TRANSPORT"
    SEEDER_PID=$SEEDER_STARTED_PID
    SEEDER_STATS="$WORK/seeder.stats.json"
    start_seeder seeder-enc "$TORRENT_B" "$LAB_SEEDER2_IP" "$SEED2_ENC" "$SEED2_TRANSPORT"
    SEEDER2_PID=$SEEDER_STARTED_PID
    lab_bg "$LAB_UP_NS" "$WORK/http-server.log" \
        "$PY" -m http.server --bind "$HTTP_IP" --directory "$WORK/http" "$HTTP_PORT"
    SERVER_PIDS[http-server]=$LAB_LAST_PID
    lab_wait_port "$LAB_UP_NS" "$HTTP_IP" "$HTTP_PORT" 100 || lab_die "http.server did not start"
    if ((MGMT)); then
        # the lab's own proof that the seeder answers BEP 9 over the management link
        mgmt_probe "$(json_get "$facts_a" info_hash)" "$LAB_SEEDER_IP" >"$WORK/mgmt-probe.json" \
            || lab_log "WARNING: management link probe exited non-zero"
        [[ -s $WORK/mgmt-probe.json ]] || echo '{"error": "no output"}' >"$WORK/mgmt-probe.json"
        STEP_KV=$top
        put mgmt_link.probe j "$WORK/mgmt-probe.json"
        lab_log "management link probe: $(cat "$WORK/mgmt-probe.json")"
        [[ $(json_get "$(cat "$WORK/mgmt-probe.json")" metadata_ok) == True ]] \
            || lab_log "WARNING: no metadata from $LAB_SEEDER_IP over the management link"
    fi

    local client
    for s in ${steps//,/ }; do
        case $s in
        aria2-again) client=aria2 ;; http) client=curl ;; qbittorrent-again) client=qbittorrent ;;
        *) client=libtorrent ;;
        esac
        if ! box_alive; then
            skipped_step "$s" "$client" "the box command exited"
            continue
        fi
        case $s in
        fill)
            libtorrent_step fill 198.18.0.2 "$TORRENT_A" "$SHA_A" "$LEECH_ENC" "$LEECH_TRANSPORT" \
                "$LAB_SEEDER_IP" "$SEEDER_STATS" "$SEEDER_PID" ;;
        libtorrent-again)
            if [[ $PROFILE == overload ]]; then flood_start; fi
            libtorrent_step libtorrent-again 198.18.0.3 "$TORRENT_A" "$SHA_A" "$LEECH_ENC" \
                "$LEECH_TRANSPORT" "$LAB_SEEDER_IP" "$SEEDER_STATS" "$SEEDER_PID"
            if [[ $PROFILE == overload ]]; then flood_stop; fi
            ;;
        aria2-again)
            aria2_step aria2-again 198.18.0.4 ;;
        qbittorrent-again)
            qbittorrent_step qbittorrent-again 198.18.0.8 ;;
        seeder-freeze)
            libtorrent_step seeder-freeze 198.18.0.5 "$TORRENT_A" "$SHA_A" "$LEECH_ENC" \
                "$LEECH_TRANSPORT" "$LAB_SEEDER_IP" "$SEEDER_STATS" "$SEEDER_PID" \
                --freeze-pid "$SEEDER_PID" --freeze-at-bytes "$FREEZE_AT" --freeze-hold "$hold" ;;
        http)
            http_step http 198.18.0.6 ;;
        encrypted)
            # RC4 forced on the client (plain: on both ends); transport as the profile's
            libtorrent_step encrypted 198.18.0.7 "$TORRENT_B" "$SHA_B" rc4 "$LEECH_TRANSPORT" \
                "$LAB_SEEDER2_IP" "$WORK/seeder-enc.stats.json" "$SEEDER2_PID" ;;
        esac
        if ! box_alive; then lab_log "WARNING: the box command exited during step $s"; fi
        check_servers "$s"
    done

    # stop the tap, then the box (each writes its report), keep their output beside the
    # results
    STEP_KV=$top
    if [[ -n ${LAB_TAP_CMD:-} ]]; then
        local tap_alive_at_end=true
        kill -0 "$TAP_PID" 2>/dev/null || tap_alive_at_end=false
        tap_stop
        put tap.alive_at_end b "$tap_alive_at_end"
        if [[ $TAP_EXIT =~ ^[0-9]+$ ]]; then put tap.exit_code n "$TAP_EXIT"
        else put tap.exit_code s "$TAP_EXIT"; fi
        cp "$WORK/tap.log" "$rdir/tap.log"
        put tap.log s "$rdir/tap.log"
        if [[ -s $LAB_TAP_REPORT ]]; then
            cp "$LAB_TAP_REPORT" "$rdir/tap-report.json"
            put tap.report s "$rdir/tap-report.json"
        else
            put tap.report z ""
        fi
        put_cache_ls tap.cache_ls "$LAB_BOX_WORK/tap-cache"
    fi
    local box_alive_at_end=true
    box_alive || box_alive_at_end=false
    lab_box_bridge_stop
    STEP_KV=$top
    put box.metainfo_files_at_end n "$(find "$LAB_BOX_METAINFO_DIR" -mindepth 1 | wc -l)"
    if [[ -d $LAB_BOX_WORK/cache/v1 ]]; then put_cache_ls box.cache_ls "$LAB_BOX_WORK/cache"; fi
    put box.alive_at_end b "$box_alive_at_end"
    if [[ $LAB_BOX_EXIT =~ ^[0-9]+$ ]]; then put box.exit_code n "$LAB_BOX_EXIT"
    else put box.exit_code s "${LAB_BOX_EXIT:-none}"; fi
    put run_seconds n "$(awk -v a="$t_run0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b - a}')"
    if [[ -f $LAB_BOX_LOG ]]; then
        cp "$LAB_BOX_LOG" "$rdir/box.log"
        put box.log s "$rdir/box.log"
    else
        put box.log z ""
    fi
    if [[ -f $LAB_BOX_REPORT ]]; then
        cp "$LAB_BOX_REPORT" "$rdir/box-report.json"
        put box.report s "$rdir/box-report.json"
    else
        put box.report z ""
    fi
    mkdir -p "$rdir/logs"
    cp "$WORK"/*.log "$rdir/logs/" 2>/dev/null || true
    write_results "$results"
    print_summary "$results"
    lab_log "results: $results"
    if [[ ${LAB_INLINE_STRICT:-0} == 1 ]]; then
        [[ $(json_get "$(cat "$results")" all_completed) == True \
            && $(json_get "$(cat "$results")" all_byte_identical) == True ]] \
            || lab_die "LAB_INLINE_STRICT: a step did not complete byte-identical"
    fi
}

main "$@"; exit $?   # one line: bash reads no further (safe if the file changes meanwhile)
