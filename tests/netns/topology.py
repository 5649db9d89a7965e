"""A bank's three networks on this machine: network namespaces and veth pairs.

::

      agent (10.77.1.2) ──veth── dc (10.77.1.1 | 10.77.2.1) ──veth── visitor (10.77.2.2)
                                  │ lo: 10.77.0.1 kefu server, 10.77.0.2 coturn (listening + relay)

The data centre ``dc`` holds the services on addresses of its own (on its
loopback, ``/32``); every other host has one link to ``dc`` and a route to
the services' ``10.77.0.0/24`` through it, nothing else. ``dc`` does not
forward (``ip_forward=0``), so the agent's PC and a visitor cannot reach
each other: media can only meet at the relay. :meth:`Topology.block` cuts a
host's route to one address (a visitor whose network blocks the relay).

Everything is unique per run (names ``kf<hex>-…``, veth ``kf<hex><n>a/b``)
and removed by :meth:`Topology.close` — processes killed (their whole
process group), namespaces deleted — also when the test failed. Needs root
and ``ip netns`` (:func:`unavailable` says why not). The Janus issue reuses
it: :meth:`add_host` adds more hosts, :meth:`spawn` runs anything inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import scaled

__all__ = [
    "DC_SERVICES",
    "KEFU_ADDRESS",
    "TURN_ADDRESS",
    "Host",
    "Topology",
    "die_with_parent",
    "unavailable",
]

DC_SERVICES = "10.77.0.0/24"
KEFU_ADDRESS = "10.77.0.1"  # the kefu server, on dc
TURN_ADDRESS = "10.77.0.2"  # coturn (listening and relay), on dc


def die_with_parent() -> None:
    """In a child before ``exec``: SIGKILL it when the test process dies.

    The test's processes run in their own session (so that a test can kill a
    whole group); without this, a test run cut short (pytest killed by a
    timeout or ^C) would leave them behind, holding ports and namespaces.
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


_CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(1.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print(type(exc).__name__)
"""


def unavailable() -> str | None:
    """Why the topology cannot be built here, or ``None``."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the netns tests as root)"
    if shutil.which("ip") is None:
        return "no `ip` command (Debian package iproute2)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def _listens(host: Host, where: str, proto: str = "udp") -> bool:
    flags = "-lun" if proto == "udp" else "-ltn"
    sockets = subprocess.run(host.argv("ss", flags), capture_output=True, text=True, check=False)
    return any(where in line for line in sockets.stdout.splitlines())


@dataclass
class Host:
    """A host: its namespace, and its address on its link to ``dc``."""

    role: str
    netns: str
    address: str  # on its link (dc: the first link's)
    gateway: str | None = None  # dc's side of the link
    blocked: list[str] = field(default_factory=list)

    def argv(self, *argv: str) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.netns, *argv]


class Topology:
    """The namespaces of one test (see the module's docstring)."""

    def __init__(self) -> None:
        self.tag = "kf" + secrets.token_hex(3)
        self.hosts: dict[str, Host] = {}
        self._links = 0
        self._procs: list[asyncio.subprocess.Process] = []
        self.dc = self._namespace("dc", KEFU_ADDRESS)
        for address in (KEFU_ADDRESS, TURN_ADDRESS):
            _run("ip", "-n", self.dc.netns, "addr", "add", f"{address}/32", "dev", "lo")
        # no forwarding: hosts on different links never reach each other through dc
        _run("ip", "netns", "exec", self.dc.netns, "sysctl", "-qw", "net.ipv4.ip_forward=0")

    def _namespace(self, role: str, address: str) -> Host:
        name = f"{self.tag}-{role}"
        _run("ip", "netns", "add", name)
        host = Host(role, name, address)
        self.hosts[role] = host  # registered first: close() removes it even if the rest fails
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return host

    def add_host(self, role: str) -> Host:
        """A host with one link to ``dc`` (its own /24) and a route to the services."""
        self._links += 1
        n = self._links
        address, gateway = f"10.77.{n}.2", f"10.77.{n}.1"
        host = self._namespace(role, address)
        host.gateway = gateway
        inner, outer = f"{self.tag}{n}a", f"{self.tag}{n}b"
        _run(
            "ip",
            "link",
            "add",
            inner,
            "netns",
            host.netns,
            "type",
            "veth",
            "peer",
            outer,
            "netns",
            self.dc.netns,
        )
        _run("ip", "-n", host.netns, "addr", "add", f"{address}/24", "dev", inner)
        _run("ip", "-n", self.dc.netns, "addr", "add", f"{gateway}/24", "dev", outer)
        _run("ip", "-n", host.netns, "link", "set", inner, "up")
        _run("ip", "-n", self.dc.netns, "link", "set", outer, "up")
        _run("ip", "-n", host.netns, "route", "add", DC_SERVICES, "via", gateway)
        return host

    def block(self, role: str, address: str) -> None:
        """``role`` has no route to ``address`` any more (``unreachable``: sends fail at once)."""
        host = self.hosts[role]
        _run("ip", "-n", host.netns, "route", "add", "unreachable", f"{address}/32")
        host.blocked.append(address)

    def reaches(self, role: str, address: str, port: int = 9) -> bool:
        """Whether a TCP connect from ``role`` to ``address`` gets any answer within
        1 s (accepted, or refused by the host: it is reachable; no route or no
        answer: it is not)."""
        done = subprocess.run(
            self.hosts[role].argv(sys.executable, "-c", _CONNECT, address, str(port)),
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() in ("connected", "refused")

    def tcp_peers(self, role: str, port: int) -> set[str]:
        """The addresses of the peers of ``role``'s established TCP connections on its ``port``."""
        ss = self.hosts[role].argv("ss", "-Htn", "state", "established", f"( sport = :{port} )")
        lines = subprocess.run(ss, capture_output=True, text=True, check=False).stdout.splitlines()
        return {line.split()[-1].rsplit(":", 1)[0] for line in lines}

    async def wait_udp(
        self, role: str, address: str, port: int, within: float = scaled(30.0), *, proto: str = "udp"
    ) -> None:
        """Until something listens on UDP (or ``proto="tcp"``) ``address:port`` in ``role``
        (coturn says nothing on stdout when it is ready: look at the sockets)."""
        async with asyncio.timeout(within):
            while not _listens(self.hosts[role], f"{address}:{port}", proto):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def spawn(
        self,
        role: str,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        stdin: bool = False,
        cwd: Path | None = None,
    ) -> asyncio.subprocess.Process:
        """Run ``argv`` inside ``role``; stdout piped, stderr to ``log``. Killed by :meth:`close`."""
        err = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: ASYNC230
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.hosts[role].argv(*argv),
                stdin=asyncio.subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=cwd,
                start_new_session=True,  # its own group: close() kills its children too
                preexec_fn=die_with_parent,
            )
        finally:
            if log is not None:
                err.close()  # type: ignore[union-attr]
        self._procs.append(proc)
        return proc

    async def close(self) -> None:
        """Kill every process started here and delete the namespaces."""
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        self._procs.clear()
        for host in reversed(list(self.hosts.values())):
            deleted = await asyncio.create_subprocess_exec("ip", "netns", "del", host.netns)
            await deleted.wait()
        self.hosts.clear()
