"""No secret in the plugin's log, and its folder the user's alone (reliability §1.4).

A real login through a real plugin, logged at DEBUG (httpx, httpcore and
websockets log what they send at that level): neither the password, nor the
agent's login token, nor the pairing token reaches a log line — in the
plugin's own handler, and in ``plugin.log`` when ``IMClient.startup`` started
the plugin. The folder is 0700 and its files 0600, also when they existed
before with wider modes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kefu.logs import MASK, RedactingFilter, configure_logging, redact_secrets
from kefu.paths import private_dir
from kefu.sdk import IMClient
from kefu.server.auth import token_hash
from kefu.server.schema import tokens

from .harness import LIMIT, PASSWORD, PluginFactory, Raw, ServerHandle, wait_for

#: The shape of a login token and of the pairing token (``secrets.token_urlsafe(32)``).
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_redact_secrets_masks_every_form_of_a_secret() -> None:
    cases = {
        "GET http://h/doLogin?name=a1&pwd=76160006&returnTo=": "GET http://h/doLogin?name=a1&pwd=***&returnTo=",
        '> TEXT \'{"mark":"auth","params":{"token":"abc-123","lastSeq":0}}\'': (
            '> TEXT \'{"mark":"auth","params":{"token":"***","lastSeq":0}}\''
        ),
        '> TEXT \'{"params":{"token":"abcdefgh...': '> TEXT \'{"params":{"token":"***"',  # cut short
        "{'password': 'x\\'y', 'name': 'a1'}": "{'password': '***', 'name': 'a1'}",
        '{"iceCredential": "turnpw"}': '{"iceCredential": "***"}',
        "Authorization: Bearer abc.def": "Authorization: ***",
        "sent bearer abc.def to": "sent bearer *** to",
        "credential=c1&username=u": "credential=***&username=u",
        "PWD%3Dx": "PWD%3D***",
        '> TEXT \'{"mark":"auth","params":{"token...OWzQMBxk"}}\' [108 bytes]': (
            "> TEXT (content not logged) [108 bytes]"
        ),
        "< BINARY 00 01 02 [3 bytes, continued]": "< BINARY (content not logged) [3 bytes, continued]",
    }
    for text, expected in cases.items():
        assert redact_secrets(text) == expected, text
    assert redact_secrets("state 001000 for a1, lastSeq 3") == "state 001000 for a1, lastSeq 3"


def test_redaction_is_linear_in_the_lines_length() -> None:
    # a pattern that may start anywhere inside a long name takes seconds per 10 kB (quadratic);
    # these take milliseconds: the bound is only against that
    for line in ("a" * 200_000, "ab-" * 70_000, '"a":' * 50_000, "x=" * 100_000, "bearer " * 30_000):
        started = time.perf_counter()
        redact_secrets(line)
        assert time.perf_counter() - started < 2.0


def test_the_filter_redacts_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.privacy")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetching %s", "http://h/doLogin?pwd=hunter2")
        try:
            raise ValueError("bad url http://h/doLogin?name=a&pwd=hunter2")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = out.getvalue()
    assert "hunter2" not in text
    assert text.count(f"pwd={MASK}") >= 2 and "ValueError" in text


async def login_tokens(server: ServerHandle) -> set[str]:
    """The hashes of every login token the server gave."""
    async with server.services.store.read() as conn:
        return {row.token_hash for row in await conn.execute(select(tokens.c.token_hash))}


async def assert_no_secret(text: str, server: ServerHandle, pairing: str) -> None:
    assert PASSWORD not in text
    assert pairing not in text
    issued = await login_tokens(server)
    assert issued, "the login gave no token"
    leaked = [t for t in TOKEN_SHAPE.findall(text) if token_hash(t) in issued]
    assert leaked == []


async def test_a_login_at_debug_level_logs_no_secret(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    out = io.StringIO()
    # the handler `kefu plugin` logs with (taken off again after the test: tests/conftest.py)
    configure_logging("debug", out)
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:  # hello with the pairing token
        reply = await raw.call("L", "startLogin", {"data": {"url": kefu_server.login_url("a1")}})
        assert reply["subMark"] == "success"
        assert (await raw.call("s", "getState"))["subMark"] == "success"
        assert plugin.link is not None
        login_token = plugin.link.token
    text = out.getvalue()
    # the lines that carried the secrets were written, masked
    assert "HTTP Request: POST" in text and "/api/login" in text
    # websockets logged the frames (hello, startLogin, auth), without their content
    assert re.search(r"websockets\.client: > TEXT \(content not logged\) \[\d+ bytes\]", text)
    assert re.search(r"websockets\.server: < TEXT \(content not logged\) \[\d+ bytes\]", text)
    assert login_token not in text
    await assert_no_secret(text, kefu_server, plugin.token._value)


async def test_the_plugin_makes_an_existing_folder_private(
    kefu_server: ServerHandle, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "wide"
    (folder / "recordings").mkdir(parents=True)
    folder.chmod(0o755)
    (folder / "recordings").chmod(0o755)
    (folder / "plugin.log").write_text("an earlier run\n")
    (folder / "plugin.log").chmod(0o644)
    (folder / "recordings" / "c1.webm").write_bytes(b"\x1a\x45")
    (folder / "recordings" / "c1.webm").chmod(0o644)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the plugin's")
    outside.chmod(0o644)
    (folder / "link").symlink_to(outside)
    plugin = await plugin_factory(kefu_server.url, data_dir=folder)
    assert mode(folder) == 0o700 and mode(folder / "recordings") == 0o700
    assert mode(folder / "plugin.log") == 0o600 and mode(folder / "recordings" / "c1.webm") == 0o600
    assert mode(plugin.settings.token_path) == 0o600
    assert mode(outside) == 0o644  # a link out of the folder is not followed
    path = plugin.media.recording_path("c2") if plugin.media is not None else None
    assert path is not None and mode(path) == 0o600


def test_private_dir_makes_a_missing_folder_private(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and mode(folder) == 0o700


async def test_startup_writes_no_secret_to_plugin_log_and_keeps_the_folder_private(
    kefu_server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kefu_server.add_agent("a1")
    folder = tmp_path / "plugin"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    log_file = folder / "plugin.log"
    log_file.write_text("an earlier run\n")
    log_file.chmod(0o644)
    monkeypatch.setenv("KEFU_PLUGIN_LOG_LEVEL", "debug")  # the plugin's most talkative level
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client = IMClient(
        {
            "baseWsUrl": f"ws://127.0.0.1:{port}",
            "ssoTo": f"{kefu_server.url}/agent",
            "dataDir": str(folder),
            "startupTimeout": 60,
            "kefuReady": lambda data: ready.done() or ready.set_result(data),
        }
    )
    pairing = ""
    try:
        started = await client.startup({"clientUrl": "pocprotocol://"})
        assert started["subMark"] == "success"
        assert mode(folder) == 0o700 and mode(log_file) == 0o600
        pairing = (folder / "plugin.token").read_text().strip()
        login = await client.startLogin({"data": {"url": kefu_server.login_url("a1")}})
        assert login["subMark"] == "success", login
        await wait_for(ready)
        quit_reply = await client.quit()
        assert quit_reply["subMark"] == "success"
        proc = client.plugin_process
        assert proc is not None
        assert await wait_for(asyncio.to_thread(proc.wait, LIMIT)) == 0
    finally:
        if client.plugin_process is not None and client.plugin_process.poll() is None:
            client.plugin_process.kill()
            client.plugin_process.wait(30)
        await client.aclose()
    text = log_file.read_text()
    assert text.startswith("an earlier run\n")
    assert "HTTP Request: POST" in text and "> TEXT (content not logged)" in text
    await assert_no_secret(text, kefu_server, pairing)
    assert mode(folder) == 0o700 and mode(log_file) == 0o600
