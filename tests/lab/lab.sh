#!/usr/bin/env bash
# peercache test lab: record real BitTorrent client traffic inside network
# namespaces (addresses from 198.18.0.0/15 only; see netns.sh).
#
#   tests/lab/lab.sh record NAME   record one scenario into pcaps/lab-NAME.{pcap,torrent,json}
#   tests/lab/lab.sh record-all    record every committed scenario (not tcp-repeat)
#   tests/lab/lab.sh large         ~256 MiB plain-TCP recording into pcaps/large/ (gitignored)
#   tests/lab/lab.sh demo          dashboard walkthrough: tcp-repeat with 5 downloads of a
#                                  16 MiB file, 3 s apart, into LAB_OUT_DIR
#                                  (default /tmp/peercache-demo); watch it with LAB_TAP_CMD
#   tests/lab/lab.sh count PCAP [--utp]  tshark message counts of a capture
#                                  (--utp: peer traffic is uTP over UDP)
#   tests/lab/lab.sh down          remove leftover lab namespaces (whoever made them)
#   tests/lab/lab.sh list          list scenario names
#
# Scenarios: tcp-plain tcp-magnet tcp-encrypted tcp-aria2 utp-plain utp-magnet
# (utp-*: peer connection over uTP/BEP 29 only, TCP peer connections disabled),
# tcp-poison (issue 20: plain TCP, the honest seeder's upload capped at
# LAB_POISON_LIMIT bytes/s (default 262144), and two poisoners, hostile_peer.py
# --mode poison on 198.19.0.3:6881 and 198.19.0.4:6881 (added to pc-up's veth),
# announced to the tracker before the seeder starts: they claim every piece and answer
# every REQUEST with random bytes, LAB_POISON_DELAY_MS (default 3000) after the previous
# answer (slow liars: the leecher's requests for one piece are spread over all three); the libtorrent leecher must still complete from the seeder (libtorrent bans
# them after hash failures); the truth JSON has "poisoners" (each one's own counts),
# "hash_failures", "hash_failed_pieces", "banned_peers" and tshark's message counts per
# direction; the recording fails without a hash failure or a poisoned PIECE on the wire),
# and tcp-repeat (not committed, default output pcaps/large/): one seeder, the same
# torrent downloaded LAB_REPEAT times in a row, plain TCP like tcp-plain, each time by
# a new libtorrent leecher on its own subscriber address 198.18.0.2, .3, .4, ... (all
# on pcs0 in pc-sub; each binds listen and outgoing sockets to its address); one
# capture of the whole run; the truth JSON has a "downloads" list.
# Env: LAB_OUT_DIR (default <repo>/pcaps; tcp-repeat: <repo>/pcaps/large, demo:
#      /tmp/peercache-demo), LAB_KEEP=1 keeps the work dir,
#      LAB_TOPOLOGY=direct|box (box: traffic routed through namespace pc-box),
#      LAB_SKIP_TSHARK=1, LAB_ALLOW_MISMATCH=1 (warn instead of fail),
#      LAB_TAP_CMD / LAB_TAP_LOG: a command run beside tcpdump in the subscriber namespace
#      for the whole run (see start_tap), e.g. the peercache tap under test; it gets
#      LAB_SUB_IF, LAB_TORRENT and LAB_METAINFO_DIR (a directory holding only the run's
#      .torrent) in its environment,
#      LAB_MGMT=1: a management link from this host into pc-sub (198.18.255.1 here,
#      198.18.255.2 there), so a tap's dashboard (--http 198.18.255.2:9750) opens in a
#      browser on this host,
#      LAB_WAIT_S=N: if the lab is busy (a pc-* namespace exists), wait up to N s
#      (default 0: fail at once),
#      tcp-poison only: LAB_POISON_LIMIT (the honest seeder's upload cap, bytes/s,
#      16384..104857600; default 262144), LAB_POISON_DELAY_MS (0..10000, default 3000),
#      LAB_POISON_SIZE_MIB (1..64, default 1), LAB_POISON_PIECE_KIB (a power of two,
#      16..4096, default 64),
#      tcp-repeat and demo only: LAB_REPEAT (downloads, 1..8; default 2, demo 5),
#      LAB_SIZE_MIB (file size, 1..1024; default 1, demo 16; 64 KiB pieces),
#      LAB_PAUSE_S (seconds between downloads, 0..60; default 1, demo 3).
# Example: LAB_OUT_DIR=/tmp/demo LAB_TAP_CMD='exec peercache tap --iface "$LAB_SUB_IF"
#      --metainfo "$LAB_METAINFO_DIR" --cache-dir /tmp/demo/cache --http 127.0.0.1:8080'
#      tests/lab/lab.sh demo   (the tap runs inside pc-sub: reach its HTTP port there,
#      e.g. ip netns exec pc-sub curl -s http://127.0.0.1:8080/metrics)
# Only one lab can run at a time (fixed namespace names pc-sub/pc-up/pc-box); a run
# only deletes the namespaces it created.
# Needs root and the packages from tests/lab/install.sh.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LAB_DIR/../.." && pwd)
# shellcheck source=netns.sh
source "$LAB_DIR/netns.sh"

