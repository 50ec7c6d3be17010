#!/usr/bin/env bash
# Prints where the demo gateway listens and how to register a softphone to it, read from the
# running container itself and from the demo's generated secrets.
set -euo pipefail
name=$1
secrets=${WAGW_SECRETS_DIR:-.secrets/example}
domain=sip.beispiel-sanitaer.example
addr=$(podman exec "$name" hostname -I | awk '{print $1}')
echo
echo "wa-voip-gateway demo is up in container '$name' ($addr):"
podman exec "$name" ss -Hlntup 2>/dev/null \
  | awk '{split($5,a,":"); port=a[length(a)]; print $1, $5, $7}' \
  | grep -E 'kamailio|asterisk' | sed -E 's/users:\(\("([a-z]+)".*/\1/' | sort -u \
  | while read -r proto local prog; do printf '  %-9s %-4s %s\n' "$prog" "$proto" "$local"; done
echo "  SIP TLS for Meta: sips:${addr}:5061 (certificate from the client's private CA in .secrets/)"
echo
echo "A WhatsApp call to +4930555000100 rings the phones 'empfang' and 'werkstatt' (VoIP only)."
echo "Register a softphone (e.g. baresip, Linphone, MicroSIP) as one of them:"
echo "  user / auth user  empfang        password  the file $secrets/phone_empfang (generated, not printed)"
echo "  domain            $domain"
echo "  proxy / server    $addr:5063, transport TLS (trust $secrets/ca/ca.pem or skip verification)"
echo "  media             SRTP (SDES) mandatory; codecs Opus, G.722, G.711"
echo "  (the domain must resolve to $addr for TLS name checks: e.g. an /etc/hosts line)"
echo "  shell: podman exec -it $name bash; remove: make demo-destroy"
