#!/usr/bin/env bash
# Prepares a fresh Debian controller (run as root): the podman stack for the systemd test
# containers and the Python venv with the pinned tools. Safe to run again: each step is
# skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# postgresql: the bridge's tests start a real server of their own (initdb, pg_ctl); nftables:
# the audit module's firewall test loads a rule set in a network namespace of its own;
# graphviz: the audit report's data-flow diagram (dot); age: the bridge's backup tests encrypt
# and open real backups.
packages=(podman runc debootstrap uidmap slirp4netns fuse-overlayfs containernetworking-plugins make python3-venv postgresql nftables graphviz age)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# podman on a cgroup v1 "hybrid" host (the CI machines): crun refuses hybrid mode and
# systemd inside forky needs cgroup v2, so use runc with cgroupfs and explicit ulimits
# (the host lacks CAP_SYS_RESOURCE). A pure cgroup v2 host needs none of this.
conf=/etc/containers/containers.conf.d/50-wagw.conf
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] && [ ! -f "$conf" ]; then
  mkdir -p "$(dirname "$conf")"
  cat > "$conf" <<'CONF'
# written by wa-voip-gateway scripts/setup-host.sh (cgroup v1 hybrid host)
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi

# The checkout is the collection wagw.gateway (galaxy.yml): ansible.cfg finds it under
# .collections/ (ignored by git and the linters), so that the roles call its modules, filters and
# tests by their full names, as they do from an installed tarball.
mkdir -p .collections/ansible_collections/wagw
ln -sfn ../../.. .collections/ansible_collections/wagw/gateway

# The venv is rebuilt only when requirements.txt changes.
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

# The webhook bridge has its own venv (its own pins, e.g. pytest for schemathesis), rebuilt
# only when bridge/pyproject.toml changes.
stamp=bridge/.venv/.pyproject.sha256
want=$(sha256sum bridge/pyproject.toml | cut -d' ' -f1)
if [ ! -x bridge/.venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv bridge/.venv
  bridge/.venv/bin/pip install -q --upgrade pip
  bridge/.venv/bin/pip install -q -e 'bridge[test]'
  echo "$want" > "$stamp"
fi
