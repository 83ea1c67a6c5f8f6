# shellcheck shell=bash
# peercache test lab: network-namespace helpers. Source this file (bash).
#
# Topologies (all addresses inside 198.18.0.0/15, the benchmarking range; no
# default routes are installed anywhere, so nothing can leave the lab):
#
#   direct:  pc-sub [pcs0 198.18.0.2/24] <--veth--> [pcu0 198.19.0.1/24 + .2/24] pc-up
#            each side has an on-link route to the other /24.
#
#   box:     pc-sub [pcs0 198.18.0.2/24] <--veth--> [bxs0 198.18.0.1/24] pc-box
#            pc-box [bxu0 198.19.0.254/24] <--veth--> [pcu0 198.19.0.1/24 + .2/24] pc-up
#            pc-box forwards IPv4 (routed, inline); sub routes 198.19.0.0/24 via
#            198.18.0.1, up routes 198.18.0.0/24 via 198.19.0.254. A test may
#            instead run its own code in pc-box (e.g. the cache in inline mode).
#
#   bridge:  pc-sub [pcs0 198.18.0.2/24] <--veth--> [bxs0] pc-box [bxu0] <--veth-->
#            [pcu0 198.19.0.1/24 + .2/24 + .3/24] pc-up
#            pc-box's two ports have NO addresses: pc-box is a transparent layer-2
#            bridge. As in direct, sub and up have on-link routes to each other's /24
#            (ARP crosses the bridge). Nothing passes until lab_box_bridge_start puts a
#            bridge in pc-box: a program under test (e.g. `peercache inline` on
#            bxs0/bxu0) or, without one, the kernel's bridge (the reference).
#            198.19.0.3 is a second seeder address (another swarm, e.g. encrypted).
#            lab_add_box_mgmt adds pc-box's management link (below).
#
#   box management link (lab_add_box_mgmt, bridge topology): the box's own port, the way
#            an appliance has one beside its bridge ports:
#            pc-box [bxm0 198.19.1.1/30] <--veth--> [pcm0] pc-up
#            pc-box routes 198.19.0.0/24 (upstream) via 198.19.1.2 and nothing else (no
#            default route, ip_forward stays 0). In pc-up, pcu0 and pcm0 become the two
#            isolated ports of a bridge pcbr0 that holds pc-up's addresses (198.19.0.1-.3/24
#            and 198.19.1.2/30; pc-up answers on-link): libtorrent binds its listen sockets
#            to the device of their address, so both paths must end on one device (see
#            lab_add_box_mgmt). It carries only the box's own connections (e.g. its BEP 9
#            metadata fetch), never bridged traffic.
#
# Roles: 198.18.0.2 = subscriber (leechers), 198.19.0.1 = tracker,
#        198.19.0.2 = seeder (both on pc-up). lab_add_sub_ip adds more subscriber
#        addresses (198.18.0.3, .4, ...) to pcs0, for several leechers.
#
# Namespaces are deleted only by the run that created them (LAB_OWNED_NS), so a run
# that finds the lab busy fails without breaking the run that owns it;
# 'lab_teardown all' (lab.sh down) removes leftovers whoever made them.
#
# IPv6 is disabled in every namespace (no ND / router-solicitation noise in
# captures) and segmentation/checksum offloads are turned off on every veth,
# so captured packets are MTU-sized with valid checksums, like on a real wire.

LAB_SUB_NS=${LAB_SUB_NS:-pc-sub}
LAB_UP_NS=${LAB_UP_NS:-pc-up}
LAB_BOX_NS=${LAB_BOX_NS:-pc-box}

LAB_SUB_IF=pcs0
LAB_UP_IF=pcu0
LAB_BOX_SUB_IF=bxs0
LAB_BOX_UP_IF=bxu0