PY=/usr/bin/python3           # Debian's python, which has python3-libtorrent
PEER="$LAB_DIR/peer.py"
BT_PORT=6881
TRACKER_PORT=6969
TRACKER_URL="http://$LAB_TRACKER_IP:$TRACKER_PORT/announce"
OUT_DIR=${LAB_OUT_DIR:-$REPO_DIR/pcaps}
SCENARIOS=(tcp-plain tcp-magnet tcp-encrypted tcp-aria2 utp-plain utp-magnet tcp-poison)
EXTRA_SCENARIOS=(tcp-repeat)  # recordable with 'record', not part of record-all
REPEAT_MAX=8
HOSTILE="$LAB_DIR/hostile_peer.py"
POISON_IPS=(198.19.0.3 198.19.0.4)   # tcp-poison's poisoners (pc-up, beside the seeder)
POISON=0              # set by record for tcp-poison
SEED_UPLOAD_LIMIT=0   # the seeder's upload cap, bytes/s (0: none)
SEED_OUTGOING=""      # the seeder's outgoing address ("": the OS picks)
POISON_DELAY=0        # seconds before each poisoned PIECE (hostile_peer.py --piece-delay)
POISON_PIDS=()

WORK=""
TCPDUMP_PID=""
TAP_PID=""

on_signal() {
    lab_log "caught SIG$1, cleaning up"
    # exit runs the EXIT trap (cleanup)
    if [[ $1 == INT ]]; then exit 130; fi
    exit 143
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $TCPDUMP_PID ]]; then lab_stop "$TCPDUMP_PID" INT 50; fi
    if [[ -n $TAP_PID ]]; then lab_stop "$TAP_PID" TERM 100; fi
    lab_teardown
    if [[ $rc != 0 && -n $WORK && -d $WORK ]]; then
        local f
        for f in "$WORK"/poisoner-*.log; do
            [[ -e $f ]] && { lab_log "--- tail of $f"; tail -20 "$f" >&2; }
        done
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${LAB_KEEP:-0} == 1 || $rc != 0 ]]; then
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
    for t in ip ethtool ping ss tcpdump tshark opentracker aria2c timeout; do
        command -v "$t" >/dev/null || lab_die "missing $t (run tests/lab/install.sh)"
    done
    "$PY" -c 'import libtorrent' 2>/dev/null || lab_die "python3-libtorrent missing for $PY"
}

json_get() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# start_tracker INFO_HASH...: opentracker in pc-up, whitelist = given hashes.
start_tracker() {
    local dir="$WORK/tracker" user=_opentracker h
    mkdir -p "$dir"
    chmod 755 "$dir"
    : >"$dir/whitelist.txt"
    for h in "$@"; do echo "$h" >>"$dir/whitelist.txt"; done
    chmod 644 "$dir/whitelist.txt"
    id "$user" >/dev/null 2>&1 || user=nobody
    # -d chroots into $dir, so the whitelist path is relative to the chroot.
    lab_bg "$LAB_UP_NS" "$WORK/tracker.log" \
        opentracker -i "$LAB_TRACKER_IP" -p "$TRACKER_PORT" -P "$TRACKER_PORT" \
        -d "$dir" -u "$user" -w /whitelist.txt
    TRACKER_PID=$LAB_LAST_PID
    lab_wait_port "$LAB_UP_NS" "$LAB_TRACKER_IP" "$TRACKER_PORT" 50 \
        || { cat "$WORK/tracker.log" >&2; lab_die "tracker did not start"; }
    sleep 0.3   # whitelist is loaded by a thread right after start
    lab_log "tracker up at $TRACKER_URL (pid $TRACKER_PID)"
}

# start_capture PCAP: tcpdump on the subscriber veth.
start_capture() {
    local pcap=$1 i
    rm -f "$pcap"
    lab_bg "$LAB_SUB_NS" "$WORK/tcpdump.log" \
        tcpdump -i "$LAB_SUB_IF" -n -s 0 -B 16384 -U -Z root -w "$pcap"
    TCPDUMP_PID=$LAB_LAST_PID
    for ((i = 0; i < 50; i++)); do
        grep -q 'listening on' "$WORK/tcpdump.log" 2>/dev/null && break
        kill -0 "$TCPDUMP_PID" 2>/dev/null || { cat "$WORK/tcpdump.log" >&2; lab_die "tcpdump died"; }
        sleep 0.1
    done
    grep -q 'listening on' "$WORK/tcpdump.log" || lab_die "tcpdump not listening"
    lab_log "capturing on $LAB_SUB_NS/$LAB_SUB_IF -> $pcap"
    start_tap
}

# start_tap: with LAB_TAP_CMD set, run it (bash -c, in the subscriber namespace, with
# LAB_SUB_IF, LAB_TORRENT and LAB_METAINFO_DIR in its environment) beside tcpdump, for
# the whole run (all downloads of tcp-repeat), e.g. a `peercache tap` under test. Use
# `exec` in the command so SIGTERM reaches the program. Waits until its log (LAB_TAP_LOG,
# default WORK/tap.log) says "capturing on"; stop_capture stops it with SIGTERM.
start_tap() {
    [[ -n ${LAB_TAP_CMD:-} ]] || return 0
    local log=${LAB_TAP_LOG:-$WORK/tap.log} i
    lab_bg "$LAB_SUB_NS" "$log" env LAB_SUB_IF="$LAB_SUB_IF" LAB_TORRENT="${LAB_TORRENT:-}" \
        LAB_METAINFO_DIR="${LAB_METAINFO_DIR:-}" bash -c "$LAB_TAP_CMD"
    TAP_PID=$LAB_LAST_PID
    for ((i = 0; i < 100; i++)); do
        grep -q 'capturing on' "$log" 2>/dev/null && break
        kill -0 "$TAP_PID" 2>/dev/null || { cat "$log" >&2; lab_die "LAB_TAP_CMD died"; }
        sleep 0.1
    done
    grep -q 'capturing on' "$log" || lab_die "LAB_TAP_CMD not capturing"
    lab_log "LAB_TAP_CMD running (pid $TAP_PID)"
}

