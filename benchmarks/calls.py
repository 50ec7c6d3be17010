#!/usr/bin/env python3
"""Calls under load through the all-in-one gateway (issue 17), in one run on this machine.

The gateway is the example client as `make demo` deploys it, with the inventory of
benchmarks/calls/inventory (a PBX trunk instead of phones, a stated peak of 400 calls and
150 calls per second), in the systemd container wagw-bench-calls. SIPp runs inside that
container: "Meta" on 127.0.0.10 (TLS to the edge, digest, Opus with SDES-SRTP) and the PBX on
127.0.0.30:5090 (UDP, digest, A-law), with the scenarios of benchmarks/calls/sipp. So every call
is transcoded Opus <-> A-law by Asterisk, and its signalling passes the edge twice (Meta's leg
and the PBX's), as in production.

Phases (each prints its table; the last lines are the summary with the ratios):
  ramp       concurrent calls with media both ways, in steps, until a call fails or the machine
             passes 80 % of both cores. Per step: calls ok/failed (both SIPp sides; each call
             fails unless more than 10 RTP packets came back), CPU of the machine and per
             process (% of one core) while all calls of the step are up, CPU per call.
  packet     SIPp sends the Opus leg as real 20 ms Opus packets, but one per 30 ms (its only
             fitting profile is iLBC's): 33.3 packets a second instead of 50. Everything
             Asterisk does with an inbound packet (SRTP, decode, A-law encode, send) is per
             packet, so that direction's cost scales with the packet rate. This phase measures
             it: the same step again with "Meta" silent (the PBX still sends); the difference
             is the Opus direction at 33.3/s, and the figure "at 20 ms" adds half of it again.
  g711       the ramp with A-law on the WhatsApp leg too (a number whose calling settings at
             Meta list PCMA; the inventory allows pcma): SRTP <-> RTP, no transcoding. Its
             Asterisk CPU per call is the baseline of the transcoded one, in the same run.
  cps        new calls per second without media (1 s calls), straight to Asterisk (UDP to its
             internal port, as the edge sends them) and through the edge (TLS, digest), in
             steps until a call fails; then both paths sustained at the direct path's best
             rate for --sustain seconds (default 300), with Kamailio's shared memory sampled:
             its growth per call attempt held (topology hiding keeps each for 180 s) is the
             measured side of the sizing formula in playbooks/role_parameters/kamailio.yml.
  soak       half of the ramp's best step, calls replaced as they end, for --soak seconds
             (default 600): Asterisk's and Kamailio's memory sampled every 30 s.

  benchmarks/calls.sh [--phases ramp,packet,g711,cps,soak] [--steps 25,50,...]
                      [--g711-steps 50,100,...] [--cps-steps 40,80,...] [--sustain S]
                      [--soak S] [--no-deploy] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTAINER = "wagw-bench-calls"
INVENTORY = ROOT / "benchmarks/calls/inventory/hosts.yml"
SECRETS = ROOT / ".secrets/bench-calls"
WORK = "/root/wagw-bench"
NUMBER = "+4930555000100"
CALLER = "+491701234567"
META_IP, PBX_IP = "127.0.0.10", "127.0.0.30"
EDGE = "127.0.0.1:5061"
ASTERISK_PORT = 5080
CDR_FILE = "/var/log/asterisk/cdr-custom/wagw.csv"  # the role's default asterisk_cdr_file
CPU_LIMIT = 80.0  # % of both cores: the ramp stops above it
TICK = os.sysconf("SC_CLK_TCK")
# programs whose CPU is shown (the bridge answers Asterisk's routing question of every call)
PROCESSES = ("asterisk", "kamailio", "wagw-bridge", "sipp")  # the order of the tables' columns
PODMAN = shutil.which("podman") or "/usr/bin/podman"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def cexec(script: str, stdin: str | None = None) -> str:
    """A bash script in the benchmark's container; its stdout."""
    return run([PODMAN, "exec", "-i", CONTAINER, "bash", "-c", script], input=stdin).stdout


# --- the gateway ------------------------------------------------------------------------------