LAB_SUB_IP=198.18.0.2
LAB_SUB_NET=198.18.0.0/24
LAB_UP_NET=198.19.0.0/24
LAB_TRACKER_IP=198.19.0.1
LAB_SEEDER_IP=198.19.0.2
LAB_SEEDER2_IP=198.19.0.3   # bridge topology only
LAB_BOX_SUB_IP=198.18.0.1
LAB_BOX_UP_IP=198.19.0.254
# pc-box's management link (lab_add_box_mgmt): outside the subscriber and upstream /24s
LAB_BOX_MGMT_IF=bxm0
LAB_UP_MGMT_IF=pcm0
LAB_BOX_MGMT_IP=198.19.1.1
LAB_UP_MGMT_IP=198.19.1.2
LAB_BOX_MGMT_NET=198.19.1.0/30
LAB_MTU=${LAB_MTU:-1500}

lab_log() { printf '[lab %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
lab_die() { lab_log "ERROR: $*"; exit 1; }

# lab_in NS CMD... : run a command inside namespace NS.
lab_in() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

lab_ns_exists() { ip netns list | awk '{print $1}' | grep -qx -- "$1"; }

# Namespaces this shell created (the only ones lab_teardown deletes by default).
LAB_OWNED_NS=()

# lab_busy: true while any lab namespace exists (another run, or leftovers).
lab_busy() {
    local ns
    for ns in "$LAB_SUB_NS" "$LAB_UP_NS" "$LAB_BOX_NS"; do
        lab_ns_exists "$ns" && return 0
    done
    return 1
}

# The lab's lock: held (flock on LAB_LOCK_FILE) from lab_wait_free until the shell exits,
# so two runs that start together cannot both find the lab free and then collide while
# creating it (checking for namespaces alone is a race).
LAB_LOCK_FILE=${LAB_LOCK_FILE:-/run/peercache-lab.lock}

# lab_wait_free SECONDS: take the lab's lock and wait (bounded, 1 s steps) until no lab
# namespace exists; 1 if still busy after SECONDS (0: check once).
lab_wait_free() {
    local secs=${1:-0} i
    if [[ -z ${LAB_LOCK_FD:-} ]]; then
        exec {LAB_LOCK_FD}>>"$LAB_LOCK_FILE" || lab_die "cannot open $LAB_LOCK_FILE"
        if ! flock -n "$LAB_LOCK_FD"; then
            lab_log "lab busy (another run holds $LAB_LOCK_FILE); waiting up to ${secs}s"
            flock -w "$secs" "$LAB_LOCK_FD" || return 1
        fi
    fi
    for ((i = 0; i <= secs; i++)); do
        lab_busy || return 0
        if ((i == 0 && secs > 0)); then
            lab_log "lab busy (namespaces: $(ip netns list | awk '{print $1}' | xargs)); waiting up to ${secs}s"
        fi
        if ((i < secs)); then sleep 1; fi
    done
    return 1
}

# _lab_ns_init NS: create a namespace with lo up and IPv6 off.
_lab_ns_init() {
    local ns=$1
    lab_ns_exists "$ns" && lab_die "namespace $ns already exists (another lab run, or leftovers: 'lab.sh down')"
    # 'ip netns add' fails if another run created it in the meantime
    ip netns add "$ns" 2>/dev/null || lab_die "could not create namespace $ns (another lab run?)"
    LAB_OWNED_NS+=("$ns")
    lab_in "$ns" ip link set lo up
    lab_in "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    lab_in "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
}

# _lab_if_setup NS IF: offloads off, MTU, up.
_lab_if_setup() {
    local ns=$1 dev=$2
    lab_in "$ns" ip link set "$dev" mtu "$LAB_MTU"
    if command -v ethtool >/dev/null; then
        lab_in "$ns" ethtool -K "$dev" tso off gso off gro off tx off rx off >/dev/null 2>&1 \
            || lab_log "warning: ethtool -K failed on $ns/$dev"
    else
        lab_log "warning: ethtool missing, offloads stay on (capture has large segments)"
    fi
    lab_in "$ns" ip link set "$dev" up
}

# _lab_veth NS_A IF_A NS_B IF_B: veth pair between two namespaces.
_lab_veth() {
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    _lab_if_setup "$1" "$2"
    _lab_if_setup "$3" "$4"
}

_lab_up_addrs() {
    lab_in "$LAB_UP_NS" ip addr add "$LAB_TRACKER_IP/24" dev "$LAB_UP_IF"
    lab_in "$LAB_UP_NS" ip addr add "$LAB_SEEDER_IP/24" dev "$LAB_UP_IF"
}

# lab_setup_direct: pc-sub <-> pc-up over one veth pair.
lab_setup_direct() {
    _lab_ns_init "$LAB_SUB_NS"
    _lab_ns_init "$LAB_UP_NS"
    _lab_veth "$LAB_SUB_NS" "$LAB_SUB_IF" "$LAB_UP_NS" "$LAB_UP_IF"
    lab_in "$LAB_SUB_NS" ip addr add "$LAB_SUB_IP/24" dev "$LAB_SUB_IF"
    _lab_up_addrs
    lab_in "$LAB_SUB_NS" ip route add "$LAB_UP_NET" dev "$LAB_SUB_IF"
    lab_in "$LAB_UP_NS" ip route add "$LAB_SUB_NET" dev "$LAB_UP_IF"
    lab_check_connectivity
    LAB_TOPOLOGY=direct
}

# lab_add_mgmt: a management link from this (root) namespace into pc-sub, the way an
# appliance has a management port: 198.18.255.1/30 here, 198.18.255.2/30 in pc-sub. It
# carries only the operator's own traffic (dashboard, Prometheus); it goes away with pc-sub.
LAB_MGMT_HOST_IP=198.18.255.1
LAB_MGMT_NS_IP=198.18.255.2
lab_add_mgmt() {
    ip link del pcmgmt0 2>/dev/null || true
    ip link add pcmgmt0 type veth peer name pcmgmt1 netns "$LAB_SUB_NS"
    ip addr add "$LAB_MGMT_HOST_IP/30" dev pcmgmt0
    ip link set pcmgmt0 up
    lab_in "$LAB_SUB_NS" ip addr add "$LAB_MGMT_NS_IP/30" dev pcmgmt1
    lab_in "$LAB_SUB_NS" ip link set pcmgmt1 up
    lab_log "management link: this host $LAB_MGMT_HOST_IP <-> $LAB_SUB_NS $LAB_MGMT_NS_IP"
}

# lab_add_box_mgmt: pc-box's management link (bridge topology, after lab_setup_bridge and
# before anything listens in pc-up): a veth pair pc-box bxm0 198.19.1.1/30 <-> pc-up pcm0
# (offloads off like every veth), and in pc-box one route, the upstream /24 via
# 198.19.1.2.
#
# pc-up: the seeders are libtorrent, and libtorrent 2.0 binds each listen socket to the
# device that holds its address (SO_BINDTODEVICE; session_impl's expand_devices), so a
# connection that arrives on any other interface of pc-up is refused (RST). An Internet
# host has one interface where everything arrives; so here pc-up's addresses move from
# pcu0 to a bridge pcbr0 whose two ports are pcu0 (to the box's upstream port) and pcm0
# (to its management port), and pcbr0 also holds 198.19.1.2/30: both paths end on the
# same device. Both ports are isolated (the bridge never forwards between them, only
# to and from pc-up's own stack), each end knows the other's MAC (permanent neighbour
# entries, so no ARP ever crosses the management link), and pcbr0 knows bxm0's MAC on
# pcm0 (a static FDB entry, so no frame for the box's management port is ever flooded out
# pcu0 into the bridged path). pcu0 stays what the captures and counters look at: it still
# carries exactly the bridged path's frames. The /30 is on-link on pcbr0, so pc-up's replies
# to 198.19.1.1 (from whichever of its addresses the connection has, e.g. a seeder's
# 198.19.0.2) leave through pcbr0 and its port pcm0; reverse-path filtering (strict or
# loose) passes both ways, each side's route back to the other's source being the device
# the packet came in on. Checked here, bounded: the routes both ways, and a ping from
# 198.19.1.1 to the tracker's and the seeders' addresses.
LAB_UP_BR=pcbr0
lab_add_box_mgmt() {
    local ip dev rp a addrs box_mac br_mac
    [[ ${LAB_TOPOLOGY:-} == bridge ]] || lab_die "lab_add_box_mgmt: run lab_setup_bridge first"
    _lab_veth "$LAB_BOX_NS" "$LAB_BOX_MGMT_IF" "$LAB_UP_NS" "$LAB_UP_MGMT_IF"
    # pc-up: pcu0's addresses and route onto the bridge (its MAC pcu0's, so nothing that
    # already resolved pc-up's addresses goes stale)
    lab_in "$LAB_UP_NS" ip link add "$LAB_UP_BR" type bridge stp_state 0 forward_delay 0
    lab_in "$LAB_UP_NS" ip link set "$LAB_UP_BR" address \
        "$(lab_in "$LAB_UP_NS" cat "/sys/class/net/$LAB_UP_IF/address")"
    lab_in "$LAB_UP_NS" ip link set "$LAB_UP_BR" mtu "$LAB_MTU"
    lab_in "$LAB_UP_NS" ip route del "$LAB_SUB_NET" dev "$LAB_UP_IF"
    addrs=$(lab_in "$LAB_UP_NS" ip -o -4 addr show dev "$LAB_UP_IF" | awk '{print $4}')
    lab_in "$LAB_UP_NS" ip addr flush dev "$LAB_UP_IF"
    for a in $addrs; do lab_in "$LAB_UP_NS" ip addr add "$a" dev "$LAB_UP_BR"; done
    lab_in "$LAB_UP_NS" ip addr add "$LAB_UP_MGMT_IP/30" dev "$LAB_UP_BR"
    for dev in "$LAB_UP_IF" "$LAB_UP_MGMT_IF"; do
        lab_in "$LAB_UP_NS" ip link set "$dev" master "$LAB_UP_BR"
        lab_in "$LAB_UP_NS" bridge link set dev "$dev" isolated on
    done
    lab_in "$LAB_UP_NS" ethtool -K "$LAB_UP_BR" tso off gso off gro off tx off >/dev/null 2>&1 \
        || lab_log "warning: ethtool -K failed on $LAB_UP_NS/$LAB_UP_BR"
    lab_in "$LAB_UP_NS" ip link set "$LAB_UP_BR" up
    lab_in "$LAB_UP_NS" ip route add "$LAB_SUB_NET" dev "$LAB_UP_BR"
    # pc-box: its address and one route
    lab_in "$LAB_BOX_NS" ip addr add "$LAB_BOX_MGMT_IP/30" dev "$LAB_BOX_MGMT_IF"
    lab_in "$LAB_BOX_NS" ip route add "$LAB_UP_NET" via "$LAB_UP_MGMT_IP" dev "$LAB_BOX_MGMT_IF"
    # no ARP on the link, no flooding of the box's MAC
    box_mac=$(lab_in "$LAB_BOX_NS" cat "/sys/class/net/$LAB_BOX_MGMT_IF/address")
    br_mac=$(lab_in "$LAB_UP_NS" cat "/sys/class/net/$LAB_UP_BR/address")
    lab_in "$LAB_UP_NS" ip neigh replace "$LAB_BOX_MGMT_IP" lladdr "$box_mac" dev "$LAB_UP_BR" nud permanent
    lab_in "$LAB_BOX_NS" ip neigh replace "$LAB_UP_MGMT_IP" lladdr "$br_mac" dev "$LAB_BOX_MGMT_IF" nud permanent
    lab_in "$LAB_UP_NS" bridge fdb replace "$box_mac" dev "$LAB_UP_MGMT_IF" master static
    for ip in "$LAB_TRACKER_IP" "$LAB_SEEDER_IP" "$LAB_SEEDER2_IP"; do
        dev=$(lab_in "$LAB_BOX_NS" ip -o route get "$ip" from "$LAB_BOX_MGMT_IP" \
            | sed -n 's/.* dev \([^ ]*\).*/\1/p')
        [[ $dev == "$LAB_BOX_MGMT_IF" ]] \
            || lab_die "box management link: $LAB_BOX_NS routes $ip via '$dev', not $LAB_BOX_MGMT_IF"
        dev=$(lab_in "$LAB_UP_NS" ip -o route get "$LAB_BOX_MGMT_IP" from "$ip" \
            | sed -n 's/.* dev \([^ ]*\).*/\1/p')
        [[ $dev == "$LAB_UP_BR" ]] \
            || lab_die "box management link: $LAB_UP_NS answers $LAB_BOX_MGMT_IP from $ip via '$dev', not $LAB_UP_BR"
        lab_in "$LAB_BOX_NS" ping -n -q -c 1 -W 2 -I "$LAB_BOX_MGMT_IP" "$ip" >/dev/null \
            || lab_die "box management link: no ping $LAB_BOX_MGMT_IP -> $ip"
    done
    # for the log: the rp_filter in force on each end (all, device)
    rp="$(lab_in "$LAB_BOX_NS" sysctl -n net.ipv4.conf.all.rp_filter "net.ipv4.conf.$LAB_BOX_MGMT_IF.rp_filter" | xargs)"
    rp+=" / $(lab_in "$LAB_UP_NS" sysctl -n net.ipv4.conf.all.rp_filter "net.ipv4.conf.$LAB_UP_BR.rp_filter" | xargs)"
    lab_log "box management link: $LAB_BOX_NS $LAB_BOX_MGMT_IF $LAB_BOX_MGMT_IP <-> $LAB_UP_NS $LAB_UP_MGMT_IF (port of $LAB_UP_BR, $LAB_UP_MGMT_IP; pc-up's addresses on $LAB_UP_BR, ports $LAB_UP_IF $LAB_UP_MGMT_IF isolated); route $LAB_UP_NET via $LAB_UP_MGMT_IP; rp_filter all,dev: $rp"
}

# lab_setup_box [forward]: pc-sub <-> pc-box <-> pc-up. With "forward" (default)
# pc-box routes between the sides; with "noforward" the caller must put
# something in pc-box that carries the traffic (e.g. a transparent proxy).
lab_setup_box() {
    local fwd=${1:-forward}
    _lab_ns_init "$LAB_SUB_NS"
    _lab_ns_init "$LAB_UP_NS"
    _lab_ns_init "$LAB_BOX_NS"
    _lab_veth "$LAB_SUB_NS" "$LAB_SUB_IF" "$LAB_BOX_NS" "$LAB_BOX_SUB_IF"
    _lab_veth "$LAB_BOX_NS" "$LAB_BOX_UP_IF" "$LAB_UP_NS" "$LAB_UP_IF"
    lab_in "$LAB_SUB_NS" ip addr add "$LAB_SUB_IP/24" dev "$LAB_SUB_IF"
    lab_in "$LAB_BOX_NS" ip addr add "$LAB_BOX_SUB_IP/24" dev "$LAB_BOX_SUB_IF"
    lab_in "$LAB_BOX_NS" ip addr add "$LAB_BOX_UP_IP/24" dev "$LAB_BOX_UP_IF"
    _lab_up_addrs
    lab_in "$LAB_SUB_NS" ip route add "$LAB_UP_NET" via "$LAB_BOX_SUB_IP" dev "$LAB_SUB_IF"
    lab_in "$LAB_UP_NS" ip route add "$LAB_SUB_NET" via "$LAB_BOX_UP_IP" dev "$LAB_UP_IF"
    if [[ $fwd == forward ]]; then
        lab_in "$LAB_BOX_NS" sysctl -qw net.ipv4.ip_forward=1
        lab_check_connectivity
    fi
    LAB_TOPOLOGY=box
}

# lab_setup_bridge: pc-sub <-> pc-box <-> pc-up, pc-box an address-less layer-2 hop.
# Connectivity is checked by lab_box_bridge_start (nothing crosses pc-box before).
lab_setup_bridge() {
    _lab_ns_init "$LAB_SUB_NS"
    _lab_ns_init "$LAB_UP_NS"
    _lab_ns_init "$LAB_BOX_NS"
    _lab_veth "$LAB_SUB_NS" "$LAB_SUB_IF" "$LAB_BOX_NS" "$LAB_BOX_SUB_IF"
    _lab_veth "$LAB_BOX_NS" "$LAB_BOX_UP_IF" "$LAB_UP_NS" "$LAB_UP_IF"
    lab_in "$LAB_SUB_NS" ip addr add "$LAB_SUB_IP/24" dev "$LAB_SUB_IF"
    _lab_up_addrs
    lab_in "$LAB_UP_NS" ip addr add "$LAB_SEEDER2_IP/24" dev "$LAB_UP_IF"
    lab_in "$LAB_SUB_NS" ip route add "$LAB_UP_NET" dev "$LAB_SUB_IF"
    lab_in "$LAB_UP_NS" ip route add "$LAB_SUB_NET" dev "$LAB_UP_IF"
    # pc-box never routes and has no address: it can only bridge
    lab_in "$LAB_BOX_NS" sysctl -qw net.ipv4.ip_forward=0
    LAB_TOPOLOGY=bridge
    LAB_BOX_KIND=""
    LAB_BOX_PID=""
}

# lab_box_bridge_start [CMD]: put a bridge between bxs0 and bxu0 in pc-box, then check
# (bounded) that sub reaches up through it.
#  - CMD (default: env LAB_BOX_CMD) non-empty: run `bash -c CMD` in pc-box, in the
#    background, output to LAB_BOX_LOG (default /tmp/peercache-lab-box.log), with
#    LAB_BOX_SUB_IF=bxs0 LAB_BOX_UP_IF=bxu0 LAB_SUB_NET LAB_UP_NET in its environment
#    (plus whatever the caller exported, e.g. LAB_BOX_METAINFO_DIR, LAB_BOX_WORK,
#    LAB_BOX_REPORT). Use `exec` in CMD so signals reach the program. Ready when a line
#    of its log contains "bridging" (bounded: LAB_BOX_READY_S, default 60 s; fails at
#    once if it exits). lab_box_bridge_stop sends it SIGTERM.
#  - CMD empty: the kernel bridge br0 (both ports enslaved, STP off, forward delay 0):
#    the reference, to validate the lab itself and for the latency bench.
# Sets LAB_BOX_KIND (command|kernel) and LAB_BOX_PID (command only).
lab_box_bridge_start() {
    local cmd=${1-${LAB_BOX_CMD:-}} log=${LAB_BOX_LOG:-/tmp/peercache-lab-box.log}
    local ready_s=${LAB_BOX_READY_S:-60} i ip
    [[ ${LAB_TOPOLOGY:-} == bridge ]] || lab_die "lab_box_bridge_start: run lab_setup_bridge first"
    if [[ -n $cmd ]]; then
        : >"$log"
        lab_bg "$LAB_BOX_NS" "$log" env LAB_BOX_SUB_IF="$LAB_BOX_SUB_IF" \
            LAB_BOX_UP_IF="$LAB_BOX_UP_IF" LAB_SUB_NET="$LAB_SUB_NET" LAB_UP_NET="$LAB_UP_NET" \
            bash -c "$cmd"
        LAB_BOX_PID=$LAB_LAST_PID
        LAB_BOX_KIND=command
        for ((i = 0; i < ready_s * 10; i++)); do
            grep -q bridging "$log" 2>/dev/null && break
            if ! kill -0 "$LAB_BOX_PID" 2>/dev/null; then
                cat "$log" >&2
                lab_die "box command exited before it was bridging (log: $log)"
            fi
            sleep 0.1
        done
        grep -q bridging "$log" \
            || { cat "$log" >&2; lab_die "box command not bridging after ${ready_s}s (log: $log)"; }
        lab_log "box command bridging $LAB_BOX_SUB_IF <-> $LAB_BOX_UP_IF (pid $LAB_BOX_PID, log $log)"
    else
        lab_in "$LAB_BOX_NS" ip link add br0 type bridge stp_state 0 forward_delay 0
        lab_in "$LAB_BOX_NS" ip link set "$LAB_BOX_SUB_IF" master br0
        lab_in "$LAB_BOX_NS" ip link set "$LAB_BOX_UP_IF" master br0
        lab_in "$LAB_BOX_NS" ip link set br0 up
        LAB_BOX_KIND=kernel
        lab_log "kernel bridge br0: $LAB_BOX_SUB_IF <-> $LAB_BOX_UP_IF"
    fi
    # the first packets may still be learning (ARP): up to 5 tries of 2 s each
    for ip in "$LAB_TRACKER_IP" "$LAB_SEEDER_IP" "$LAB_SEEDER2_IP"; do
        for ((i = 0; i < 5; i++)); do
            lab_in "$LAB_SUB_NS" ping -n -q -c 1 -W 2 "$ip" >/dev/null && break
        done
        ((i < 5)) || lab_die "no connectivity $LAB_SUB_NS -> $ip through the $LAB_BOX_KIND bridge"
    done
}

# lab_box_bridge_stop: stop what lab_box_bridge_start started. A box command gets
# SIGTERM and LAB_BOX_STOP_S (default 30) seconds to exit (it may write a report), then
# SIGKILL. Sets LAB_BOX_EXIT: its exit status, "killed", or "" (kernel bridge).
lab_box_bridge_stop() {
    local stop_s=${LAB_BOX_STOP_S:-30} i rc
    LAB_BOX_EXIT=""
    case ${LAB_BOX_KIND:-} in
    command)
        if kill -0 "$LAB_BOX_PID" 2>/dev/null; then
            kill -TERM "$LAB_BOX_PID" 2>/dev/null || true
            for ((i = 0; i < stop_s * 10; i++)); do
                kill -0 "$LAB_BOX_PID" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$LAB_BOX_PID" 2>/dev/null; then
                lab_log "box command (pid $LAB_BOX_PID) ignored SIGTERM for ${stop_s}s, killing"
                kill -KILL "$LAB_BOX_PID" 2>/dev/null || true
                wait "$LAB_BOX_PID" 2>/dev/null || true
                LAB_BOX_EXIT=killed
            fi
        fi
        if [[ -z $LAB_BOX_EXIT ]]; then
            rc=0
            wait "$LAB_BOX_PID" 2>/dev/null || rc=$?
            LAB_BOX_EXIT=$rc
        fi
        lab_log "box command stopped (exit $LAB_BOX_EXIT)"
        ;;
    kernel)
        lab_in "$LAB_BOX_NS" ip link del br0 2>/dev/null || true
        ;;
    esac
    LAB_BOX_KIND=""
    LAB_BOX_PID=""
}

