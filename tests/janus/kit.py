"""A real Janus (Debian's ``janus``) started by a test: its configuration in a
temporary folder, the HTTP transport on a port of the test's choosing, the
VideoRoom plugin only, an API secret and a VideoRoom admin key.

The control plane (rooms, secrets, kicks) works on loopback; media through
Janus needs the network-namespace topology, since Janus skips loopback
interfaces for ICE.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from tests.netns.topology import die_with_parent

JANUS = shutil.which("janus") or "/usr/bin/janus"
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
OTHER_PLUGINS = (
    "audiobridge duktape echotest lua nosip recordplay sip streaming textroom videocall voicemail".split()
)
OTHER_TRANSPORTS = "mqtt nanomsg pfunix rabbitmq websockets".split()


def available() -> str | None:
    """Why Janus cannot run here, or None."""
    if not Path(JANUS).exists():
        return "janus is not installed (apt-get install janus janus-tools)"
    if not (LIB / "plugins" / "libjanus_videoroom.so").exists():
        return f"the VideoRoom plugin is missing under {LIB}"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Janus:
    """One Janus process: ``await start()``, ``url``, ``kill()``, ``await stop()``."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.folder = folder
        self.host = host
        self.port = port or free_port(host)
        self.api_secret = "test-api-secret-" + os.urandom(4).hex()
        self.admin_key = "test-admin-key-" + os.urandom(4).hex()
        self.recordings = folder / "recordings"
        self.proc: subprocess.Popen[bytes] | None = None
        self.prefix: list[str] = []  # e.g. ["ip", "netns", "exec", "dc"]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/janus"

    def _configure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(exist_ok=True)
        disable_p = ",".join(f"libjanus_{p}.so" for p in OTHER_PLUGINS)
        disable_t = ",".join(f"libjanus_{t}.so" for t in OTHER_TRANSPORTS)
        (self.folder / "janus.jcfg").write_text(
            "general: {\n"
            f'  configs_folder = "{self.folder}"\n'
            f'  plugins_folder = "{LIB}/plugins"\n'
            f'  transports_folder = "{LIB}/transports"\n'
            f'  events_folder = "{LIB}/events"\n'
            f'  loggers_folder = "{LIB}/loggers"\n'
            "  debug_level = 3\n"
            f'  api_secret = "{self.api_secret}"\n'
            "  session_timeout = 60\n"
            "}\n"
            "media: { }\n"
            "nat: { }\n"
            f'plugins: {{ disable = "{disable_p}" }}\n'
            f'transports: {{ disable = "{disable_t}" }}\n'
            "events: { broadcast = false }\n"
            'loggers: { disable = "libjanus_jsonlog.so" }\n'
        )
        (self.folder / "janus.transport.http.jcfg").write_text(
            f'general: {{ json = "plain" base_path = "/janus" http = true port = {self.port} '
            f'ip = "{self.host}" https = false }}\n'
            "admin: { admin_http = false }\ncors: { }\n"
        )
        (self.folder / "janus.plugin.videoroom.jcfg").write_text(
            f'general: {{ admin_key = "{self.admin_key}" events = false }}\n'
        )

    def spawn(self) -> None:
        """Write the configuration and start the process (not waiting for it)."""
        self._configure()
        with open(self.folder / "janus.out", "ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, JANUS, "-C", str(self.folder / "janus.jcfg"), "-F", str(self.folder), "-N"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def start(self, wait: float = 10.0) -> str:
        """Start Janus and wait until its HTTP API answers."""
        self.spawn()
        assert self.proc is not None
        async with httpx.AsyncClient(timeout=1.0) as http:
            deadline = asyncio.get_running_loop().time() + wait
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"janus exited with {self.proc.returncode}: {self.output()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/info")).status_code == 200:
                        return self.url
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"janus did not answer within {wait} s: {self.output()[-2000:]}")
                await asyncio.sleep(0.05)

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "janus.out").read_text(errors="replace")
        return ""

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 5.0)
            except TimeoutError:
                self.kill()
