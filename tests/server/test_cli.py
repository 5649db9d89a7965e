"""`kefu server` and `kefu agent …` as a user runs them: a real process, killed and restarted."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from typer.testing import CliRunner

from kefu.cli import app
from kefu.protocol import ErrorCode
from kefu.server import Settings
from kefu.visitor import RequestFailed, Visitor
from tests.conftest import child_env
from tests.server.clients import AgentClient

runner = CliRunner()


def db_args(s: Settings) -> list[str]:
    args = ["--data-dir", str(s.data_dir)]
    if s.db_url:
        args += ["--db", s.db_url]
    if s.db_schema:
        args += ["--db-schema", s.db_schema]
    return args


def test_agent_add_list_disable_enable(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    r = runner.invoke(app, ["agent", "add", "23160006", "--password", "76160006", *d])
    assert r.exit_code == 0, r.output
    assert "added agent 23160006" in r.output
    r = runner.invoke(
        app, ["agent", "add", "boss", "--password", "boss-secret", "--admin", "--max-sessions", "2", *d]
    )
    assert r.exit_code == 0 and "added admin boss" in r.output
    dup = runner.invoke(app, ["agent", "add", "boss", "--password", "boss-secret", *d])
    assert dup.exit_code == 1 and "exists already" in dup.output
    short = runner.invoke(app, ["agent", "add", "x", "--password", "123", *d])
    assert short.exit_code == 1 and "at least 6" in short.output
    listed = runner.invoke(app, ["agent", "list", *d])
    assert listed.exit_code == 0
    assert "23160006" in listed.output and "boss" in listed.output and "000000" in listed.output
    assert "0 / 2" in listed.output
    assert runner.invoke(app, ["agent", "disable", "boss", *d]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["agent", "list", *d]).output
    assert runner.invoke(app, ["agent", "enable", "boss", *d]).exit_code == 0
    missing = runner.invoke(app, ["agent", "disable", "nobody", *d])
    assert missing.exit_code == 1 and "no agent named 'nobody'" in missing.output
    assert "76160006" not in (tmp_path / "kefu.db").read_bytes().decode("latin-1")


class Proc:
    """``kefu server`` in a child process (killed at the end of the test if still running)."""

    running: ClassVar[list[Proc]] = []

    def __init__(self, args: list[str]) -> None:
        self.running.append(self)
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kefu.cli",
            "server",
            "--port",
            "0",
            "--log-level",
            "debug",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await self.proc.stdout.readline()).decode()
        m = re.fullmatch(r"kefu server listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert m is not None, line
        self.url = m.group(1)
        return self.url

    async def stop(self, sig: int) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        async with asyncio.timeout(30):
            _, err = await self.proc.communicate()
        return self.proc.returncode or 0, err.decode()


@pytest.fixture(autouse=True)
async def _no_orphans() -> AsyncIterator[None]:
    yield
    while Proc.running:
        p = Proc.running.pop().proc
        if p is not None and p.returncode is None:
            p.kill()
            await p.wait()


@pytest.fixture
async def proc_args(server_settings: Callable[..., Settings]) -> AsyncIterator[list[str]]:
    yield db_args(server_settings())


async def test_kill_9_mid_session_loses_nothing_acknowledged(proc_args: list[str]) -> None:
    add = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kefu.cli", "agent", "add", "a1", "--password", "secret-1", *proc_args
    )
    assert await add.wait() == 0
    srv = Proc(proc_args)
    url = await srv.start()
    async with httpx.AsyncClient(base_url=url) as c:
        token = (await c.get("/doLogin", params={"name": "a1", "pwd": "secret-1", "returnTo": ""})).json()[
            "token"
        ]
    agent = AgentClient(url.replace("http", "ws") + "/ws/agent", token)
    await agent.connect()
    await agent.skip_history()
    await agent.call("setAgentState", {"state": "idle"})
    v = Visitor(url, "v1", timeout=5.0)
    await v.connect()
    sid = (await v.send_message("m0"))["sessionId"]
    await agent.next_event("sessionAssigned")
    acked = [(await v.send_message(f"m{i}", client_msg_id=f"k{i}"))["messageId"] for i in range(1, 6)]
    seen = v.last_seq
    await srv.stop(signal.SIGKILL)  # no shutdown at all
    await agent.aclose()
    await v.aclose()

    srv2 = Proc(proc_args)
    url2 = await srv2.start()
    # a retry of an acknowledged message after the crash is stored once (same clientMsgId)
    again = Visitor(url2, "v1", visitor_key=v.visitor_key, timeout=5.0)
    again.link.last_seq = seen
    hello = await again.connect()
    assert hello["session"]["sessionId"] == sid
    retry = await again.send_message("m5", client_msg_id="k5")
    assert retry["messageId"] == acked[-1]
    back = AgentClient(url2.replace("http", "ws") + "/ws/agent", token)
    back.link.last_seq = agent.last_seq
    reply = await back.connect()
    assert reply["state"] == "002000"
    async with httpx.AsyncClient(base_url=url2, headers={"Authorization": f"Bearer {token}"}) as c:
        msgs = (await c.get(f"/api/sessions/{sid}/messages")).json()
    assert [m["text"] for m in msgs] == [f"m{i}" for i in range(6)]
    assert [m["messageId"] for m in msgs[1:]] == acked
    await back.aclose()
    await again.aclose()
    code, log = await srv2.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert "Application shutdown complete" in log
    assert "secret-1" not in log and token not in log


async def test_server_prints_its_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    srv = Proc(["--data-dir", str(tmp_path)])
    url = await srv.start()
    async with httpx.AsyncClient(base_url=url) as c:
        r = await c.get("/doLogin", params={"name": "x", "pwd": "guess-pw", "returnTo": ""})
        assert r.status_code == 401
        assert (await c.get("/docs")).status_code == 200
    code, log = await srv.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log
    assert "GET /doLogin 401" in log and "guess-pw" not in log
    assert (tmp_path / "kefu.db").exists()
    assert "stored UNENCRYPTED" in log  # no media key: said at start (issue 17)


def test_server_says_what_to_do_when_the_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = runner.invoke(app, ["server", "--port", str(port), "--data-dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "cannot listen" in r.output and "--port" in r.output


async def test_server_flags_for_the_security_review(tmp_path: Path) -> None:
    """--handshake-timeout cuts a silent connection; --public-name lets that Host in."""
    srv = Proc(
        ["--data-dir", str(tmp_path), "--handshake-timeout", "0.2", "--public-name", "kefu.bank.example"]
    )
    url = await srv.start()
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    async with asyncio.timeout(2.0):  # the default (5 s) would not close it in time
        assert await reader.read() == b""
    writer.close()
    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/api/states", headers={"Host": "kefu.bank.example"})).status_code == 200
        r = await c.get("/api/states", headers={"Host": "evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "host_refused"
    await srv.stop(signal.SIGTERM)


def test_the_media_bounds_are_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: each bound of what a call may store is a flag of `kefu server`."""
    got: list[Settings] = []

    class Stop(Exception):
        pass

    class Runner:  # only catches the settings the flags made; the server itself is tested above
        def __init__(self, s: Settings) -> None:
            got.append(s)

        async def start(self) -> str:
            raise Stop

    monkeypatch.setattr("kefu.server.cli.ServerRunner", Runner)
    flags = {
        "--max-image-bytes": "1000",
        "--max-recording-bytes": "2000",
        "--max-recording-chunk-bytes": "300",
        "--photo-request-ttl": "7.5",
        "--photo-max-open": "1",
    }
    r = runner.invoke(app, ["server", "--data-dir", str(tmp_path), *[x for kv in flags.items() for x in kv]])
    assert isinstance(r.exception, Stop), r.output
    s = got[0]
    assert (s.max_image_bytes, s.max_recording_bytes, s.max_recording_chunk_bytes) == (1000, 2000, 300)
    assert (s.photo_request_ttl, s.photo_max_open) == (7.5, 1)


