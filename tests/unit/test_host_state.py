"""tests/host_state: the audit's host-state tests (pytest-testinfra, Ansible backend) pass on a
host in its declared state and fail, naming the drift, on one that is not. The "host" is this
machine in a network namespace of its own (a loaded nftables rule set, a listener), reached
through an inventory with the local connection, as playbooks/audit.yml writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from host_state import wagw_firewall, wagw_sockets

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "host_state"

# The rules as roles/common renders them (nftables.conf.j2), for a host with Meta's three
# addresses on 5061, the phones from anywhere on 5063 and an RTP range from two networks.
RULES = """table inet wagw_filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        tcp dport 22 accept comment "ssh"
        ip saddr { 127.0.0.10, 127.0.0.11, 127.0.0.12 } tcp dport 5061 accept comment "meta"
        tcp dport 5063 accept comment "phones"
        ip saddr { 198.51.100.0/24, 203.0.113.7 } udp dport 10000-10999 accept comment "rtp"
        ip6 saddr { 2001:db8::/48 } udp dport 10000-10999 accept comment "rtp"
%s
    }
}
"""
DECLARED_FIREWALL = {"ssh_port": 22, "ssh_sources": [], "ports": [
    {"port": 5061, "proto": "tcp", "sources": ["127.0.0.10/32", "127.0.0.11", "127.0.0.12/32"]},
    {"port": 5063, "proto": "tcp", "sources": []},
    {"port": "10000-10999", "proto": "udp", "sources": ["203.0.113.7/32", "198.51.100.0/24", "2001:db8::/48"]}]}
ANY = "0.0.0.0"  # noqa: S104 (the address a wildcard listener shows, not a bind)
LISTENER = "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(60)"


def audit_host_state(tmp_path: Path, *, extra_rule: str = "", extra_port: int | None = None,
                     secret_mode: int = 0o600) -> tuple[int, dict[str, dict], str]:
    """The suite as playbooks/audit.yml runs it, on a host "lab" that is this machine in a new
    network namespace; returns pytest's exit code, the controls by id and the JUnit XML."""
    run = tmp_path / "run"
    (run / "declared").mkdir(parents=True)
    secret = tmp_path / "bridge.env"
    secret.write_text("TOKEN=x\n")
    secret.chmod(secret_mode)
    (run / "declared" / "lab.json").write_text(json.dumps({
        "files": [{"path": str(secret), "mode": "0600", "owner": secret.owner(), "group": secret.group()}],
        "listeners": [{"proto": "tcp", "address": ANY, "port": 5061, "process": "python3"}],
        "firewall": DECLARED_FIREWALL}))
    (run / "hosts.yml").write_text(f"all:\n  hosts:\n    lab: {{ansible_connection: local, "
                                   f"ansible_python_interpreter: {sys.executable}}}\n")
    rules = tmp_path / "rules.nft"
    rules.write_text(RULES % extra_rule)
    listeners = " ".join(f"python3 -c \"{LISTENER.format(port=port)}\" & "
                         for port in [5061] + ([extra_port] if extra_port else []))
    script = tmp_path / "in-netns.sh"
    script.write_text(textwrap.dedent(f"""\
        set -e
        trap 'kill $(jobs -p) 2>/dev/null' EXIT
        nft -f {rules}
        ip link set lo up
        {listeners}
        sleep 1
        {sys.executable} -m pytest -c {SUITE}/pytest.ini -k 'file_mode or listeners or firewall' \\
            --junitxml={run}/host-state.xml {SUITE}
        """))
    env = dict(os.environ, WAGW_AUDIT_RUN=str(run), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    # unshare (util-linux) from PATH, as the other namespace tests run it
    proc = subprocess.run(["unshare", "--net", "--fork", "--kill-child", "bash", str(script)],  # noqa: S607
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    found = {c["id"]: c for c in json.loads((run / "host-state" / "lab.json").read_text())}
    return proc.returncode, found, (run / "host-state.xml").read_text() + proc.stdout[-2000:]


def test_a_host_in_its_declared_state_passes(tmp_path: Path) -> None:
    rc, found, junit = audit_host_state(tmp_path)
    assert rc == 0, junit
    assert sorted(found) == ["HOST-FILE", "NET-FIREWALL", "NET-SOCKETS"]
    assert all(c["passed"] for c in found.values()), found
    assert found["NET-FIREWALL"]["detail"] == "policy drop; 0 unexpected, 0 missing"
    assert 'failures="0"' in junit
    assert '<property name="control" value="NET-SOCKETS"' in junit


def test_drift_fails_each_control_and_names_it(tmp_path: Path) -> None:
    rc, found, junit = audit_host_state(tmp_path, extra_rule='        tcp dport 8080 accept comment "debugging"',
                                        extra_port=8080, secret_mode=0o644)
    assert rc == 1, junit
    assert not any(c["passed"] for c in found.values()), found
    assert found["NET-FIREWALL"]["detail"] == "accepted but not declared: tcp 8080 from any"
    assert found["NET-FIREWALL"]["unexpected"] == ["tcp 8080 from any"]
    assert found["NET-SOCKETS"]["detail"] == "unexpected listeners: tcp 0.0.0.0:8080 (python3)"
    assert found["HOST-FILE"]["detail"].endswith(" is 0644 root:root, declared 0600 root:root")
    assert 'failures="3"' in junit


def test_sockets_are_compared_by_protocol_address_port_and_process() -> None:
    live = wagw_sockets.parse(textwrap.dedent("""\
        udp UNCONN 0 0 0.0.0.0:5060 0.0.0.0:* users:(("kamailio",pid=2,fd=6),("kamailio",pid=3,fd=6))
        udp UNCONN 0 0 0.0.0.0:43239 0.0.0.0:* users:(("asterisk",pid=7,fd=8))
        udp UNCONN 0 0 [::]:36948 [::]:* users:(("asterisk",pid=7,fd=9))
        tcp LISTEN 0 511 *:443 *:* users:(("nginx",pid=5,fd=7))
        tcp LISTEN 0 2048 127.0.0.1:8080 0.0.0.0:* users:(("wagw-bridge",pid=9,fd=4))
        tcp LISTEN 0 128 [::1]:25 [::]:*
        """))
    # loopback is out of scope; "*" is the dual-stack wildcard
    assert [wagw_sockets.name(s) for s in live] == [
        "udp 0.0.0.0:5060 (kamailio)", "udp 0.0.0.0:43239 (asterisk)", "udp [::]:36948 (asterisk)",
        "tcp [::]:443 (nginx)"]
    declared = [{"proto": "udp", "address": ANY, "port": 5060, "process": "kamailio"},
                {"proto": "udp", "address": ANY, "port": "32768-60999", "process": "asterisk", "optional": True},
                {"proto": "udp", "address": "::", "port": "32768-60999", "process": "asterisk", "optional": True},
                {"proto": "tcp", "address": "::", "port": "443", "process": "nginx"},
                {"proto": "tcp", "address": "127.0.0.1", "port": 8080, "process": "wagw-bridge"},
                {"proto": "udp", "address": ANY, "port": "10000-10999", "process": "asterisk", "optional": True}]
    assert wagw_sockets.compare(declared, live) == ([], [])
    # another process on a declared port, a port outside the range, a listener gone
    other = [dict(live[0], process="python3"), dict(live[1], port=4569), *live[2:3]]
    assert wagw_sockets.compare(declared, other) == (
        ["udp 0.0.0.0:4569 (asterisk)", "udp 0.0.0.0:5060 (python3)"],
        ["tcp [::]:443 (nginx)", "udp 0.0.0.0:5060 (kamailio)"])


def test_firewall_sources_are_compared_as_networks() -> None:
    assert wagw_firewall.networks(["127.0.0.10/32", "127.0.0.11"]) == ["127.0.0.10/31"]
    assert wagw_firewall.networks([{"range": ["127.0.0.10", "127.0.0.12"]}]) == ["127.0.0.10/31", "127.0.0.12/32"]
    assert wagw_firewall.networks([]) == ["any"]
