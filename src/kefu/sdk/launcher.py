"""Starting ``kefu plugin`` on this machine when nothing answers ``startup`` (SPEC §4.1)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from kefu.paths import DEFAULT_PORT, open_private, private_dir
from kefu.protocol import ErrorCode
from kefu.protocol.hosts import origin_of

from .events import RequestError

__all__ = ["launch_plugin"]

log = logging.getLogger("kefu.sdk")


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``kefu plugin`` in its own session; its stderr goes to ``log_path``
    (0600, also when it existed with a wider mode)."""
    fd = open_private(log_path, os.O_WRONLY | os.O_APPEND)
    try:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=fd, start_new_session=True
        )
    finally:
        os.close(fd)


async def launch_plugin(
    base_ws_url: str, sso_to: str, data_dir: Path, startup_timeout: float
) -> subprocess.Popen[bytes]:
    """``kefu plugin`` for ``sso_to``'s server on ``base_ws_url``'s port, started and ``ready``;
    :class:`RequestError` (``plugin_unreachable``) when it cannot be."""
    parts = urlsplit(base_ws_url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise RequestError(
            f"startup launches a plugin on this machine only, not {parts.hostname}",
            code=ErrorCode.plugin_unreachable,
        )
    port = parts.port or DEFAULT_PORT
    private_dir(data_dir)  # 0700 and its files 0600, also when it existed, wider
    command = [
        sys.executable,
        "-m",
        "kefu.cli",
        "plugin",
        "--server",
        origin_of(sso_to),
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    log_path = data_dir / "plugin.log"
    proc = await asyncio.to_thread(_spawn, command, log_path)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(startup_timeout):
            while True:
                line = await asyncio.to_thread(proc.stdout.readline)
                if not line:
                    raise RequestError(
                        f"the plugin exited ({proc.wait()}); see {log_path}",
                        code=ErrorCode.plugin_unreachable,
                    )
                if line.startswith(b"ready "):
                    break
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise RequestError(
            f"the plugin did not start within {startup_timeout:g} s; see {log_path}",
            code=ErrorCode.plugin_unreachable,
        ) from None
    finally:
        proc.stdout.close()
    log.info("started the plugin (pid %d) on port %d", proc.pid, port)
    return proc
