#!/usr/bin/env bash
# Makes a container trust the CAs this machine trusts locally (/usr/local/share/ca-certificates):
# where PyPI is reached through a TLS-intercepting proxy, the bridge's pip install on the
# demo or benchmark host needs its CA. Does nothing when there are none.
#   scripts/trust-local-cas.sh CONTAINER
set -euo pipefail
name=$1
found=0
for ca in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$ca" ] || continue
  podman cp "$ca" "$name:/usr/local/share/ca-certificates/"
  found=1
done
if [ "$found" = 1 ]; then
  podman exec "$name" update-ca-certificates >/dev/null 2>&1 || true
fi