# stop_capture: SIGINT tcpdump, wait, report kernel drops (sets CAPTURE_DROPS).
stop_capture() {
    sleep 0.5   # let FIN/ACKs of the last connections land
    lab_stop "$TCPDUMP_PID" INT 100
    TCPDUMP_PID=""
    if [[ -n $TAP_PID ]]; then
        lab_stop "$TAP_PID" TERM 300
        TAP_PID=""
    fi
    cat "$WORK/tcpdump.log" >&2
    CAPTURE_DROPS=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$WORK/tcpdump.log")
    CAPTURE_DROPS=${CAPTURE_DROPS:-unknown}
}

# udp_rcvbuf_errors NS: the namespace's UDP RcvbufErrors counter (/proc/net/snmp),
# i.e. datagrams the kernel dropped because a socket's receive buffer was full.
# Those were captured on the veth but never reached the peer (uTP resends them).
udp_rcvbuf_errors() {
    lab_in "$1" awk '$1 == "Udp:" { if (!n) { for (i = 2; i <= NF; i++) h[i] = $i; n = 1 }
        else for (i = 2; i <= NF; i++) if (h[i] == "RcvbufErrors") print $i }' /proc/net/snmp
}

# start_seeder TORRENT DATA_DIR ENC [TRANSPORT(tcp|utp)]: upload capped at
# SEED_UPLOAD_LIMIT bytes/s when that is not 0; with SEED_OUTGOING set, its outgoing
# connections leave from that address (else the OS picks pc-up's first, the tracker's).
start_seeder() {
    local torrent=$1 data=$2 enc=$3 transport=${4:-tcp} ready="$WORK/seeder.ready"
    rm -f "$ready"
    lab_bg "$LAB_UP_NS" "$WORK/seeder.log" \
        "$PY" "$PEER" seed --torrent "$torrent" --data-dir "$data" \
        --listen "$LAB_SEEDER_IP:$BT_PORT" --encryption "$enc" --transport "$transport" \
        --upload-limit "$SEED_UPLOAD_LIMIT" --outgoing-interfaces "$SEED_OUTGOING" \
        --ready-file "$ready" --max-seconds 1800
    SEEDER_PID=$LAB_LAST_PID
    lab_wait_file "$ready" 300 "$SEEDER_PID" \
        || { cat "$WORK/seeder.log" >&2; lab_die "seeder not ready"; }
    lab_log "seeder up at $LAB_SEEDER_IP:$BT_PORT (pid $SEEDER_PID, encryption $enc, transport $transport, upload limit $SEED_UPLOAD_LIMIT B/s)"
}

# start_poisoners TORRENT: tcp-poison's hostile peers, one per POISON_IPS address (added
# to pc-up's veth here), each on port BT_PORT, answering every REQUEST with random bytes
# (hostile_peer.py --mode poison). Each announces itself to the tracker from its own
# address before writing its stats file (WORK/poisoner-IP.json), so once every stats
# file exists the tracker lists them all.
start_poisoners() {
    local torrent=$1 ip st
    for ip in "${POISON_IPS[@]}"; do
        lab_in "$LAB_UP_NS" ip addr add "$ip/24" dev "$LAB_UP_IF"
        lab_in "$LAB_SUB_NS" ping -n -q -c 1 -W 2 "$ip" >/dev/null \
            || lab_die "no connectivity $LAB_SUB_NS -> $ip"
    done
    for ip in "${POISON_IPS[@]}"; do
        st="$WORK/poisoner-$ip.json"
        rm -f "$st"
        lab_bg "$LAB_UP_NS" "$WORK/poisoner-$ip.log" \
            "$PY" "$HOSTILE" --mode poison --listen "$ip:$BT_PORT" --torrent "$torrent" \
            --announce "$TRACKER_URL" --piece-delay "$POISON_DELAY" --stats-file "$st"
        POISON_PIDS+=("$LAB_LAST_PID")
        lab_wait_file "$st" 400 "$LAB_LAST_PID" \
            || { cat "$WORK/poisoner-$ip.log" >&2; lab_die "poisoner $ip not ready"; }
        lab_log "poisoner up at $ip:$BT_PORT, announced (pid $LAB_LAST_PID)"
    done
}

# repeat_ip I: subscriber address of tcp-repeat's leecher I (0-based): 198.18.0.2, .3, ...
repeat_ip() { echo "198.18.0.$((2 + $1))"; }

