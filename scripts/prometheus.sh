#!/usr/bin/env bash
# Makes sure .tools/bin/promtool and .tools/bin/node_exporter exist under the project root, for
# the tests that hand the metrics file to its real consumers (tests/support/prom.rs). Does
# nothing when both are there; otherwise takes the two binaries out of Debian's packages
# (prometheus, prometheus-node-exporter) without installing them: their postinst scripts would
# start daemons on ports 9090 and 9100. Needs no root, except to refresh stale apt lists.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"
if [ -x "$bin/promtool" ] && [ -x "$bin/node_exporter" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    echo "error: no apt-get and dpkg-deb to fetch promtool and node_exporter; put them in $bin by hand" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# As root, apt downloads as the _apt user, which cannot write into mktemp's private directory:
# it falls back to root with a warning. Asking for root up front does the same, quietly.
apt_opts=()
if [ "$(id -u)" -eq 0 ]; then
    apt_opts=(-o APT::Sandbox::User=root)
fi
download() {
    (cd "$work" && apt-get "${apt_opts[@]}" download -qq prometheus prometheus-node-exporter)
}
echo "fetching promtool and node_exporter (Debian's packages) for the metrics file's tests" >&2
if ! download; then
    # Stale lists name .deb files the mirror no longer has: refresh them and try once more.
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "error: apt-get download failed and refreshing the lists needs root or sudo" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    download
fi
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done
mkdir -p "$bin"
# Copied under a temporary name and renamed, so that an interrupted run leaves no half binary
# for the check at the top to accept.
install -m 0755 "$work/root/usr/bin/promtool" "$bin/.promtool.tmp"
install -m 0755 "$work/root/usr/bin/prometheus-node-exporter" "$bin/.node_exporter.tmp"
mv "$bin/.promtool.tmp" "$bin/promtool"
mv "$bin/.node_exporter.tmp" "$bin/node_exporter"
"$bin/promtool" --version >/dev/null
"$bin/node_exporter" --version >/dev/null
