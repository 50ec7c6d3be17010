#!/usr/bin/env bash
# Starts or removes a systemd container of the test image, in the way that works on these
# machines: on a cgroup v1 hybrid host systemd gets a private cgroup2 subtree of
# /sys/fs/cgroup/unified; on a cgroup v2 host podman's --systemd=always is enough.
#   scripts/container.sh start NAME [extra podman args...]
#   scripts/container.sh rm NAME
#   scripts/container.sh cgroup-volume NAME   (prints the -v argument; used by Molecule)
set -euo pipefail
action=$1 name=$2; shift 2
image="${WAGW_IMAGE:-localhost/wagw-debian:forky}"
hybrid() { [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] && [ -d /sys/fs/cgroup/unified ]; }

case "$action" in
  cgroup-volume)
    if hybrid; then
      mkdir -p "/sys/fs/cgroup/unified/$name"
      echo "/sys/fs/cgroup/unified/$name:/sys/fs/cgroup:rw"
    else
      echo "/sys/fs/cgroup:/sys/fs/cgroup:rw"
    fi ;;
  start)
    if podman container exists "$name"; then
      podman start "$name" >/dev/null
    else
      args=(--detach --name "$name" --hostname "$name" --privileged)
      if hybrid; then
        args+=(-v "$("$0" cgroup-volume "$name")")
      else
        args+=(--systemd=always)
      fi
      podman run "${args[@]}" "$@" "$image" /lib/systemd/systemd >/dev/null
    fi
    for _ in $(seq 60); do
      state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
      case "$state" in running|degraded) echo "$name: systemd $state"; exit 0 ;; esac
      sleep 1
    done
    echo "$name: systemd did not come up" >&2; exit 1 ;;
  rm)
    podman rm -f "$name" >/dev/null 2>&1 || true
    if [ -d "/sys/fs/cgroup/unified/$name" ]; then
      find "/sys/fs/cgroup/unified/$name" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    fi ;;
  *) echo "usage: $0 start|rm|cgroup-volume NAME" >&2; exit 2 ;;
esac