# int_env NAME DEFAULT MIN MAX: the integer value of env NAME (DEFAULT if unset), checked.
int_env() {
    local v=${!1:-$2}
    [[ $v =~ ^[0-9]+$ ]] && ((10#$v >= $3 && 10#$v <= $4)) \
        || lab_die "$1 must be an integer in $3..$4 (got '$v')"
    echo "$((10#$v))"
}

# run_scenario NAME LEECHER(libtorrent|libtorrent-repeat|aria2) SOURCE(torrent|magnet)
#              ENC(plain|rc4) SIZE PIECE_LEN OUT_DIR TIMEOUT_S [TRANSPORT(tcp|utp), default tcp]
# libtorrent-repeat: REPEAT_N downloads, one after the other, by leechers at repeat_ip
# 0..REPEAT_N-1, REPEAT_PAUSE seconds apart (set by the caller); TIMEOUT_S is per download.
run_scenario() {
    local name=$1 leecher=$2 source=$3 enc=$4 size=$5 plen=$6 out=$7 tmo=$8 transport=${9:-tcp}
    local base="lab-$name" facts info_hash sha torrent magnet pcap truth t0 t1
    local leecher_ips=$LAB_SUB_IP wait_s
    wait_s=$(int_env LAB_WAIT_S 0 0 3600)
    lab_wait_free "$wait_s" \
        || lab_die "lab busy: namespace(s) $(ip netns list | awk '{print $1}' | xargs) exist (another run? leftovers: 'lab.sh down')"
    WORK=$(mktemp -d /tmp/peercache-lab.XXXXXX)
    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM
    mkdir -p "$out" "$WORK/seed" "$WORK/leech"
    lab_log "=== scenario $name: leecher=$leecher source=$source enc=$enc transport=$transport size=$size piece=$plen"

    facts=$("$PY" "$PEER" make --out-dir "$WORK/seed" --name "$base.bin" --size "$size" \
        --piece-length "$plen" --seed "peercache-$name" --tracker "$TRACKER_URL")
    info_hash=$(json_get "$facts" info_hash)
    sha=$(json_get "$facts" sha256)
    magnet=$(json_get "$facts" magnet)
    torrent="$WORK/seed/$base.bin.torrent"
    pcap="$WORK/$base.pcap"
    truth="$WORK/$base.json"
    lab_log "info_hash $info_hash sha256 $sha"
    # for LAB_TAP_CMD: the run's .torrent, alone in a directory (e.g. a tap's --metainfo)
    mkdir -p "$WORK/metainfo"
    cp "$torrent" "$WORK/metainfo/"
    chmod -R a+rX "$WORK/metainfo"
    LAB_TORRENT="$WORK/metainfo/$base.bin.torrent"
    LAB_METAINFO_DIR="$WORK/metainfo"

    case ${LAB_TOPOLOGY:-direct} in
    direct) lab_setup_direct ;;
    box) lab_setup_box forward ;;
    *) lab_die "LAB_TOPOLOGY must be direct or box" ;;
    esac
    if [[ ${LAB_MGMT:-0} == 1 ]]; then lab_add_mgmt; fi
    if [[ $leecher == libtorrent-repeat ]]; then
        local i
        for ((i = 1; i < REPEAT_N; i++)); do lab_add_sub_ip "$(repeat_ip "$i")"; done
        leecher_ips=$(for ((i = 0; i < REPEAT_N; i++)); do repeat_ip "$i"; done | xargs)
        lab_log "subscriber addresses on $LAB_SUB_NS/$LAB_SUB_IF: $leecher_ips"
    fi
    start_capture "$pcap"
    start_tracker "$info_hash"
    if [[ $POISON == 1 ]]; then
        [[ $leecher == libtorrent && $transport == tcp && $enc == plain ]] \
            || lab_die "poison scenario: libtorrent leecher, plain TCP only"
        start_poisoners "$torrent"
    fi
    start_seeder "$torrent" "$WORK/seed" "$enc" "$transport"

    t0=$(date +%s.%N)
    case $leecher in
    libtorrent)
        local src_args=(--torrent "$torrent")
        [[ $source == magnet ]] && src_args=(--magnet "$magnet")
        lab_in "$LAB_SUB_NS" timeout -k 5 $((tmo + 30)) "$PY" "$PEER" leech "${src_args[@]}" \
            --save-dir "$WORK/leech" --listen "$LAB_SUB_IP:$BT_PORT" --encryption "$enc" \
            --transport "$transport" --expect-sha256 "$sha" --truth "$truth" --timeout "$tmo" \
            2> >(tee "$WORK/leecher.log" >&2) \
            || lab_die "libtorrent leecher failed"
        ;;
    libtorrent-repeat)
        [[ $source == torrent && $transport == tcp ]] || lab_die "repeat scenario: TCP .torrent only"
        local i ip d0 d1
        : >"$WORK/downloads.tsv"
        for ((i = 0; i < REPEAT_N; i++)); do
            ip=$(repeat_ip "$i")
            if ((i > 0)); then
                lab_log "pause ${REPEAT_PAUSE}s before the next download"
                sleep "$REPEAT_PAUSE" & wait $!   # (a signal is handled at once)
            fi
            lab_log "--- download $((i + 1))/$REPEAT_N by leecher $ip"
            d0=$(date +%s.%N)
            # its own address for the listen socket and every outgoing connection
            lab_in "$LAB_SUB_NS" timeout -k 5 $((tmo + 30)) "$PY" "$PEER" leech \
                --torrent "$torrent" --save-dir "$WORK/leech-$i" \
                --listen "$ip:$BT_PORT" --outgoing-interfaces "$ip" --encryption "$enc" \
                --transport "$transport" --expect-sha256 "$sha" --truth "$WORK/download-$i.json" \
                --timeout "$tmo" 2> >(tee "$WORK/leecher-$i.log" >&2) \
                || lab_die "libtorrent leecher $ip (download $((i + 1))) failed"
            d1=$(date +%s.%N)
            printf '%s\t%s\t%s\t%s\n' "$ip" "$WORK/download-$i.json" "$d0" "$d1" >>"$WORK/downloads.tsv"
            rm -rf -- "$WORK/leech-$i"   # checked (sha256): keep the disk use flat
        done
        # one truth file: the torrent's facts, "downloads" (one entry per leecher), totals
        "$PY" - "$WORK/downloads.tsv" "$truth" "$sha" "$REPEAT_PAUSE" <<'EOF'
