"""Several worker processes behind the same listening addresses (``WAGW_BRIDGE_WORKERS``).

One Python process cannot use more than about one core: its event loop and its group-commit
writer thread share one GIL, and under load that thread was the limit (the database was not).
``serve`` therefore runs as a small supervisor with N forked workers:

* The supervisor binds, for every listener, one ``SO_REUSEPORT`` socket per worker slot. The
  kernel spreads new connections over the sockets of such a group by a hash of the addresses,
  so long-lived keep-alive connections (nginx's upstream pool) are spread too; with one shared
  accept queue a single busy worker accepts a whole burst of connections at once.
* Each worker serves its slot's sockets with its own :class:`~wagw_bridge.app.Runtime`:
  database connections, group-commit writer, metrics. Exactly-once storage across workers
  rests on the database's unique constraints (``INSERT ... ON CONFLICT DO NOTHING``), not on
  any in-process state; SQLite serialises the workers' write transactions.
* ``/metrics`` of any worker reports the sum over all workers (:class:`~wagw_bridge.observability.
  Metrics`: prometheus_client's multiprocess mode, its files in one directory of the supervisor).
* A worker that dies is forked again into its slot: connections that arrive meanwhile wait in
  the slot's sockets, which the supervisor keeps open, and the dead worker's metrics files stay
  in the sum. More than ``CRASH_LIMIT`` deaths within ``CRASH_WINDOW`` seconds stop
  the service with exit status 1, so that systemd's ``Restart=`` takes over.
* ``SIGTERM``/``SIGINT`` are passed to every worker (graceful shutdown), ``SIGHUP`` too (every
  worker reloads the routing table).

Only processes of the same user can join a ``SO_REUSEPORT`` group (Linux checks the UID).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("wagw_bridge.workers")

CRASH_LIMIT = 5
CRASH_WINDOW = 60.0
RESPAWN_DELAY = 0.5
BACKLOG = 2048


@dataclass(frozen=True)
class WorkerContext:
    """What a forked worker gets: its slot, its listening sockets (by listener mode), where the
    workers' metrics files live, and the service's start time."""

    slot: int
    sockets: Mapping[str, socket.socket]
    metrics_dir: str
    started: float


def bind_group(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address, in one ``SO_REUSEPORT`` group."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
            if addr[1] == 0:  # an ephemeral port: the rest of the group joins the one chosen
                addr = (addr[0], sock.getsockname()[1], *addr[2:])
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class Supervisor:
    """Fork ``count`` workers, keep them running, pass signals on. See the module docstring."""

    def __init__(
        self,
        count: int,
        listeners: Mapping[str, tuple[str, int]],
        target: Callable[[WorkerContext], int],
    ) -> None:
        self.count = count
        self.target = target
        self.started = time.time()
        self.groups = {
            mode: bind_group(host, port, count) for mode, (host, port) in listeners.items()
        }
        self.metrics_dir = tempfile.mkdtemp(prefix="wagw-bridge-metrics-")
        self.children: dict[int, int] = {}  # pid -> slot
        self.stopping = False
        self.deaths: list[float] = []
        self.failed = False

    def _context(self, slot: int) -> WorkerContext:
        return WorkerContext(
            slot=slot,
            sockets={mode: socks[slot] for mode, socks in self.groups.items()},
            metrics_dir=self.metrics_dir,
            started=self.started,
        )

    def _spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                # Until serve() installs its handler (after loading the routes) a SIGHUP has
                # nothing to reload; its default action would end the new worker.
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                for socks in self.groups.values():
                    for i, sock in enumerate(socks):
                        if i != slot:
                            sock.close()
                code = self.target(self._context(slot))
            except BaseException:
                log.exception("worker failed", extra={"slot": slot})
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = slot
        log.info("worker started", extra={"slot": slot, "pid": pid})
        if self.stopping:
            os.kill(pid, signal.SIGTERM)

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            for pid in list(self.children):
                os.kill(pid, signal.SIGHUP)
            return
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        # New connections now go to the workers' own copies only, which close on shutdown.
        for socks in self.groups.values():
            for sock in socks:
                sock.close()

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        log.info(
            "supervisor started", extra={"workers": self.count, "metrics_dir": self.metrics_dir}
        )
        try:
            for slot in range(self.count):
                if not self.stopping:
                    self._spawn(slot)
            while self.children:
                pid, status = os.waitpid(-1, 0)
                slot_of = self.children.pop(pid, None)
                if slot_of is None:
                    continue
                code = os.waitstatus_to_exitcode(status)
                if self.stopping:
                    if code != 0:
                        log.warning("worker exit status", extra={"slot": slot_of, "code": code})
                        self.failed = True
                    continue
                self._died(slot_of, code)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for socks in self.groups.values():
                for sock in socks:
                    sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 1 if self.failed else 0

    def _died(self, slot: int, code: int) -> None:
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < CRASH_WINDOW] + [now]
        log.error("worker died", extra={"slot": slot, "code": code})
        if len(self.deaths) > CRASH_LIMIT:
            log.error(
                "workers keep dying: stopping the service",
                extra={"deaths": len(self.deaths), "window_s": CRASH_WINDOW},
            )
            self.failed = True
            self.stop()
            return
        time.sleep(RESPAWN_DELAY)
        if not self.stopping:
            self._spawn(slot)
