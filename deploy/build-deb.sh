#!/usr/bin/env bash
# Build the Debian package with cargo-deb: target/debian/peercache_<version>-1_<arch>.deb,
# holding the binary (--version names the git revision it was built from), the tap and
# inline services, /etc/peercache/{peercache,rules}.yaml, manual pages, bash/zsh/fish
# completions, the Prometheus/Grafana files and the docs. Install: dpkg -i target/debian/*.deb
# Needs cargo-deb (deploy/install-deps.sh installs it: cargo install cargo-deb --locked).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || {
    echo "build-deb.sh: cargo-deb is missing (cargo install cargo-deb --locked)" >&2
    exit 1
}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
export PEERCACHE_BUILD_VERSION="$version (git $rev)"
cargo build --release --locked --bin peercache
bin=target/release/peercache
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man"
"$bin" -q man "$assets/man"
gzip -9n "$assets"/man/*.1
"$bin" completions bash > "$assets/peercache.bash"
"$bin" completions zsh > "$assets/_peercache"
"$bin" completions fish > "$assets/peercache.fish"
cargo deb --no-build --locked --strip
ls -1 target/debian/*.deb
