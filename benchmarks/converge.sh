#!/usr/bin/env bash
# Converge benchmark of the all-in-one gateway (issue: re-run < 30 s with 0 changed,
# converge within 1.5x of a plain install). Prints, from one run on this machine:
#   baseline  plain `apt-get update && apt-get install` of the same packages in a fresh container
#   converge  first playbook run on another fresh container
#   rerun     second playbook run (must report changed=0)
# and the ratio converge/baseline. Both containers start from the same cached image.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
base=wagw-bench-baseline gw=wagw-bench-converge
work=$(mktemp -d)
rm_containers() { scripts/container.sh rm "$base"; scripts/container.sh rm "$gw"; }
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
scripts/container.sh start "$gw" >/dev/null
scripts/trust-local-cas.sh "$gw"
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
podman exec -e DEBIAN_FRONTEND=noninteractive "$gw" bash -c \
  "apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server >/dev/null \
   && rm -rf /var/lib/apt/lists/* && touch -d @0 /var/lib/apt/lists && install -d -m 700 /root/.ssh" >"$work/sshd.log" 2>&1
podman cp "$work/id.pub" "$gw:/root/.ssh/authorized_keys"
podman exec "$gw" chown root:root /root/.ssh/authorized_keys
ip=$(podman inspect -f '{{.NetworkSettings.IPAddress}}' "$gw")
cat >"$work/hosts.yml" <<INV
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
      wagw_internal_address: 127.0.0.1
INV
ln -s "$PWD/inventories/example/group_vars" "$work/group_vars"
export WAGW_SECRETS_DIR="$work/secrets"
t2=$(now)
run() { ansible-playbook -i "$work/hosts.yml" playbooks/site.yml >"$work/$1.log" 2>&1 || { tail -40 "$work/$1.log"; exit 1; }; }
run converge
t3=$(now)
run rerun
t4=$(now)
run rerun2
t5=$(now)
changed=$(grep -Eo 'changed=[0-9]+' "$work/rerun.log" | tail -1 | cut -d= -f2)
for log in converge rerun; do
  echo "slowest tasks of the $log (profile_tasks):"
  sed -n '/^TASKS RECAP/,$p' "$work/$log.log" | grep -E ' -{3,} +[0-9.]+s$' | head -8
done

changed2=$(grep -Eo 'changed=[0-9]+' "$work/rerun2.log" | tail -1 | cut -d= -f2)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$changed" "$changed2" <<'PY'
import sys
t0, t1, t2, t3, t4, t5 = map(float, sys.argv[1:7]); changed, changed2 = int(sys.argv[7]), int(sys.argv[8])
baseline, converge, rerun, rerun2 = t1 - t0, t3 - t2, t4 - t3, t5 - t4
print(f"baseline plain apt-get install : {baseline:7.1f} s")
print(f"converge (first run)           : {converge:7.1f} s   ratio to baseline {converge / baseline:.2f}x (target <= 1.5x)")
print(f"idempotent re-run              : {rerun:7.1f} s   changed={changed} (target < 30 s, 0 changed)")
print(f"second re-run (for comparison) : {rerun2:7.1f} s   changed={changed2}")
print("(playbook over SSH with pipelining; baseline and converge start from the same image)")
PY