# lab_if_stat NS IF COUNTER: a /sys/class/net statistics counter (tx_bytes, rx_packets,
# ...) of interface IF in namespace NS (bytes count whole frames, headers included).
lab_if_stat() {
    lab_in "$1" cat "/sys/class/net/$2/statistics/$3"
}

# lab_add_sub_ip IP: one more subscriber address on the subscriber veth (same /24,
# so both topologies route it), checked with a bounded ping from that address.
lab_add_sub_ip() {
    local ip=$1
    [[ $ip == 198.18.0.* ]] || lab_die "subscriber address $ip outside 198.18.0.0/24"
    lab_in "$LAB_SUB_NS" ip addr add "$ip/24" dev "$LAB_SUB_IF"
    lab_in "$LAB_SUB_NS" ping -n -q -c 1 -W 2 -I "$ip" "$LAB_SEEDER_IP" >/dev/null \
        || lab_die "no connectivity $LAB_SUB_NS $ip -> $LAB_SEEDER_IP"
}

# lab_check_connectivity: bounded ping sub <-> tracker/seeder.
lab_check_connectivity() {
    local ip
    for ip in "$LAB_TRACKER_IP" "$LAB_SEEDER_IP"; do
        lab_in "$LAB_SUB_NS" ping -n -q -c 1 -W 2 "$ip" >/dev/null \
            || lab_die "no connectivity $LAB_SUB_NS -> $ip"
    done
}

