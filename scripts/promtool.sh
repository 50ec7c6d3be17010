#!/usr/bin/env bash
# promtool from Debian's prometheus package, unpacked into .cache/promtool on first use: the
# package itself would install and start a Prometheus server on this machine. Arguments go to
# promtool (tests/test_alert_rules.py: check rules, test rules).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cache/promtool"
if [ ! -x "$dir/promtool" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) || {
    echo "promtool: apt-get download prometheus failed (Debian mirror, apt lists: make setup)" >&2
    exit 1
  }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  install -D -m 0755 "$tmp/root/usr/bin/promtool" "$dir/promtool"
fi
exec "$dir/promtool" "$@"
