#!/usr/bin/env bash
# Install everything peercache needs to build, test and benchmark on Debian 12 (as root):
# libpcap for capture, tshark/tcpflow for cross-checks and the side-by-side benchmark, and
# the lab's real BitTorrent clients and tracker (tests/lab/install.sh); prometheus (promtool
# and the server) and chromium (headless) for the HTTP service's tests (tests/http.rs);
# cargo-deb, systemd (systemd-analyze), tcpreplay and curl for the package and its
# services' test (deploy/build-deb.sh, tests/deploy.rs).
set -euo pipefail
[[ $(id -u) == 0 ]] || { echo "install-deps.sh: run as root (sudo)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PKGS=(build-essential pkg-config libpcap-dev tcpflow time prometheus chromium
      systemd tcpreplay curl)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
"$here/../tests/lab/install.sh"
# tests/api.rs checks the OpenAPI document and the API's answers with these validators
# (not packaged in Debian 12: from PyPI, into whichever python3 runs the tests).
if ! python3 -c 'import openapi_spec_validator, openapi_schema_validator' 2>/dev/null; then
    python3 -m pip install -q openapi-spec-validator openapi-schema-validator 2>/dev/null ||
        python3 -m pip install -q --break-system-packages openapi-spec-validator openapi-schema-validator
fi
command -v cargo >/dev/null || { echo "install-deps.sh: cargo not found; install Rust (rustup.rs) first" >&2; exit 1; }
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
echo "peercache dependencies OK" >&2
