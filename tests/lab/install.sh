#!/usr/bin/env bash
# Install what the peercache test lab needs (Debian 12, run as root).
set -euo pipefail
[[ $(id -u) == 0 ]] || { echo "install.sh: must run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
PKGS=(
    iproute2 iputils-ping ethtool   # netns, veth, ping, ss; offload control
    tcpdump tshark                  # capture + independent dissection
    python3 python3-libtorrent      # peer.py (libtorrent-rasterbar 2.0)
    aria2                           # second leecher implementation
    qbittorrent-nox                 # third leecher (inline.sh profile stock; tests/lab/qbt.py)
    opentracker                     # HTTP tracker (whitelist mode)
    curl                            # inline.sh: plain HTTP through the box
    iperf3                          # benches/inline_bench.sh: forwarding rate
    nginx-light                     # tests/content.rs: a caching proxy; benches/content_bench.sh: static files
    wrk                             # benches/content_bench.sh: HTTP load
)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
/usr/bin/python3 -c 'import libtorrent as lt; print("libtorrent", lt.__version__)'
echo "lab dependencies OK" >&2