def deploy() -> None:
    run([str(ROOT / "scripts/container.sh"), "start", CONTAINER])
    run([str(ROOT / "scripts/trust-local-cas.sh"), CONTAINER])
    env = dict(os.environ, WAGW_SECRETS_DIR=str(SECRETS), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(INVENTORY), str(ROOT / "playbooks/site.yml")],
        check=False,
        env=env,
        text=True,
        capture_output=True,
        cwd=ROOT,
    )
    if proc.returncode:
        sys.exit(f"deploy failed:\n{proc.stdout[-4000:]}")
    print(f"deploy: site.yml on {CONTAINER} in {time.monotonic() - started:.0f} s")


def secret(name: str) -> str:
    return (SECRETS / name).read_text().split()[0]


def prepare() -> str:
    """SIPp's files in the container; returns the host's address (Asterisk's media address and,
    on this all-in-one host, its internal one)."""
    # the test tool only, from Debian as in Molecule's prepare step
    cexec(
        "command -v sipp >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive"
        " apt-get install -y -qq --no-install-recommends sip-tester >/dev/null)"
    )
    cexec(f"mkdir -p {WORK}")
    media = ROOT / "molecule/default/files/sipp"
    for src in [
        media / "whatsapp_opus_1khz.raw",
        media / "tone_425hz.alaw",
        *sorted((ROOT / "benchmarks/calls/sipp").glob("*.xml")),
    ]:
        run([PODMAN, "cp", str(src), f"{CONTAINER}:{WORK}/{src.name}"])
    # credentials through stdin, never on a command line
    cexec(f"umask 077; cat > {WORK}/meta.csv", f"SEQUENTIAL\n{NUMBER};{secret('sip_password_' + NUMBER[1:])};\n")
    cexec(f"umask 077; cat > {WORK}/pbx.csv", f"SEQUENTIAL\nbench-trunk;{secret('pbx_password')};\n")
    cexec(
        f"cd {WORK} && [ -s client.pem ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
        " -nodes -days 1 -subj /CN=sipp-bench -keyout client.key -out client.pem 2>/dev/null"
    )
    return cexec("ip -4 -o route get 192.0.2.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'").strip()


# --- what is measured ---------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    busy: int  # jiffies of all CPUs, not idle
    total: int
    procs: dict[tuple[str, int], int] = field(default_factory=dict)  # (program, pid): jiffies