import json, sys
tsv, out, sha, pause = sys.argv[1:]
downloads = []
for n, line in enumerate(open(tsv)):
    ip, path, d0, d1 = line.rstrip("\n").split("\t")
    d = json.load(open(path))
    if n == 0:
        t = {k: d[k] for k in ("info_hash", "file_size", "piece_length", "num_pieces",
                               "num_blocks", "client", "client_version")}
    downloads.append({
        "index": n + 1, "leecher_ip": ip, "sha256": d["sha256"], "sha256_ok": d["sha256"] == sha,
        "blocks_received": d["blocks_received"], "block_finished_alerts": d["block_finished_alerts"],
        "requests_sent": d["requests_sent"], "payload_bytes_received": d["payload_bytes_received"],
        "download_seconds": d["download_seconds"],
        "leecher_wall_seconds": round(float(d1) - float(d0), 3),
    })
keys = ("blocks_received", "block_finished_alerts", "requests_sent", "payload_bytes_received")
totals = {k: sum(x[k] for x in downloads) for k in keys}
totals.update({"downloads": len(downloads),
               "download_seconds": round(sum(x["download_seconds"] for x in downloads), 3),
               "sha256_ok": all(x["sha256_ok"] for x in downloads)})
# top-level blocks_received etc. are the sums over all downloads (what the capture holds)
t.update({k: totals[k] for k in keys})
t.update({"sha256": sha, "repeat": len(downloads), "pause_seconds": float(pause),
          "downloads": downloads, "totals": totals})
json.dump(t, open(out, "w"), indent=2, sort_keys=True); open(out, "a").write("\n")
EOF
        ;;
    aria2)
        [[ $enc == plain && $source == torrent && $transport == tcp ]] \
            || lab_die "aria2 scenario: plain TCP .torrent only"
        lab_in "$LAB_SUB_NS" timeout -k 5 $((tmo + 30)) aria2c \
            --no-conf=true --dir="$WORK/leech" --seed-time=0 \
            --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
            --enable-peer-exchange=false --bt-require-crypto=false \
            --bt-min-crypto-level=plain --disable-ipv6=true \
            --listen-port="$BT_PORT" --file-allocation=none \
            --timeout=30 --connect-timeout=10 --bt-stop-timeout="$tmo" \
            --bt-tracker-connect-timeout=10 --bt-tracker-timeout=20 \
            --summary-interval=0 --console-log-level=notice \
            --log="$WORK/aria2.log" --log-level=debug --enable-color=false \
            --check-integrity=true --auto-save-interval=0 \
            "$torrent" >&2 \
            || { tail -50 "$WORK/aria2.log" >&2; lab_die "aria2c failed"; }
        # aria2 has no counter API; its debug log has one line per PIECE message
        # it received ("BtPieceMessage.cc: ... Piece received. index=..").
        local nblocks
        nblocks=$(grep -c 'Piece received\. index=' "$WORK/aria2.log" || true)
        "$PY" "$PEER" truth --torrent "$torrent" --file "$WORK/leech/$base.bin" \
            --expect-sha256 "$sha" --truth "$truth" \
            --client "aria2-$(aria2c --version | awk 'NR==1{print $3}')" \
            --blocks-received "$nblocks" \
            --blocks-source "aria2 --log-level=debug lines 'Piece received. index='"
        ;;
    *) lab_die "unknown leecher $leecher" ;;
    esac
    t1=$(date +%s.%N)
    local rcvbuf_sub="" rcvbuf_up=""
    if [[ $transport == utp ]]; then
        rcvbuf_sub=$(udp_rcvbuf_errors "$LAB_SUB_NS")
        rcvbuf_up=$(udp_rcvbuf_errors "$LAB_UP_NS")
        lab_log "UDP RcvbufErrors: leecher ns $rcvbuf_sub, seeder ns $rcvbuf_up"
    fi
    stop_capture
    local pid
    for pid in "${POISON_PIDS[@]:-}"; do
        [[ -n $pid ]] && lab_stop "$pid" TERM 50   # its stats file gets "final": true
    done
    POISON_PIDS=()

    # capture facts into the truth file, then the tshark cross-check
    "$PY" - "$truth" "$base.pcap" "$CAPTURE_DROPS" "$t0" "$t1" "$source" "$enc" "$transport" \
        "$rcvbuf_sub" "$rcvbuf_up" "$leecher_ips" "$POISON" "$WORK" "${POISON_IPS[*]}" <<EOF
