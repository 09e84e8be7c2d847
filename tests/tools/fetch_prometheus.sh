#!/usr/bin/env bash
# Prometheus, promtool and the Pushgateway for the monitoring tests: Debian's packages,
# unpacked into .tools/prometheus (nothing installed system-wide, no service started).
# If this cannot get them, the tests that need them skip and say why.
set -u
dest=$(realpath -m "${1:-.tools/prometheus}")
bins="$dest/usr/bin"
[ -x "$bins/prometheus" ] && [ -x "$bins/promtool" ] && [ -x "$bins/prometheus-pushgateway" ] && exit 0
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "monitoring tools: no apt-get/dpkg-deb on this machine; the Prometheus tests will skip"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 0
download() { apt-get download prometheus prometheus-pushgateway >/dev/null 2>&1; }
refresh() {  # a fresh machine may have no package lists yet
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1; else sudo -n apt-get update -qq >/dev/null 2>&1; fi
}
if ! download && ! { refresh && download; }; then
  echo "monitoring tools: could not download Debian's prometheus packages; the Prometheus tests will skip"
  exit 0
fi
mkdir -p "$dest"
for deb in ./*.deb; do dpkg-deb -x "$deb" "$dest"; done
echo "monitoring tools: $(ls "$bins" | tr '\n' ' ')in $bins"