def container_pids() -> list[int]:
    init = int(run([PODMAN, "inspect", "-f", "{{.State.Pid}}", CONTAINER]).stdout)
    ns = os.readlink(f"/proc/{init}/ns/pid")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def sample(before: Sample | None = None) -> Sample:
    """The machine's and each program's CPU time so far; with before, the processes that
    ended since keep their last seen time."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    idle = fields[3] + fields[4]
    procs: dict[tuple[str, int], int] = {}
    for pid in container_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        name = next((p for p in PROCESSES if comm.startswith(p)), None)
        if name:
            procs[name, pid] = int(rest[11]) + int(rest[12])  # utime + stime
    if before:
        procs = {**before.procs, **procs}
    return Sample(time.monotonic(), sum(fields) - idle, sum(fields), procs)


def cpu(a: Sample, b: Sample) -> dict[str, float]:
    """Machine CPU in % of both cores; each program in % of one core."""
    seconds = b.at - a.at
    out = {"machine": 100.0 * (b.busy - a.busy) / max(1, b.total - a.total)}
    out.update(dict.fromkeys(PROCESSES, 0.0))
    # processes alive at the end; one started in between counts from 0
    for (name, pid), ticks in b.procs.items():
        out[name] += 100.0 * (ticks - a.procs.get((name, pid), 0)) / TICK / seconds
    return out


def memory() -> dict[str, float]:
    """Asterisk's resident memory, Kamailio's (all processes, proportional) and its shared
    memory in use, in MB."""
    script = r"""
    a=$(pidof asterisk | awk '{print $1}'); grep VmRSS /proc/$a/status | awk '{print "asterisk_rss", $2/1024}'
    for p in $(pidof kamailio); do awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup; done \
      | awk '{s+=$1} END {print "kamailio_pss", s/1024}'
    kamcmd core.shmmem | awk '/real_used|used:/ {gsub(":","",$1); print "shm_" $1, $2/1048576}'
    """
    values: dict[str, float] = {}
    for line in cexec(script).splitlines():
        key, value = line.split()
        values[key] = float(value)
    return values


# --- SIPp ---------------------------------------------------------------------------------------


@dataclass
class Sipp:
    name: str
    proc: subprocess.Popen[str]

    def wait(self, timeout: float) -> tuple[int, int]:
        """Waits for SIPp's end; (successful, failed) calls from its statistics file."""
        row = self.stats(timeout)
        return int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"])

    def stats(self, timeout: float) -> dict[str, str]:
        """Waits for SIPp's end; the last line of its statistics file."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.stop()
        return self.read()

    def read(self) -> dict[str, str]:
        lines = cexec(f"cat {WORK}/{self.name}.csv").splitlines()
        head, last = lines[0].split(";"), lines[-1].split(";")
        return dict(zip(head, last, strict=False))

    def stop(self) -> dict[str, str]:
        """Ends a SIPp that would wait on (a UAS whose caller's last calls failed before they
        reached it): its statistics (written every 5 s) first, then the process."""
        time.sleep(6)
        row = self.read()
        # anchored at "sipp": the shell running pkill has the pattern in its own command line
        cexec(f"pkill -KILL -f '^sipp .*-stf {WORK}/{self.name}.csv' || true")
        self.proc.wait(timeout=30)
        return row

    def finish(self) -> tuple[int, int]:
        """(successful, failed) of a UAS once its caller is done."""
        row = self.stop() if self.proc.poll() is None else self.read()
        return int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"])


def sipp(name: str, args: str) -> Sipp:
    cexec(f"rm -f {WORK}/{name}.csv {WORK}/{name}_errors.log")
    script = (
        f"cd {WORK} && exec sipp {args} -nostdin -trace_stat -stf {WORK}/{name}.csv"
        f" -fd 5 -trace_err -error_file {WORK}/{name}_errors.log >/dev/null 2>&1"
    )
    proc = subprocess.Popen([PODMAN, "exec", CONTAINER, "bash", "-c", script], text=True)
    return Sipp(name, proc)


def pbx(name: str, media_ip: str, calls: int, media: bool, check: bool) -> Sipp:
    uas = sipp(
        name,
        f"-sf pbx_uas.xml -i {PBX_IP} -p 5090 -mi {media_ip} -min_rtp_port 30000"
        f" -max_rtp_port 39999 -inf pbx.csv -set media {int(media)} -set check {int(check)}"
        f" -m {calls} -timeout 900s",
    )
    for _ in range(100):
        if ":13E2 " in cexec("cat /proc/net/udp"):  # 5090
            return uas
        time.sleep(0.2)
    sys.exit(f"{name}: the PBX's SIPp does not listen on {PBX_IP}:5090")


CODECS = {  # each codec's offer: payload type, a=rtpmap, a=fmtp (empty: SIPp leaves the line out)
    "opus": ("111", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1"),
    "pcma": ("8", "a=rtpmap:8 PCMA/8000", ""),
}


def meta(
    name: str,
    media_ip: str,
    target: str,
    *,
    calls: int,
    rate: float,
    limit: int,
    hold_ms: int,
    media: bool,
    codec: str = "opus",
) -> Sipp:
    if target == "edge":
        transport = f"{EDGE} -t l1 -tls_cert client.pem -tls_key client.key -i {META_IP}"
        header = "X-WAGW-Leg: phone"  # a spoofed header: the edge replaces it
    else:  # straight to Asterisk, from its edge's address, as the edge sends
        transport = f"{target}:{ASTERISK_PORT} -t u1 -i {target}"
        header = f"X-WAGW-Leg: whatsapp-{NUMBER[1:]}"  # the edge's header for this number
    pt, rtpmap, fmtp = CODECS[codec]
    return sipp(
        name,
        f"{transport} -sf meta_uac.xml -s {NUMBER} -inf meta.csv -mi {media_ip}"
        f" -min_rtp_port 20000 -max_rtp_port 29999 -set caller {CALLER}"
        f" -set leg_header {shlex.quote(header)} -set media {int(media)} -set codec {codec}"
        f" -set pt {pt} -set rtpmap {shlex.quote(rtpmap)} -set fmtp {shlex.quote(fmtp)}"
        f" -r {rate:g} -l {limit} -m {calls} -d {hold_ms} -timeout 900s",
    )


def wait_idle() -> None:
    """Until no SIPp runs and Asterisk holds no channel (the last step's calls are gone)."""
    cexec("pkill -KILL -x sipp || true")
    for _ in range(120):
        if re.search(r"^0 active channels", cexec("asterisk -rx 'core show channels count'"), re.M):
            return
        time.sleep(1)


# --- phases -------------------------------------------------------------------------------------

RAMP_RATE = 20  # new calls a second while a step fills up
WINDOW = 20  # seconds of measurement with every call of a step up


def concurrent(media_ip: str, calls: int, *, meta_media: bool = True, codec: str = "opus") -> dict[str, float]:
    wait_idle()
    fill = calls / RAMP_RATE
    hold_ms = int((fill + WINDOW + 10) * 1000)
    uas = pbx(f"pbx-{codec}-{calls}", media_ip, calls, media=True, check=meta_media)
    uac = meta(
        f"meta-{codec}-{calls}",
        media_ip,
        "edge",
        calls=calls,
        rate=RAMP_RATE,
        limit=calls,
        hold_ms=hold_ms,
        media=meta_media,
        codec=codec,
    )
    time.sleep(fill + 4)
    a = sample()
    time.sleep(WINDOW)
    b = sample()
    ok, failed = uac.wait(hold_ms / 1000 + 120)
    pbx_ok, pbx_failed = uas.finish()
    row = cpu(a, b)
    row.update(calls=calls, ok=ok, failed=failed, pbx_ok=pbx_ok, pbx_failed=pbx_failed)
    return row


def print_cpu_header() -> None:
    print(
        "| calls | Meta ok/failed | PBX ok/failed | machine (2 cores) | asterisk | kamailio | bridge | sipp "
        "| asterisk per call | machine per call |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")


def cpu_cells(row: dict[str, float]) -> str:
    """The CPU columns every table shares: the machine, then each program (% of one core)."""
    return " | ".join([f"{row['machine']:.1f} %", *(f"{row[name]:.1f}" for name in PROCESSES)])


def print_cpu_row(row: dict[str, float]) -> None:
    per_call = row["asterisk"] / row["calls"]
    print(
        f"| {row['calls']:.0f} | {row['ok']:.0f}/{row['failed']:.0f} | {row['pbx_ok']:.0f}/{row['pbx_failed']:.0f} "
        f"| {cpu_cells(row)} | {per_call:.2f} | {2 * row['machine'] / row['calls']:.2f} |",
        flush=True,
    )


def ramp(media_ip: str, steps: list[int], codec: str = "opus") -> list[dict[str, float]]:
    title = {
        "opus": "ramp: concurrent transcoded calls (Opus SRTP <-> A-law), media both ways",
        "pcma": "g711: concurrent calls with A-law on the WhatsApp leg too (SRTP <-> RTP, no transcoding)",
    }[codec]
    print(f"\n## {title}")
    print_cpu_header()
    rows = []
    for calls in steps:
        row = concurrent(media_ip, calls, codec=codec)
        print_cpu_row(row)
        rows.append(row)
        if row["failed"] or row["pbx_failed"] or row["machine"] > CPU_LIMIT:
            break
    return rows


def packetisation(media_ip: str, calls: int, both: dict[str, float]) -> float:
    """Asterisk's cost per call (% of a core) that real 20 ms packets add to SIPp's 30 ms pace."""
    print(f"\n## packet: the Opus direction's cost at SIPp's 33.3 packets/s, {calls} calls")
    silent = concurrent(media_ip, calls, meta_media=False)
    print_cpu_header()
    print_cpu_row(silent)
    opus_in = (both["asterisk"] - silent["asterisk"]) / calls
    at_20ms = both["asterisk"] / calls + 0.5 * opus_in
    print(
        f"Asterisk per call: {both['asterisk'] / calls:.2f} % of a core with both directions, "
        f"{silent['asterisk'] / calls:.2f} % with Meta silent; the Opus direction at 33.3/s: "
        f"{opus_in:.2f} %; at 20 ms (50/s): {at_20ms:.2f} % of a core per call"
    )
    return 0.5 * opus_in


def cps_run(
    media_ip: str, target: str, rate: float, *, seconds: int, tag: str, shm: list[float] | None = None
) -> dict[str, float]:
    wait_idle()
    rows_before = int(cexec(f"wc -l < {CDR_FILE}"))
    calls = int(rate * seconds)
    uas = pbx(f"pbx-{tag}", media_ip, calls, media=False, check=False)
    uac = meta(
        f"meta-{tag}",
        media_ip,
        media_ip if target == "direct" else "edge",
        calls=calls,
        rate=rate,
        limit=int(rate * 10),
        hold_ms=1000,
        media=False,
    )
    a = b = sample()
    started = time.monotonic()
    # a process that ends is gone from the next sample: its last seen time is kept
    while uac.proc.poll() is None and time.monotonic() - started < seconds * 3 + 60:
        time.sleep(1)
        b = sample(b)
        if shm is not None and int(b.at - a.at) % 10 == 0:
            shm.append(memory()["shm_real_used"])
    stats = uac.stats(60)
    uas.finish()
    ok, failed = int(stats["SuccessfulCall(C)"]), int(stats["FailedCall(C)"])
    # SIPp's own clock: its run less the last call's length (1 s) and set-up is the time in
    # which it placed the calls
    h, m, sec = stats["ElapsedTime(C)"].split(":")[:3]
    placing = max(1.0, int(h) * 3600 + int(m) * 60 + float(sec) - 1.0)
    row = cpu(a, b)
    # every call that reached Asterisk leaves one call record (failed ones may not reach it)
    wait_idle()
    rows = int(cexec(f"wc -l < {CDR_FILE}")) - rows_before
    row.update(rate=rate, ok=ok, failed=failed, achieved=ok / placing, cdr_rows=rows)
    # SIPp's reason per failed call (its Failed<Reason>(C) counters), for the table
    row["why"] = ", ".join(
        f"{key[6:-3]} {value}"
        for key, value in stats.items()
        if key.startswith("Failed") and key != "FailedCall(C)" and key.endswith("(C)") and value != "0"
    )
    return row


WARM_UP = (20, 10)  # cps, seconds: the uncounted calls on each path after a restart


def restart(media_ip: str) -> float:
    """Asterisk and Kamailio afresh (a failed sustained step leaves a backlog of channels
    behind), then WARM_UP calls on each path that are not counted: right after a start the
    first calls meet cold thread pools and connections (the first step after a restart failed
    55 to 121 of 1,200 calls; the next passed). Returns Kamailio's shared memory in use
    (MB) before the warm-up."""
    cexec("systemctl restart asterisk kamailio")
    for _ in range(60):
        if re.search(r"^0 active channels", cexec("asterisk -rx 'core show channels count' 2>/dev/null"), re.M):
            break
        time.sleep(1)
    time.sleep(5)  # the dispatcher's first probe marks Asterisk active
    idle = memory()["shm_real_used"]
    rate, seconds = WARM_UP
    for path in ("direct", "edge"):
        cps_run(media_ip, path, rate, seconds=seconds, tag=f"warm-up-{path}")
    return idle


def deepest_queues(top: int = 2) -> str:
    """Asterisk's taskprocessors with the deepest queue since start (name: max depth/high water)."""
    rows = []
    for line in cexec("asterisk -rx 'core show taskprocessors'").splitlines():
        cols = line.split()
        # Processor, Processed, In Queue, Max Depth, Low water, High water (, Low/High time in Asterisk 22)
        if len(cols) >= 6 and cols[1].isdigit():
            rows.append((int(cols[3]), f"{cols[0]} {cols[3]}/{cols[5]}"))
    return ", ".join(text for _, text in sorted(rows, reverse=True)[:top])


def cps(media_ip: str, steps: list[float], sustain: int, sustain_rate: float) -> list[str]:
    """Calls per second in steps on both paths, then sustained; lines for the summary."""
    print("\n## cps: new calls per second, 1 s calls without media, each step 20 s")
    print("| path | target cps | ok/failed | achieved cps | machine | asterisk | kamailio | bridge | sipp |")
    print("|---|---|---|---|---|---|---|---|---|")
    best: dict[str, float] = {}
    for target in ("direct", "edge"):
        restart(media_ip)
        for rate in steps:
            row = cps_run(media_ip, target, rate, seconds=20, tag=f"{target}-{rate:g}")
            print(
                f"| {target} | {rate:g} | {row['ok']:.0f}/{row['failed']:.0f} | {row['achieved']:.1f} "
                f"| {cpu_cells(row)} |",
                flush=True,
            )
            if row["failed"] or row["achieved"] < 0.9 * rate:
                break
            best[target] = rate
    # the direct path's sustained rate: from its best step (or --sustain-rate) down by 10 cps
    # until a run holds (0 failures, 90 % of the rate achieved); then the edge at that rate
    rate = sustain_rate or best.get("direct", steps[0])
    print(f"\n## cps sustained, {sustain} s each: the direct path from {rate:g} cps down, then the edge at its rate")
    print(
        "| path | target cps | ok/failed | achieved cps | CDR rows | machine | asterisk | kamailio | bridge | sipp "
        "| deepest queues | SIPp's failure reasons |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    idle_shm = 0.0
    shm: list[float] = []
    for target in ("direct", "edge"):
        while True:
            # both paths from the same state: a restart, and the warm-up
            idle = restart(media_ip)
            if target == "edge":
                idle_shm = idle
            row = cps_run(
                media_ip,
                target,
                rate,
                seconds=sustain,
                tag=f"{target}-sustained",
                shm=shm if target == "edge" else None,
            )
            results[target] = row
            print(
                f"| {target} | {rate:g} | {row['ok']:.0f}/{row['failed']:.0f} | {row['achieved']:.1f} "
                f"| {row['cdr_rows']:.0f} | {cpu_cells(row)} | {deepest_queues()} | {row['why']} |",
                flush=True,
            )
            held = not row["failed"] and row["achieved"] >= 0.9 * rate
            if target == "edge" or held or rate <= 10:
                break
            rate -= 10
    ratio = results["edge"]["achieved"] / max(0.001, results["direct"]["achieved"])
    # the edge's warm-up calls are still held too
    held = rate * min(sustain, 180) + WARM_UP[0] * WARM_UP[1]
    per_attempt = (shm[-1] - idle_shm) * 1024 / held if shm else 0.0
    failures = int(results["edge"]["failed"] + results["direct"]["failed"])
    return [
        f"calls per second sustained {sustain} s at {rate:g}: edge {results['edge']['achieved']:.1f}, direct "
        f"{results['direct']['achieved']:.1f}, edge/direct {ratio:.2f} (target >= 0.9), {failures} failed calls",
        f"Kamailio shared memory: {idle_shm:.1f} MB before the edge's sustained run, {shm[-1] if shm else 0:.1f} MB "
        f"at its end: {per_attempt:.1f} KB per call attempt held ({held:.0f} attempts within topology hiding's "
        "180 s; the sizing formula assumes 18 KB)",
    ]


def soak(media_ip: str, calls: int, seconds: int) -> list[str]:
    """Memory under a steady load; lines for the summary."""
    print(f"\n## soak: {calls} calls with media, replaced as they end, {seconds} s; memory every 30 s")
    wait_idle()
    hold_ms = 60000
    rate = calls / (hold_ms / 1000)
    total = int(rate * seconds)
    uas = pbx("pbx-soak", media_ip, total, media=True, check=True)
    uac = meta("meta-soak", media_ip, "edge", calls=total, rate=rate, limit=calls, hold_ms=hold_ms, media=True)
    print("| s | asterisk RSS MB | kamailio PSS MB | kamailio shm used MB |")
    print("|---|---|---|---|")
    started = time.monotonic()
    marks = []
    while time.monotonic() - started < seconds - 30:
        time.sleep(30)
        m = memory()
        marks.append(m)
        print(
            f"| {time.monotonic() - started:.0f} | {m['asterisk_rss']:.1f} | {m['kamailio_pss']:.1f} "
            f"| {m['shm_real_used']:.1f} |",
            flush=True,
        )
    ok, failed = uac.wait(hold_ms / 1000 + 120)
    uas.finish()
    # the first two minutes fill the calls up: flatness is judged from the fourth sample on
    steady = marks[3:] or marks
    lines = [f"soak {seconds} s at {calls} calls: {ok} ok, {failed} failed"]
    for key in ("asterisk_rss", "kamailio_pss", "shm_real_used"):
        first, last = steady[0][key], steady[-1][key]
        lines.append(
            f"soak {key}: {first:.1f} -> {last:.1f} MB ({last - first:+.1f} MB over {30 * (len(steady) - 1)} s, "
            f"range {min(m[key] for m in steady):.1f}-{max(m[key] for m in steady):.1f})"
        )
    return lines


def step_list(text: str) -> list[int]:
    return [int(step) for step in text.split(",")]


def best_step(rows: list[dict[str, float]]) -> int:
    """The largest step without a failed call within the CPU limit (0: none)."""
    good = [r for r in rows if not r["failed"] and not r["pbx_failed"] and r["machine"] <= CPU_LIMIT]
    return int(good[-1]["calls"]) if good else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="ramp,packet,g711,cps,soak")
    parser.add_argument("--steps", default="25,50,75,100,150,200,250,300,400")
    parser.add_argument("--g711-steps", default="50,100,200,300,400,500,600")
    parser.add_argument("--cps-steps", default="30,40,50,60,80,100,120")
    parser.add_argument("--sustain", type=int, default=300)
    parser.add_argument("--sustain-rate", type=float, default=0, help="default: the direct path's best step")
    parser.add_argument("--soak", type=int, default=600)
    parser.add_argument("--soak-calls", type=int, default=0, help="default: half the ramp's best step")
    parser.add_argument("--no-deploy", action="store_true", help="the container is up and converged")
    parser.add_argument("--keep", action="store_true", help="keep the container afterwards")
    args = parser.parse_args()
    phases = args.phases.split(",")
    commit = run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]).stdout.strip()
    print(
        f"# calls benchmark, commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs"
    )
    try:
        if not args.no_deploy:
            deploy()
        media_ip = prepare()
        summary: list[str] = []
        rows = ramp(media_ip, step_list(args.steps)) if "ramp" in phases else []
        best = best_step(rows)
        if rows:
            summary.append(
                f"transcoded calls: {best} with 0 failures within {CPU_LIMIT:.0f} % of both cores (target 200)"
            )
        if "packet" in phases and rows:
            # the largest good step up to 100 calls: enough calls for a steady figure, and room
            # below the CPU limit for the silent run
            reference = [r for r in rows if r["calls"] <= max(100, rows[0]["calls"])][-1]
            extra = packetisation(media_ip, int(reference["calls"]), reference)
            per_call = 2 * reference["machine"] / reference["calls"] + extra
            summary.append(
                f"at 20 ms packets: {per_call:.2f} % of a core per transcoded call (machine), so "
                f"{2 * CPU_LIMIT / per_call:.0f} calls within {CPU_LIMIT:.0f} % of both cores"
            )
        if "g711" in phases:
            g711 = ramp(media_ip, step_list(args.g711_steps), codec="pcma")
            summary.append(f"G.711 calls: {best_step(g711)} with 0 failures within {CPU_LIMIT:.0f} % (target 400)")
            if rows and g711:
                opus_cost = rows[0]["asterisk"] / rows[0]["calls"]
                same = next((r for r in g711 if r["calls"] >= rows[0]["calls"]), g711[0])
                summary.append(
                    f"Asterisk per call, transcoded / G.711: {opus_cost:.2f} / "
                    f"{same['asterisk'] / same['calls']:.2f} = "
                    f"{opus_cost / max(0.01, same['asterisk'] / same['calls']):.1f}x"
                )
        if "cps" in phases:
            steps = [float(s) for s in args.cps_steps.split(",")]
            summary += cps(media_ip, steps, args.sustain, args.sustain_rate)
        if "soak" in phases:
            summary += soak(media_ip, args.soak_calls or max(1, best // 2), args.soak)
        print("\n## summary (commit " + commit + ")")
        for line in summary:
            print(f"- {line}")
    finally:
        if not args.keep and not args.no_deploy:
            run([str(ROOT / "scripts/container.sh"), "rm", CONTAINER])


if __name__ == "__main__":
    main()
