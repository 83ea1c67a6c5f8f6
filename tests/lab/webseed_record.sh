#!/usr/bin/env bash
# Record pcaps/webseed-clients.pcap: libtorrent and aria2, as installed, downloading the
# lab's multi-file torrent (pad files, a name that needs percent-encoding) from a
# peercache content listener's web seed alone, on loopback. The capture seeds the
# http_range and web_seed_path fuzz targets with the requests real clients send
# (fuzz/seed_corpus.sh), and documents them (docs/content.md).
#
#   tests/lab/webseed_record.sh [OUT.pcap]      (root: tcpdump; builds nothing)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$(dirname "$here")")
out=${1:-$root/pcaps/webseed-clients.pcap}
bin=${PEERCACHE:-$root/target/release/peercache}
py=/usr/bin/python3
ws="$here/webseed.py"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$py "$ws" make --out "$tmp/src" --kind multi --url-list "http://127.0.0.1:$port/" >"$tmp/make.json"
torrent=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["torrent"])' "$tmp/make.json")
ih=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["info_hash"])' "$tmp/make.json")
"$bin" cache --cache-dir "$tmp/cache" import "$torrent" "$tmp/src/data"
cat >"$tmp/cfg.yaml" <<YAML
cache:
  dir: $tmp/cache
content:
  listen: 127.0.0.1:$port
  allow: [127.0.0.0/8]
capture:
  filter: udp port 9
YAML
"$bin" tap --iface lo --http 127.0.0.1:0 --config "$tmp/cfg.yaml" 2>"$tmp/box.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS -o "$tmp/box.torrent" "http://127.0.0.1:$port/v1/$ih/torrent" 2>/dev/null && break; sleep 0.1; done
tcpdump -i lo -s 0 -U -w "$out" "tcp port $port" 2>/dev/null &
pids+=($!)
sleep 1
$py "$ws" lt-get --torrent "$tmp/box.torrent" --save "$tmp/lt" --timeout 60
$py "$ws" aria2-get --torrent "$tmp/box.torrent" --save "$tmp/a2" --timeout 60
sleep 1
echo "recorded $out: $(tcpdump -r "$out" 2>/dev/null | wc -l) packets" >&2
