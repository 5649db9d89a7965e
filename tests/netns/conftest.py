"""Fixtures of the network tests: the topology (tests/netns/topology.py) with
the data centre's services running in it — coturn (``use-auth-secret``) and
the kefu server — and helpers that start a plugin with its ``IMClient`` on
an agent host and Python visitors on visitor hosts (tests/netns/probe.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD, scaled
from tests.tlscerts import Leaf, TestCA

from .topology import KEFU_ADDRESS, TURN_ADDRESS, Topology, unavailable

ROOT = Path(__file__).resolve().parents[2]
KEFU = str(Path(sys.executable).parent / "kefu")
PYTHON = sys.executable
SECRET = "netns-turn-secret-" + os.urandom(4).hex()
TURN_PORT = 3478
TURNS_PORT = 5349  # TURN over TLS (turns:)
LIMIT = scaled(60.0)  # seconds any one step may take on a loaded machine (awaited, never slept)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: builds network namespaces (needs root)")


class Lines:
    """The JSON lines of a process, kept; :meth:`find` awaits one that fits."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.seen: list[dict[str, Any]] = []
        self._grown = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                self.seen.append(json.loads(line))
            except ValueError:
                self.seen.append({"text": line.decode(errors="replace").strip()})
            grown, self._grown = self._grown, asyncio.Event()
            grown.set()
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def find(self, test: Any, within: float = LIMIT, *, start: int = 0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            i = start
            while True:
                while i < len(self.seen):
                    if test(self.seen[i]):
                        return self.seen[i]
                    i += 1
                if self._task.done():
                    raise AssertionError(
                        f"{self.name} ended (exit {self.proc.returncode}) before: {self.seen[-5:]}"
                    )
                await self._grown.wait()

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())