import json, sys
p, pcap, drops, t0, t1, source, enc, transport, rb_sub, rb_up, ips = sys.argv[1:12]
poison, work, poison_ips = sys.argv[12] == "1", sys.argv[13], sys.argv[14].split()
t = json.load(open(p))
if poison:
    # each poisoner's own counts (hostile_peer.py --stats-file)
    t["poisoners"] = []
    for ip in poison_ips:
        st = json.load(open("%s/poisoner-%s.json" % (work, ip)))
        t["poisoners"].append({
            "ip": ip, "port": $BT_PORT, "endpoint": "%s:$BT_PORT" % ip,
            "peer_id": st["peer_id"], "announced": st["announced"],
            "connections": st["connections"], "handshakes": st["handshakes"],
            "piece_requests": st["piece_requests"], "pieces_sent": st["pieces_sent"],
            "piece_bytes_sent": st["piece_bytes_sent"], "bad_requests": st["bad_requests"],
            "sent": st["sent"], "peers": st["peers"], "final": st["final"],
        })
    t["seeder_upload_limit"] = $SEED_UPLOAD_LIMIT
    t["poisoner_piece_delay_seconds"] = $POISON_DELAY
if "downloads" in t:
    t["leecher_ips"] = ips.split()   # tcp-repeat: one per download
else:
    t["leecher_ip"] = ips
t.update({
    "pcap": pcap, "torrent": "$base.torrent", "scenario": "$name",
    "source": source, "encryption": enc, "transport": transport,
    "seeder_ip": "$LAB_SEEDER_IP", "seeder_port": $BT_PORT,
    "tracker_url": "$TRACKER_URL", "topology": "${LAB_TOPOLOGY:-direct}",
    "capture_drops": int(drops) if drops.isdigit() else None,
    "leecher_wall_seconds": round(float(t1) - float(t0), 3),
})
if transport == "utp":
    # UDP datagrams the kernel dropped at a full socket receive buffer (after capture)
    t["udp_rcvbuf_errors_leecher_ns"] = int(rb_sub) if rb_sub.isdigit() else None
    t["udp_rcvbuf_errors_seeder_ns"] = int(rb_up) if rb_up.isdigit() else None
json.dump(t, open(p, "w"), indent=2, sort_keys=True); open(p, "a").write("\n")
EOF
    [[ $CAPTURE_DROPS == 0 ]] || lab_log "WARNING: tcpdump reported $CAPTURE_DROPS dropped packets"
    if [[ ${LAB_SKIP_TSHARK:-0} != 1 ]]; then
        lab_log "tshark cross-check of $pcap"
        local utp_arg=()
        [[ $transport == utp ]] && utp_arg=(--utp)
        [[ $leecher == libtorrent-repeat || $POISON == 1 ]] && utp_arg=(--by-direction)
        "$PY" "$LAB_DIR/tshark_counts.py" "$pcap" --port "$BT_PORT" "${utp_arg[@]}" \
            --truth "$truth" >&2
    fi
    # consistency checks (non-zero exit on failure; LAB_ALLOW_MISMATCH=1 to only warn)
    "$PY" - "$truth" "$pcap" "${LAB_SKIP_TSHARK:-0}" <<'EOF' >&2 || [[ ${LAB_ALLOW_MISMATCH:-0} == 1 ]]
import json, sys
t = json.load(open(sys.argv[1]))
skip_tshark = sys.argv[3] == "1"
b, p = t.get("blocks_received"), t.get("tshark_piece_messages")
ok = True
if t.get("capture_drops") != 0:
    print("[lab] FAIL: tcpdump dropped packets: %s" % t.get("capture_drops")); ok = False
if skip_tshark:
    print("[lab] tshark cross-check skipped")
elif t.get("transport") == "utp":
    # the peer connection must be uTP only: no TCP to/from the BT port at all
    tcp_bt, utp_n = t.get("tcp_frames_on_bt_port"), t.get("utp_packets", 0)
    print("[lab] uTP: %d uTP packets in %d flow(s), %s connection(s), types %s "
          "(tshark's bt-utp recognises %s: %s); TCP frames on the BT port: %s"
          % (utp_n, t.get("utp_flows", 0), t.get("utp_connections"), t.get("utp_types"),
             t.get("tshark_utp_packets"), t.get("tshark_utp_types"), tcp_bt))
    if tcp_bt != 0 or not utp_n:
        print("[lab] FAIL: capture is not uTP-only"); ok = False
    # tshark's uTP reassembly may not find every message: record, do not fail
    t["tshark_piece_matches_blocks_received"] = p == b
    t["blocks_received_equals_num_blocks"] = b == t.get("num_blocks")
    json.dump(t, open(sys.argv[1], "w"), indent=2, sort_keys=True); open(sys.argv[1], "a").write("\n")
    print("[lab] PIECE messages: tshark %d (decode-as %s), leecher %s -> %s (uTP: recorded, not enforced)"
          % (p, t.get("tshark_decode_as_piece_messages"), b, "MATCH" if p == b else "MISMATCH"))
elif t["encryption"] != "plain":
    with open(sys.argv[2], "rb") as f:
        plain = b"\x13BitTorrent protocol" in f.read()
    print("[lab] encrypted: tshark sees %d PIECE messages (expect 0), leecher received %s blocks, "
          "plaintext handshake in capture: %s" % (p, b, plain))
    ok = ok and p == 0 and not plain
elif b is None:
    print("[lab] blocks_received=null, tshark PIECE messages %d (no comparison)" % p)
elif "poisoners" in t:
    pass   # tcp-poison: checked below, per sender
else:
    print("[lab] PIECE messages: tshark %d, leecher %d -> %s" % (p, b, "MATCH" if p == b else "MISMATCH"))
    ok = ok and p == b