async def test_server_says_whether_webhook_secrets_are_encrypted(tmp_path: Path) -> None:
    """Issue 21: without a secrets key the server says so at start; with one, that they are
    encrypted; a bad key file stops it with what to do (and never the key's text)."""
    plain = Proc(["--data-dir", str(tmp_path / "a")])
    await plain.start()
    _, log = await plain.stop(signal.SIGTERM)
    assert "webhook secrets are stored unencrypted" in log and "--secrets-key-file" in log
    assert "Task exception was never retrieved" not in log and " ERROR " not in log

    key = tmp_path / "secrets.key"
    key.write_text(bytes(range(32)).hex() + "\n")
    sealed = Proc(["--data-dir", str(tmp_path / "b"), "--secrets-key-file", str(key)])
    await sealed.start()
    assert sealed.proc is not None and sealed.proc.stdout is not None
    lines = [(await sealed.proc.stdout.readline()).decode() for _ in range(2)]
    assert "webhook secrets: encrypted in the database (AES-256-GCM)\n" in lines
    _, log = await sealed.stop(signal.SIGTERM)
    assert "unencrypted" not in log

    key.write_text("not-a-key-at-all")
    r = runner.invoke(app, ["server", "--data-dir", str(tmp_path / "c"), "--secrets-key-file", str(key)])
    assert r.exit_code == 2 and "32 random bytes" in r.output and "not-a-key-at-all" not in r.output


