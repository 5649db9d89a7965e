"""``kefu plugin`` with its window, as a user runs it: a real process on the
qasync loop; offscreen, and once under Xvfb on a real X display."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from ..conftest import plugin_process as kefu_plugin
from ..plugin.harness import wait_for

pytestmark = pytest.mark.desktop


@contextlib.asynccontextmanager
async def plugin_process(
    tmp_path: Path, env: dict[str, str], *args: str
) -> AsyncIterator[tuple[Any, str, str]]:
    """``kefu plugin`` (killed by its pid if the test leaves it running); (process, url, stderr so far)."""
    async with kefu_plugin("http://127.0.0.1:9", tmp_path / "plugin", "--port", "0", *args, env=env) as (
        proc,
        url,
    ):
        yield proc, url, ""


async def _sdk(url: str, tmp_path: Path) -> ClientConnection:
    token = (tmp_path / "plugin" / "plugin.token").read_text().strip()
    ws = await connect(url)
    await ws.send(json.dumps({"v": 1, "id": "h", "mark": "hello", "params": {"token": token}}))
    assert json.loads(await wait_for(ws.recv()))["subMark"] == "success"
    return ws


async def _call(
    ws: ClientConnection, rid: str, mark: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    await ws.send(json.dumps({"v": 1, "id": rid, "mark": mark, "params": params or {}}))
    while (msg := json.loads(await wait_for(ws.recv()))).get("id") != rid:
        pass
    assert isinstance(msg, dict)
    return msg


async def _quit_and_hear_it(proc: Any, ws: ClientConnection) -> str:
    """``quit``: the SDK hears ``client``/``quit``, the process ends with 0; its stderr."""
    await ws.send(json.dumps({"v": 1, "id": "q", "mark": "quit"}))
    heard: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):
        while True:
            heard.append(json.loads(await wait_for(ws.recv())))
    assert any(m.get("id") == "q" and m["subMark"] == "success" for m in heard), heard
    assert any(m.get("mark") == "client" and m.get("subMark") == "quit" for m in heard), heard
    assert await wait_for(proc.wait(), 30) == 0
    return str((await proc.stderr.read()).decode())


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(extra)
    return env


async def test_offscreen_the_window_opens_and_quit_ends_the_process(tmp_path: Path) -> None:
    async with plugin_process(tmp_path, _env(QT_QPA_PLATFORM="offscreen")) as (proc, url, _):
        ws = await _sdk(url, tmp_path)
        size = await _call(ws, "s", "setWindowSize", {"width": "300", "height": "400"})
        assert size["payload"]["width"] == 300
        err = await _quit_and_hear_it(proc, ws)
    assert "shown on offscreen" in err and "plugin stopped" in err
    assert not (tmp_path / "plugin" / "plugin.token").exists()


async def test_no_display_runs_headless_and_says_so(tmp_path: Path) -> None:
    async with plugin_process(tmp_path, _env()) as (proc, url, _):
        ws = await _sdk(url, tmp_path)
        err = await _quit_and_hear_it(proc, ws)
    assert "no display" in err and "none (headless)" in err


async def test_headless_option(tmp_path: Path) -> None:
    async with plugin_process(tmp_path, _env(QT_QPA_PLATFORM="offscreen"), "--headless") as (proc, url, _):
        ws = await _sdk(url, tmp_path)
        err = await _quit_and_hear_it(proc, ws)
    assert "none (headless)" in err and "no window" not in err


def _free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise RuntimeError("no free X display number")


@contextlib.asynccontextmanager
async def xvfb() -> AsyncIterator[str]:
    """Xvfb on a free display; its DISPLAY."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb; .ci/run installs it)")
    n = _free_display()
    proc = await asyncio.create_subprocess_exec(
        "Xvfb",
        f":{n}",
        "-nolisten",
        "tcp",
        "-screen",
        "0",
        "1280x1024x24",
        "-displayfd",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready = (await wait_for(proc.stdout.readline(), 30)).decode().strip()  # the display, once it serves
        assert ready == str(n), ready
        yield f":{n}"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def _xwininfo(display: str) -> dict[str, str]:
    proc = await asyncio.create_subprocess_exec(
        "xwininfo",
        "-name",
        "kefu plugin",
        env={**os.environ, "DISPLAY": display},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await wait_for(proc.communicate())
    assert proc.returncode == 0, err.decode()
    return dict(re.findall(r"^\s*([A-Za-z ]+):\s*(.+)$", out.decode(), re.M))


async def test_under_xvfb_a_real_x_window_sized_by_the_sdk(tmp_path: Path) -> None:
    async with xvfb() as display:
        env = _env(DISPLAY=display, QT_QPA_PLATFORM="xcb")
        async with plugin_process(tmp_path, env) as (proc, url, _):
            ws = await _sdk(url, tmp_path)
            size = await _call(ws, "s", "setWindowSize", {"width": 640, "height": 480})
            assert size["subMark"] == "success"
            if shutil.which("xwininfo") is not None:
                # the X server's own view of the window (a round trip later than the reply)
                await _call(ws, "g", "getWindow")
                info = await _xwininfo(display)
                assert info["Map State"] == "IsViewable"
                assert (info["Width"], info["Height"]) == ("640", "480"), info
            err = await _quit_and_hear_it(proc, ws)
    assert "shown on xcb" in err