if "downloads" in t:
    # tcp-repeat: each download on its own, found in the capture by the leecher's address
    by_dir = t.get("tshark_message_types_by_direction", {})
    for d in t["downloads"]:
        ip, seeder = d["leecher_ip"], t["seeder_ip"]
        line = "[lab] download %d by %s: sha256 %s, blocks_received %d" % (
            d["index"], ip, "ok" if d["sha256_ok"] else "WRONG", d["blocks_received"])
        ok = ok and d["sha256_ok"]
        if not skip_tshark:
            dp = by_dir.get("%s -> %s" % (seeder, ip), {}).get("7", 0)
            dr = by_dir.get("%s -> %s" % (ip, seeder), {}).get("6", 0)
            d["tshark_piece_messages"], d["tshark_request_messages"] = dp, dr
            line += ", tshark PIECE %d / REQUEST %d -> %s" % (
                dp, dr, "MATCH" if dp == d["blocks_received"] else "MISMATCH")
            ok = ok and dp == d["blocks_received"]
        print(line)
    if not skip_tshark:
        # every BitTorrent message is between the seeder and one of the leechers
        ends = {"%s -> %s" % (a, b_) for d in t["downloads"]
                for a, b_ in ((t["seeder_ip"], d["leecher_ip"]), (d["leecher_ip"], t["seeder_ip"]))}
        other = sorted(set(by_dir) - ends)
        if other:
            print("[lab] FAIL: BitTorrent messages between other addresses: %s" % other); ok = False
    json.dump(t, open(sys.argv[1], "w"), indent=2, sort_keys=True); open(sys.argv[1], "a").write("\n")
if "poisoners" in t:
    # tcp-poison: the leecher completed from the honest seeder despite the poisoners, and
    # the poisoners did lie on the wire (else the recording tests nothing)
    leecher, seeder = t["leecher_ip"], t["seeder_ip"]
    print("[lab] poison: leecher completed %s, sha256 %s, hash failures %s (pieces %s), banned %s"
          % (t.get("completed"), "ok" if t.get("sha256_ok") else "WRONG", t.get("hash_failures"),
             t.get("hash_failed_pieces"), t.get("banned_peers")))
    ok = ok and t.get("completed") is True and t.get("sha256_ok") is True
    if not t.get("hash_failures"):
        print("[lab] FAIL: no hash failure: the poisoners did not get a bad piece in"); ok = False
    if not skip_tshark:
        by_dir = t.get("tshark_message_types_by_direction", {})
        piece = lambda a, b_: by_dir.get("%s -> %s" % (a, b_), {}).get("7", 0)
        t["seeder_tshark_piece_messages"] = piece(seeder, leecher)
        for x in t["poisoners"]:
            x["tshark_piece_messages"] = piece(x["ip"], leecher)
            x["tshark_request_messages"] = by_dir.get("%s -> %s" % (leecher, x["ip"]), {}).get("6", 0)
            print("[lab] poisoner %s: sent %d PIECE (%d bytes) for %d REQUESTs; tshark PIECE %d / REQUEST %d"
                  % (x["endpoint"], x["pieces_sent"], x["piece_bytes_sent"], x["piece_requests"],
                     x["tshark_piece_messages"], x["tshark_request_messages"]))
            # what it wrote may die in its socket buffer when the leecher bans it (RST)
            if x["tshark_piece_messages"] > x["pieces_sent"]:
                print("[lab] FAIL: more PIECEs on the wire than %s sent" % x["endpoint"]); ok = False
        print("[lab] honest seeder %s: tshark PIECE %d" % (seeder, t["seeder_tshark_piece_messages"]))
        # every PIECE on the wire is the seeder's or a poisoner's; the leecher read all of
        # them but those that came after it closed the connection (a poisoner it banned;
        # the seeder once finished): no exact match as in the other scenarios
        bad = sum(x["tshark_piece_messages"] for x in t["poisoners"])
        t["piece_messages_not_read_by_leecher"] = p - b
        print("[lab] PIECE messages: tshark %d = seeder %d + poisoners %d; leecher read %d (%d not read)"
              % (p, t["seeder_tshark_piece_messages"], bad, b, p - b))
        if p != t["seeder_tshark_piece_messages"] + bad or p < b:
            print("[lab] FAIL: PIECE counts do not add up"); ok = False
        if not any(x["tshark_piece_messages"] for x in t["poisoners"]):
            print("[lab] FAIL: no poisoned PIECE on the wire"); ok = False
        ends = {leecher} | {seeder} | {x["ip"] for x in t["poisoners"]}
        other = sorted(k for k in by_dir if set(k.split(" -> ")) - ends or leecher not in k.split(" -> "))
        if other:
            print("[lab] FAIL: BitTorrent messages between other addresses: %s" % other); ok = False
    json.dump(t, open(sys.argv[1], "w"), indent=2, sort_keys=True); open(sys.argv[1], "a").write("\n")
sys.exit(0 if ok else 1)
EOF

    cp "$pcap" "$out/$base.pcap"
    cp "$torrent" "$out/$base.torrent"
    cp "$truth" "$out/$base.json"
    chmod 644 "$out/$base".*
    lab_log "wrote $out/$base.{pcap,torrent,json} ($(stat -c %s "$out/$base.pcap") bytes pcap)"
    cat "$out/$base.json"

    lab_teardown
    trap - EXIT INT TERM
    [[ ${LAB_KEEP:-0} == 1 ]] && lab_log "work dir kept: $WORK" || rm -rf -- "$WORK"
    WORK=""
}