# lab_wait_port NS IP PORT [TRIES] : wait (bounded, 0.2 s steps) for a TCP listener.
lab_wait_port() {
    local ns=$1 ip=$2 port=$3 tries=${4:-100} i
    for ((i = 0; i < tries; i++)); do
        if lab_in "$ns" ss -Hltn "src $ip:$port" 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.2
    done
    lab_log "timeout waiting for $ns $ip:$port to listen"
    return 1
}

# lab_wait_file FILE [TRIES] [PID]: wait (bounded, 0.2 s steps) for FILE to
# exist; give up early if PID dies.
lab_wait_file() {
    local f=$1 tries=${2:-150} pid=${3:-} i
    for ((i = 0; i < tries; i++)); do
        [[ -e $f ]] && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            lab_log "process $pid exited while waiting for $f"
            return 1
        fi
        sleep 0.2
    done
    lab_log "timeout waiting for $f"
    return 1
}

# Background processes started through lab_bg are stopped by lab_teardown.
LAB_PIDS=()

# lab_bg NS LOGFILE CMD... : start CMD in NS in the background; sets LAB_LAST_PID.
lab_bg() {
    local ns=$1 log=$2; shift 2
    if [[ -n ${LAB_LOCK_FD:-} ]]; then
        # the lab's lock stays with this shell, not with what it starts
        ip netns exec "$ns" "$@" >"$log" 2>&1 {LAB_LOCK_FD}>&- &
    else
        ip netns exec "$ns" "$@" >"$log" 2>&1 &
    fi
    LAB_LAST_PID=$!
    LAB_PIDS+=("$LAB_LAST_PID")
}