def test_the_media_key_and_retention_are_flags_and_a_bad_key_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: --media-key-file (or $KEFU_MEDIA_KEY), --retention-days; a bad key is refused
    at start without showing it."""
    import base64

    got: list[Settings] = []

    class Stop(Exception):
        pass

    class Runner:
        def __init__(self, s: Settings) -> None:
            got.append(s)

        async def start(self) -> str:
            raise Stop

    monkeypatch.setattr("kefu.server.cli.ServerRunner", Runner)
    monkeypatch.delenv("KEFU_MEDIA_KEY", raising=False)
    current, old = os.urandom(32), os.urandom(32)
    keys = tmp_path / "media.key"
    keys.write_text(f"{base64.b64encode(current).decode()}\n{base64.b64encode(old).decode()}\n")
    d = ["--data-dir", str(tmp_path)]
    r = runner.invoke(app, ["server", *d, "--media-key-file", str(keys), "--retention-days", "90"])
    assert isinstance(r.exception, Stop), r.output
    assert got[0].media_keys == (current, old) and got[0].retention_days == 90.0
    assert current.hex() not in repr(got[0]) and "media_keys" not in repr(got[0])
    monkeypatch.setenv("KEFU_MEDIA_KEY", base64.b64encode(old).decode())
    r = runner.invoke(app, ["server", *d])
    assert isinstance(r.exception, Stop) and got[1].media_keys == (old,)
    monkeypatch.delenv("KEFU_MEDIA_KEY")
    r = runner.invoke(app, ["server", *d])
    assert isinstance(r.exception, Stop) and got[2].media_keys == ()
    bad = base64.b64encode(os.urandom(16)).decode()
    keys.write_text(bad)
    r = runner.invoke(app, ["server", *d, "--media-key-file", str(keys)])
    assert r.exit_code == 2 and "32 bytes" in r.output and bad not in r.output


async def test_a_server_at_debug_level_logs_no_secret_nor_a_failed_statements_values(tmp_path: Path) -> None:
    """`kefu server --log-level debug` logs websockets' frames, httpx-like request lines and a
    failed statement's traceback: the password, the token and the failed row's values are
    in none of them (kefu.logs on the server's handler, hide_parameters on its engine)."""
    password, marker = "pw-" + secrets.token_hex(6), "row-value-" + secrets.token_hex(6)
    add = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kefu.cli",
        "agent",
        "add",
        "a1",
        "--password",
        password,
        "--data-dir",
        str(tmp_path),
    )
    assert await add.wait() == 0
    srv = Proc(["--data-dir", str(tmp_path)])
    url = await srv.start()
    async with httpx.AsyncClient(base_url=url) as c:
        token = (await c.get("/doLogin", params={"name": "a1", "pwd": password, "returnTo": ""})).json()[
            "token"
        ]
        assert (await c.get("/api/me", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    agent = AgentClient(url.replace("http", "ws") + "/ws/agent", token)
    await agent.connect()  # the auth frame carries the token
    # a statement that fails: the database refuses this message's row
    with sqlite3.connect(tmp_path / "kefu.db") as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.text LIKE 'row-value-%' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    v = Visitor(url, "v1", timeout=5.0)
    await v.connect()
    with pytest.raises(RequestFailed) as failed:
        await v.send_message(marker)
    assert failed.value.code == ErrorCode.internal
    await v.aclose()
    await agent.aclose()
    _, log = await srv.stop(signal.SIGTERM)
    assert "> TEXT" in log or "< TEXT" in log  # websockets' frames were logged (their content is not)
    assert "refused by the test" in log and "Traceback" in log  # the failure and its traceback
    # not even a piece: websockets cuts a long frame in the middle and would log the token's tail
    for secret in (password, token, marker):
        assert secret[:8] not in log and secret[-8:] not in log, secret
    assert "SQL parameters hidden" in log
