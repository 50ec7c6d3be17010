#!/usr/bin/env bash
# Converge benchmark of the all-in-one gateway (issue: re-run < 30 s with 0 changed,
# converge within 1.5x of a plain install). Prints, from one run on this machine:
#   baseline  plain `apt-get update && apt-get install` of the same packages in a fresh container
#   converge  first playbook run on another fresh container
#   rerun     second playbook run (must report changed=0)
# and the ratio converge/baseline. Both containers start from the same cached image.
#
#   benchmarks/converge.sh [--compare REV]
# With --compare, the same converge and re-runs also run for the toolkit as of the git
# revision REV (a worktree, on a fresh container of its own), alternately with this tree
# (REV, this tree, REV, this tree), and the script prints both and the ratios this/REV.
set -euo pipefail
cd "$(dirname "$0")/.."
compare=""
if [[ ${1:-} == --compare ]]; then compare=${2:?--compare needs a git revision}; fi
export PATH="$PWD/.venv/bin:$PATH"
base=wagw-bench-baseline gw=wagw-bench-converge
work=$(mktemp -d)
rm_containers() {
  scripts/container.sh rm "$base"; scripts/container.sh rm "$gw"
  [[ -z $compare ]] || git worktree remove --force "$work/rev" 2>/dev/null || true
}
# WAGW_BENCH_LOGS=DIR keeps the playbook logs (full profile_tasks recaps) for analysis.
keep_logs() { [[ -z ${WAGW_BENCH_LOGS:-} ]] || { mkdir -p "$WAGW_BENCH_LOGS" && cp "$work"/*.log "$WAGW_BENCH_LOGS"/; }; }
trap 'keep_logs; rm_containers; rm -rf "$work"' EXIT
rm_containers 2>/dev/null || true

# The packages the roles install, read from the roles' own defaults.
packages=$(python3 - <<'PY'
import yaml
pk = []
for role, key in [("common", "common_packages"), ("kamailio", "kamailio_packages"),
                  ("asterisk", "asterisk_packages"), ("webhook_bridge", "webhook_bridge_packages")]:
    pk += yaml.safe_load(open(f"roles/{role}/defaults/main.yml"))[key]
pk.append("python3-cryptography")  # tls role
print(" ".join(dict.fromkeys(pk)))
PY
)

now() { date +%s.%N; }
# Where the machine reaches PyPI through a TLS-intercepting proxy, containers must trust its CA
# (the bridge is pip-installed); done before any clock starts.
scripts/container.sh start "$base" >/dev/null
scripts/trust-local-cas.sh "$base"
tar -C bridge -cf - pyproject.toml README.md src | podman exec -i "$base" bash -c "mkdir -p /tmp/bridge && tar -C /tmp/bridge -xf -"
# The floor: the same Debian packages in one apt transaction, and the bridge with its pinned
# dependencies in a venv. Services are not started by the packages (policy-rc.d exit 101), as
# in the playbook's transaction: Kamailio's packaged unit would otherwise hang until its 90 s
# start timeout in the container (systemd refuses its PID file) and inflate the floor.
podman exec "$base" sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'

t0=$(now)
podman exec -e DEBIAN_FRONTEND=noninteractive "$base" bash -c \
  "apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages \
   && python3 -m venv /opt/floor && /opt/floor/bin/pip install -q /tmp/bridge" >"$work/baseline.log" 2>&1
t1=$(now)
scripts/container.sh rm "$base"

# The playbook reaches the host over SSH with pipelining, as it reaches real hosts: podman
# exec costs several processes per task and would measure the harness, not the playbook.
# sshd is installed before the clock starts; the apt lists are dropped again so that the
# converge pays for its own `apt-get update` like the baseline did (an old mtime on the
# empty lists directory, or apt's cache_valid_time would call them fresh).
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
# converge_tree TREE LABEL: a fresh container, then the first converge and two re-runs of
# TREE's site.yml with TREE's ansible.cfg and example inventory; "<converge> <rerun> <rerun2>
# <changed> <changed2>" into $work/LABEL.times.
converge_tree() {
  local tree=$1 label=$2 t2 t3 t4 t5
  scripts/container.sh rm "$gw"
  scripts/container.sh start "$gw" >/dev/null
  scripts/trust-local-cas.sh "$gw"
  podman exec -e DEBIAN_FRONTEND=noninteractive "$gw" bash -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server >/dev/null \
     && rm -rf /var/lib/apt/lists/* && touch -d @0 /var/lib/apt/lists && install -d -m 700 /root/.ssh" >"$work/sshd.log" 2>&1
  podman cp "$work/id.pub" "$gw:/root/.ssh/authorized_keys"
  podman exec "$gw" chown root:root /root/.ssh/authorized_keys
  local ip inv=$work/inv-$label
  ip=$(podman inspect -f '{{.NetworkSettings.IPAddress}}' "$gw")
  mkdir -p "$inv"
  cat >"$inv/hosts.yml" <<INV
all:
  children:
    gateway:
      children:
        sip_edge: {hosts: {$gw: }}
        media: {hosts: {$gw: }}
    bridge: {hosts: {$gw: }}
  hosts:
    $gw:
      ansible_host: $ip
      ansible_user: root
      ansible_ssh_private_key_file: $work/id
      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
      ansible_python_interpreter: /usr/bin/python3
      # as the example inventory: the primary address (docs/inventory.md: not loopback)
      wagw_internal_address: "{{ ansible_facts['default_ipv4']['address'] }}"
INV
  ln -sfn "$tree/inventories/example/group_vars" "$inv/group_vars"
  run() {
    ANSIBLE_CONFIG="$tree/ansible.cfg" WAGW_SECRETS_DIR="$work/secrets-$label" \
      ansible-playbook -i "$inv/hosts.yml" "$tree/playbooks/site.yml" >"$work/$label-$1.log" 2>&1 \
      || { tail -40 "$work/$label-$1.log"; exit 1; }
  }
  t2=$(now); run converge; t3=$(now); run rerun; t4=$(now); run rerun2; t5=$(now)
  echo "$t2 $t3 $t4 $t5 $(grep -Eo 'changed=[0-9]+' "$work/$label-rerun.log" | tail -1 | cut -d= -f2)" \
    "$(grep -Eo 'changed=[0-9]+' "$work/$label-rerun2.log" | tail -1 | cut -d= -f2)" >>"$work/$label.times"
}

if [[ -n $compare ]]; then
  git worktree add --force --detach "$work/rev" "$compare" >/dev/null 2>&1
  # the same Python environments (the bridge's sources are the revision's own)
  ln -s "$PWD/.venv" "$work/rev/.venv"
  converge_tree "$work/rev" before
fi
converge_tree "$PWD" this
if [[ -n $compare ]]; then converge_tree "$work/rev" before; converge_tree "$PWD" this; fi

for log in this-converge this-rerun; do
  echo "slowest tasks of the ${log#this-} (profile_tasks):"
  sed -n '/^TASKS RECAP/,$p' "$work/$log.log" | grep -E ' -{3,} +[0-9.]+s$' | head -8
done

python3 - "$t0" "$t1" "$work" "$compare" <<'PY'
import sys
from pathlib import Path
t0, t1 = map(float, sys.argv[1:3]); work = Path(sys.argv[3]); compare = sys.argv[4]
baseline = t1 - t0

def runs(label):
    out = []
    for line in (work / f"{label}.times").read_text().splitlines():
        t2, t3, t4, t5, c1, c2 = line.split()
        out.append((float(t3) - float(t2), float(t4) - float(t3), float(t5) - float(t4), int(c1), int(c2)))
    return out

def mean(values):
    return sum(values) / len(values)

this = runs("this")
converge, rerun, rerun2 = (mean([r[i] for r in this]) for i in range(3))
print(f"baseline plain apt-get install : {baseline:7.1f} s")
print(f"converge (first run)           : {converge:7.1f} s   ratio to baseline {converge / baseline:.2f}x (target <= 1.5x)")
print(f"idempotent re-run              : {rerun:7.1f} s   changed={[r[3] for r in this]} (target < 30 s, 0 changed)")
print(f"second re-run (for comparison) : {rerun2:7.1f} s   changed={[r[4] for r in this]}")
if compare:
    before = runs("before")
    b_converge, b_rerun = mean([r[0] for r in before]), mean([r[1] for r in before])
    print(f"as of {compare}: converge {b_converge:.1f} s, re-run {b_rerun:.1f} s (changed={[r[3] for r in before]})")
    print(f"this tree / {compare}: converge {converge / b_converge:.2f}, re-run {rerun / b_rerun:.2f}"
          " (means of 2 runs each, alternated; target <= 1.10)")
    for name, rs in (("before", before), ("this", this)):
        print(f"  {name:6}: " + ", ".join(f"converge {r[0]:.1f} s re-run {r[1]:.1f} s" for r in rs))
print("(playbook over SSH with pipelining; baseline and converges start from the same image)")
PY