# lab_stop PID [SIGNAL] [TRIES]: signal one process and wait (bounded) for it;
# SIGKILL if it does not exit.
lab_stop() {
    local pid=$1 sig=${2:-TERM} tries=${3:-50} i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < tries; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        lab_log "pid $pid ignored SIG$sig, killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# lab_kill_ns NS: kill every process still living in namespace NS (by pid, as
# listed by 'ip netns pids' — only processes inside our lab namespaces).
lab_kill_ns() {
    local ns=$1 pids
    lab_ns_exists "$ns" || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -z $pids ]] && return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    sleep 0.5
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
}

# lab_teardown [all]: stop our background processes, delete the namespaces this
# shell created (with "all": every lab namespace, whoever created it).
lab_teardown() {
    local pid ns todo=()
    for pid in "${LAB_PIDS[@]:-}"; do
        [[ -n $pid ]] && lab_stop "$pid" TERM 30
    done
    LAB_PIDS=()
    if [[ ${1:-} == all ]]; then
        todo=("$LAB_SUB_NS" "$LAB_BOX_NS" "$LAB_UP_NS")
    else
        todo=("${LAB_OWNED_NS[@]}")
    fi
    LAB_OWNED_NS=()
    for ns in "${todo[@]}"; do
        if lab_ns_exists "$ns"; then
            lab_kill_ns "$ns"
            ip netns del "$ns" 2>/dev/null || lab_log "warning: could not delete $ns"
        fi
    done
}