class Network:
    """The topology with the data centre running (see the module's docstring)."""

    def __init__(self, topo: Topology, tmp: Path) -> None:
        self.topo = topo
        self.tmp = tmp
        self.server_url = ""
        self.turn_pid = 0
        self._calls = 0
        self.ca: TestCA | None = None
        self.server_cert: Leaf | None = None
        self.client_env: list[str] = []  # the clients' processes run under it (``env VAR=…``)

    async def start_dc(self, *, tls: bool = False, turns: bool = False) -> None:
        """coturn and the kefu server on dc; with ``tls`` the server serves https and
        wss with a test CA's certificate for its address (the plugin trusts that CA).
        With ``turns`` coturn serves TURN over TLS on :data:`TURNS_PORT` with that CA's
        certificate for its address, the server hands out only that ``turns:`` URL, and
        the clients' processes trust the CA (``SSL_CERT_FILE``: aiortc checks a TURN
        server's certificate against the system's CAs)."""
        if tls or turns:
            self.ca = TestCA(self.tmp / "tls")
        turn_url = f"turn:{TURN_ADDRESS}:{TURN_PORT}?transport=udp"
        turn_tls = ["no-tls"]
        if turns:
            assert self.ca is not None
            turn_cert = self.ca.issue(TURN_ADDRESS)
            turn_url = f"turns:{TURN_ADDRESS}:{TURNS_PORT}?transport=tcp"
            turn_tls = [f"tls-listening-port={TURNS_PORT}", f"cert={turn_cert.cert}", f"pkey={turn_cert.key}"]
            turn_tls += ["no-tlsv1", "no-tlsv1_1"]
            self.client_env = ["env", f"SSL_CERT_FILE={self.ca.cert}"]
        conf = self.tmp / "turnserver.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listening-ip={TURN_ADDRESS}",
                    f"relay-ip={TURN_ADDRESS}",
                    f"listening-port={TURN_PORT}",
                    "min-port=49152",
                    "max-port=49352",
                    "use-auth-secret",
                    f"static-auth-secret={SECRET}",
                    "realm=kefu.test",
                    "fingerprint",
                    "no-cli",
                    *turn_tls,
                    "no-dtls",
                    "no-tcp-relay",
                    f"userdb={self.tmp / 'turndb'}",
                    f"pidfile={self.tmp / 'turnserver.pid'}",
                    f"log-file={self.tmp / 'turnserver.log'}",
                    "simple-log",
                    "",
                ]
            )
        )
        turn = await self.topo.spawn("dc", ["turnserver", "-c", str(conf)], log=self.tmp / "turn.stderr")
        self.turn_pid = turn.pid
        (self.tmp / "turn-secret").write_text(SECRET)
        data = self.tmp / "server"
        added = await asyncio.create_subprocess_exec(
            KEFU,
            "agent",
            "add",
            "a1",
            "--password",
            PASSWORD,
            "--data-dir",
            str(data),
            stdout=subprocess.DEVNULL,
        )
        assert await added.wait() == 0
        served: list[str] = []
        if tls:
            assert self.ca is not None
            self.server_cert = self.ca.issue(KEFU_ADDRESS)
            served = ["--tls-cert", str(self.server_cert.cert), "--tls-key", str(self.server_cert.key)]
        server = await self.topo.spawn(
            "dc",
            [
                KEFU,
                "server",
                "--host",
                KEFU_ADDRESS,
                "--port",
                "8600",
                "--data-dir",
                str(data),
                "--ready-on-login",
                "--turn",
                turn_url,
                "--turn-secret-file",
                str(self.tmp / "turn-secret"),
                "--turn-ttl",
                "600",
                "--log-level",
                "info",
                *served,
            ],
            log=self.tmp / "server.log",
        )
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), LIMIT)
        assert b"listening on" in line, line
        self.server_url = line.decode().split("listening on ", 1)[1].strip()
        await self.topo.wait_udp("dc", TURN_ADDRESS, TURN_PORT)
        if turns:
            await self.topo.wait_udp("dc", TURN_ADDRESS, TURNS_PORT, proto="tcp")

    async def agent(self, name: str = "a1", *, connect_timeout: float = scaled(20.0)) -> Lines:
        """The plugin on the agent host (headless, real media) and an IMClient logged in, ready."""
        data = self.tmp / f"plugin-{name}"
        plugin = await self.topo.spawn(
            "agent",
            [
                *self.client_env,
                KEFU,
                "plugin",
                "--server",
                self.server_url,
                "--headless",
                "--port",
                "1040",
                "--data-dir",
                str(data),
                "--no-record",
                "--video-size",
                "320x240",
                "--fps",
                "15",
                "--media-connect-timeout",
                str(connect_timeout),
                "--log-level",
                "info",
                *(
                    ["--server-ca", str(self.ca.cert)]
                    if self.ca is not None and self.server_cert is not None
                    else []
                ),
            ],
            log=self.tmp / f"plugin-{name}.log",
        )
        assert plugin.stdout is not None
        line = await asyncio.wait_for(plugin.stdout.readline(), LIMIT)
        assert line.startswith(b"ready "), line
        url = line.decode().split()[1]
        token = (data / "plugin.token").read_text().strip()
        proc = await self.topo.spawn(
            "agent",
            [PYTHON, "-m", "tests.netns.probe", "agent", url, token, self.server_url, name],
            log=self.tmp / f"probe-{name}.log",
            stdin=True,
            cwd=ROOT,
        )
        probe = Lines(proc, f"agent {name}")
        await probe.find(lambda m: m.get("id") == "login" and m.get("callback") == "success")
        return probe

    async def visitor(self, role: str, name: str) -> Lines:
        proc = await self.topo.spawn(
            role,
            [*self.client_env, PYTHON, "-m", "tests.netns.probe", "visitor", self.server_url, name],
            log=self.tmp / f"probe-{name}.log",
            stdin=True,
            cwd=ROOT,
        )
        probe = Lines(proc, f"visitor {name}")
        await probe.find(lambda m: m.get("event") == "hello")
        return probe

    async def page(self, role: str, name: str) -> Lines:
        """The visitor page (the server's ``/visitor``) in Chromium on ``role``
        (tests/netns/page.py), connected. Needs ``start_dc(tls=True)``."""
        assert self.server_cert is not None, "a camera needs a secure context: start_dc(tls=True)"
        proc = await self.topo.spawn(
            role,
            [
                PYTHON,
                "-m",
                "tests.netns.page",
                f"{self.server_url}/visitor?name={name}",
                self.server_cert.spki_hash,
            ],
            log=self.tmp / f"page-{name}.log",
            stdin=True,
            cwd=ROOT,
        )
        page = Lines(proc, f"page {name}")
        await page.find(lambda m: m.get("event") in ("connected", "error"))
        return page

    def call(self, agent: Lines, api: str, params: dict[str, Any] | None = None) -> str:
        self._calls += 1
        rid = f"c{self._calls}"
        agent.send({"id": rid, "api": api, "params": params or {}})
        return rid

    def turn_cpu_seconds(self) -> float:
        """utime + stime of coturn so far (/proc/PID/stat), in seconds."""
        fields = Path(f"/proc/{self.turn_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
async def topology() -> AsyncIterator[Topology]:
    why = unavailable()
    if why is not None:
        pytest.skip(why)
    topo = Topology()
    try:
        yield topo
    finally:
        await topo.close()


async def _network(topology: Topology, tmp_path: Path, *, tls: bool = False, turns: bool = False) -> Network:
    topology.add_host("agent")
    topology.add_host("visitor")
    topology.add_host("visitor2")
    # the fixture's own check: the hosts reach the data centre, never each other
    agent, visitor = topology.hosts["agent"], topology.hosts["visitor"]
    assert topology.reaches("agent", KEFU_ADDRESS) and topology.reaches("visitor", TURN_ADDRESS)
    assert not topology.reaches("agent", visitor.address)
    assert not topology.reaches("visitor", agent.address)
    net = Network(topology, tmp_path)
    await net.start_dc(tls=tls, turns=turns)
    return net


@pytest.fixture
async def network(topology: Topology, tmp_path: Path) -> Network:
    """agent ─ dc ─ visitor, visitor2; coturn and the kefu server running on dc."""
    return await _network(topology, tmp_path, tls=False)


@pytest.fixture
async def tls_network(topology: Topology, tmp_path: Path) -> Network:
    """The same, the kefu server on https and wss (a test CA's certificate), as a
    visitor's browser needs for its camera (a secure context)."""
    return await _network(topology, tmp_path, tls=True)


@pytest.fixture
async def turns_network(topology: Topology, tmp_path: Path) -> Network:
    """The same, the relay reached over TLS only (``turns:``, a test CA's certificate)."""
    return await _network(topology, tmp_path, turns=True)
