"""``kefu plugin`` as a user runs it: a real process on a real port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from typer.testing import CliRunner
from websockets.asyncio.client import connect

from kefu.cli import app
from kefu.plugin.cli import DESKTOP_FILE, _desktop_quote

from ..conftest import kefu_argv, plugin_process
from .harness import wait_for

runner = CliRunner()


def test_help_lists_the_options() -> None:
    r = runner.invoke(app, ["plugin", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert r.exit_code == 0
    for option in ("--server", "--port", "--data-dir", "--allow-origin", "--login-timeout", "--allow-many"):
        assert option in r.output
    assert "--install-url-handler" in r.output
    for option in ("--no-media", "--media-source", "--ice-server", "--candidate-address", "--stream-offline"):
        assert option in r.output
    assert "--no-record" in r.output and "--media-timeout" in r.output


def test_bad_media_options_say_what_to_give() -> None:
    base = ["plugin", "--server", "http://127.0.0.1:8600", "--headless"]
    r = runner.invoke(app, [*base, "--media-source", "camera"])
    assert r.exit_code == 2 and "device:/dev/videoN" in r.output
    r = runner.invoke(app, [*base, "--ice-server", "http://stun.example"])
    assert r.exit_code == 2 and "stun:" in r.output
    r = runner.invoke(app, [*base, "--ice-server", "turn:turn.example:3478"])
    assert r.exit_code == 2 and "username" in r.output
    r = runner.invoke(app, [*base, "--video-size", "big"])
    assert r.exit_code == 2 and "640x480" in r.output
    r = runner.invoke(app, [*base, "--stream-offline", "0"])
    assert r.exit_code == 2 and "offline_threshold" in r.output


def test_bad_urls_say_what_to_give() -> None:
    r = runner.invoke(app, ["plugin", "--server", "ftp://x"])
    assert r.exit_code == 2 and "http://127.0.0.1:8600" in r.output
    r = runner.invoke(app, ["plugin", "--server", "http://127.0.0.1:8600", "https://not-our-scheme"])
    assert r.exit_code == 2 and "pocprotocol" in r.output


def test_the_turn_credential_may_come_from_the_environment() -> None:
    # a command line is readable by every user of the machine: the credential need not be on it
    base = ["plugin", "--server", "http://127.0.0.1:8600", "--headless", "--stream-offline", "0"]
    turn = ["--ice-server", "turn:turn.example:3478", "--ice-username", "u"]
    r = runner.invoke(app, [*base, *turn])
    assert r.exit_code == 2 and "credential" in r.output
    r = runner.invoke(app, [*base, *turn], env={"KEFU_ICE_CREDENTIAL": "c"})
    assert r.exit_code == 2 and "offline_threshold" in r.output and "credential" not in r.output


def test_desktop_exec_quoting() -> None:
    assert _desktop_quote("/usr/bin/python3") == "/usr/bin/python3"
    assert _desktop_quote("/home/a b/py") == '"/home/a b/py"'
    assert _desktop_quote('x"$`\\') == '"x\\"\\$\\`\\\\"'
    assert _desktop_quote("100%") == "100%%"


def test_install_url_handler_registers_pocprotocol_for_the_user(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kefu.cli",
            "plugin",
            "--server",
            "http://127.0.0.1:8600",
            "--install-url-handler",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    desktop = tmp_path / "data" / "applications" / DESKTOP_FILE
    assert str(desktop) in out.stderr.replace("\n", "")
    text = desktop.read_text()
    assert "MimeType=x-scheme-handler/pocprotocol;" in text
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line.endswith(" %u") and "--server http://127.0.0.1:8600" in exec_line
    assert exec_line.startswith(f"Exec={sys.executable} -m kefu.cli plugin")
    if shutil.which("xdg-mime"):
        q = subprocess.run(
            ["xdg-mime", "query", "default", "x-scheme-handler/pocprotocol"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert q.stdout.strip() == DESKTOP_FILE


@contextlib.asynccontextmanager
async def running_plugin(tmp_path: Path, *args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``kefu plugin`` in a process of its own; killed (by its pid) if the test leaves it running."""
    async with plugin_process("http://127.0.0.1:9", tmp_path / "plugin", *args) as running:
        yield running


async def test_the_plugin_runs_answers_and_quits(tmp_path: Path) -> None:
    async with running_plugin(tmp_path, "--port", "0") as (proc, url):
        token = (tmp_path / "plugin" / "plugin.token").read_text().strip()
        async with connect(url) as ws:
            await ws.send(json.dumps({"v": 1, "id": "h", "mark": "hello", "params": {"token": token}}))
            assert json.loads(await wait_for(ws.recv()))["subMark"] == "success"
            await ws.send(json.dumps({"v": 1, "id": "q", "mark": "quit"}))
            while (msg := json.loads(await wait_for(ws.recv()))).get("id") != "q":
                assert msg["mark"] == "client"  # ssoReady
            assert msg["subMark"] == "success"
        assert await wait_for(proc.wait(), 30) == 0
    assert not (tmp_path / "plugin" / "plugin.token").exists()


async def test_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    async with running_plugin(tmp_path, "--port", "0") as (proc, _url):
        proc.send_signal(signal.SIGTERM)
        assert await wait_for(proc.wait(), 30) == 0
        assert proc.stderr is not None
        assert "plugin stopped" in (await proc.stderr.read()).decode()


async def test_a_port_in_use_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            *kefu_argv(
                "plugin",
                "--server",
                "http://127.0.0.1:9",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "p"),
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert b"is in use" in err and b"--port" in err and out == b""
    assert not (tmp_path / "p" / "plugin.token").exists()


async def test_launched_by_url_when_one_runs_is_a_no_op(tmp_path: Path) -> None:
    async with running_plugin(tmp_path, "--port", "0") as (_proc, url):
        port = url.rsplit(":", 1)[1]
        second = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kefu.cli",
            "plugin",
            "--server",
            "http://127.0.0.1:9",
            "--port",
            port,
            "--data-dir",
            str(tmp_path / "other"),
            "pocprotocol://open",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await wait_for(second.communicate(), 60)
        assert second.returncode == 0 and b"already answers" in err


def test_media_settings_from_the_options() -> None:
    from kefu.media import IceServer
    from kefu.plugin.cli import media_settings

    default = media_settings()
    assert default.ice_servers == () and default.host_addresses == ("127.0.0.1",) and default.record
    assert (default.offline_threshold, default.source) == (3.0, "pattern")
    assert default.sfu_audio_on_demand and default.sfu_video_on_demand  # D49, D55
    assert not media_settings(sfu_video_on_demand=False).sfu_video_on_demand  # a window (D55)
    m = media_settings(
        ice_servers=["stun:stun.example:3478", "turn:turn.example:3478?transport=udp"],
        ice_username="u",
        ice_credential="c",
        candidate_addresses=["auto"],
        stream_offline=1.5,
        record=False,
        video_size="320x240",
        fps=15,
    )
    assert m.ice_servers == (
        IceServer(("stun:stun.example:3478",)),
        IceServer(("turn:turn.example:3478?transport=udp",), "u", "c"),
    )
    assert m.host_addresses is None and m.offline_threshold == 1.5 and not m.record
    assert (m.video_width, m.video_height, m.fps) == (320, 240, 15)