record() {
    local mib=$((1024 * 1024)) kib=1024
    case $1 in
    tcp-repeat)
        # not committed: by default into the gitignored pcaps/large/
        local size_mib
        REPEAT_N=$(int_env LAB_REPEAT 2 1 "$REPEAT_MAX")
        size_mib=$(int_env LAB_SIZE_MIB 1 1 1024)
        REPEAT_PAUSE=${LAB_PAUSE_S:-1}
        [[ $REPEAT_PAUSE =~ ^[0-9]+(\.[0-9]+)?$ ]] && (( 10#${REPEAT_PAUSE%.*} <= 60 )) \
            || lab_die "LAB_PAUSE_S must be a number of seconds in 0..60 (got '$REPEAT_PAUSE')"
        run_scenario "$1" libtorrent-repeat torrent plain $((size_mib * mib)) $((64 * kib)) \
            "${LAB_OUT_DIR:-$REPO_DIR/pcaps/large}" $((60 + 2 * size_mib))
        return
        ;;
    esac
    case $1 in
    tcp-plain)     run_scenario "$1" libtorrent torrent plain $mib $((64 * kib)) "$OUT_DIR" 60 ;;
    tcp-magnet)    run_scenario "$1" libtorrent magnet  plain $mib $((64 * kib)) "$OUT_DIR" 60 ;;
    tcp-encrypted) run_scenario "$1" libtorrent torrent rc4   $mib $((64 * kib)) "$OUT_DIR" 60 ;;
    tcp-aria2)     run_scenario "$1" aria2      torrent plain $mib $((64 * kib)) "$OUT_DIR" 60 ;;
    utp-plain)     run_scenario "$1" libtorrent torrent plain $mib $((64 * kib)) "$OUT_DIR" 60 utp ;;
    utp-magnet)    run_scenario "$1" libtorrent magnet  plain $mib $((64 * kib)) "$OUT_DIR" 60 utp ;;
    tcp-poison)
        POISON=1
        # every honest connection from the seeder's address, whoever opens it (libtorrent
        # seeds connect to the peers the tracker lists, the leecher too)
        SEED_OUTGOING=$LAB_SEEDER_IP
        SEED_UPLOAD_LIMIT=$(int_env LAB_POISON_LIMIT 262144 16384 104857600)
        POISON_DELAY_MS=$(int_env LAB_POISON_DELAY_MS 3000 0 10000)
        POISON_DELAY=$(printf '%d.%03d' $((POISON_DELAY_MS / 1000)) $((POISON_DELAY_MS % 1000)))
        local size_mib piece_kib
        size_mib=$(int_env LAB_POISON_SIZE_MIB 1 1 64)
        piece_kib=$(int_env LAB_POISON_PIECE_KIB 64 16 4096)
        ((piece_kib & (piece_kib - 1))) && lab_die "LAB_POISON_PIECE_KIB must be a power of two"
        run_scenario "$1" libtorrent torrent plain $((size_mib * mib)) $((piece_kib * kib)) \
            "$OUT_DIR" $((120 + 8 * size_mib))
        POISON=0 SEED_UPLOAD_LIMIT=0 POISON_DELAY=0 SEED_OUTGOING=""
        ;;
    *) lab_die "unknown scenario '$1' (known: ${SCENARIOS[*]} ${EXTRA_SCENARIOS[*]})" ;;
    esac
}

main() {
    local cmd=${1:-}
    case $cmd in
    record)
        [[ $# == 2 ]] || lab_die "usage: $0 record NAME"
        need_root_and_tools
        record "$2"
        ;;
    record-all)
        need_root_and_tools
        local s
        for s in "${SCENARIOS[@]}"; do record "$s"; done
        lab_log "all scenarios recorded into $OUT_DIR"
        ;;
    large)
        need_root_and_tools
        df -h "$REPO_DIR" >&2
        # ~256 MiB, 1 MiB pieces, plain TCP, libtorrent leecher
        LAB_SKIP_TSHARK=${LAB_SKIP_TSHARK:-0} \
            run_scenario large libtorrent torrent plain $((256 * 1024 * 1024)) $((1024 * 1024)) \
            "$OUT_DIR/large" 600
        ;;
    count)
        [[ $# == 2 || ( $# == 3 && $3 == --utp ) ]] || lab_die "usage: $0 count PCAP [--utp]"
        "$PY" "$LAB_DIR/tshark_counts.py" "$2" --port "$BT_PORT" "${@:3}"
        ;;
    demo)
        # the walkthrough of docs/lab.md: 5 subscribers fetch the same 16 MiB torrent, 3 s apart
        [[ $# == 1 ]] || lab_die "usage: $0 demo (settings through env, see the header)"
        need_root_and_tools
        export LAB_REPEAT=${LAB_REPEAT:-5} LAB_SIZE_MIB=${LAB_SIZE_MIB:-16} \
            LAB_PAUSE_S=${LAB_PAUSE_S:-3} LAB_OUT_DIR=${LAB_OUT_DIR:-/tmp/peercache-demo}
        record tcp-repeat
        lab_log "demo done: $LAB_OUT_DIR/lab-tcp-repeat.{pcap,torrent,json}"
        ;;
    down) lab_teardown all ;;
    list) printf '%s\n' "${SCENARIOS[@]}" "${EXTRA_SCENARIOS[@]}" ;;
    *)
        awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
}

main "$@"
