#!/usr/bin/env bash
# Prints where the demo gateway listens, read from the running container itself.
set -euo pipefail
name=$1
addr=$(podman exec "$name" hostname -I | awk '{print $1}')
echo
echo "wa-pstn-gateway demo is up in container '$name' ($addr):"
podman exec "$name" ss -Hlntup 2>/dev/null \
  | awk '{split($5,a,":"); port=a[length(a)]; print $1, $5, $7}' \
  | grep -E 'kamailio|asterisk' | sed -E 's/users:\(\("([a-z]+)".*/\1/' | sort -u \
  | while read -r proto local prog; do printf '  %-9s %-4s %s\n' "$prog" "$proto" "$local"; done
echo "  SIP TLS for Meta: sips:${addr}:5061 (certificate from the client's private CA in .secrets/)"
echo "  shell: podman exec -it $name bash; remove: make demo-destroy"
