"""Webhook secrets at rest (issue 21): encrypted in the database when the server has a
secrets key, decrypted only to sign; the sealing itself (kefu.server.atrest) is pure."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kefu.server.atrest import SECRETS_KEY_ENV, SecretBox, SecretUnavailable, load_key, parse_key
from kefu.server.schema import webhooks
from tests.conftest import ServerHandle
from tests.server.test_integrations import SECRET, Receiver, admin_api, boss, check_signed, register, settled

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SETTINGS: dict[str, Any] = {"events_poll": 0.05, "webhook_backoff": 0.01, "webhook_backoff_max": 0.05}

pytestmark = pytest.mark.server_settings(**SETTINGS)


@pytest.fixture
async def receiver() -> Any:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def stored_secret(server: ServerHandle, hook_id: str) -> str:
    async with server.services.store.read() as conn:
        value: str = (
            await conn.execute(select(webhooks.c.secret).where(webhooks.c.id == hook_id))
        ).scalar_one()
    return value


async def one_delivery(server: ServerHandle, receiver: Receiver, name: str) -> None:
    """Something happens (an agent logs in); its event reaches the receiver, signed with SECRET."""
    before = len(receiver.got)
    await server.agent(name)
    await settled(server)
    await receiver.until(lambda r: len(r.got) > before)
    for headers, body in receiver.got[before:]:
        check_signed(headers, body)


@pytest.mark.server_settings(secrets_key=KEY, **SETTINGS)
async def test_with_a_key_the_row_holds_no_plaintext_secret_and_deliveries_are_signed(
    server: ServerHandle, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await boss(server)
    hook = await register(server, token, receiver.url)
    stored = await stored_secret(server, hook)
    assert SECRET not in stored and stored.startswith("aesgcm1:")
    assert SECRET.encode() not in base64.urlsafe_b64decode(stored[8:] + "=" * (-len(stored[8:]) % 4))
    assert SecretBox(KEY).open(stored, hook) == SECRET
    async with admin_api(server, token) as c:
        shown = (await c.get(f"/api/webhooks/{hook}")).json()
    assert "secret" not in shown or shown["secret"] is None
    await one_delivery(server, receiver, "a1")  # decrypted to sign: the receiver verifies it
    assert SECRET not in caplog.text and stored not in caplog.text


async def test_a_secret_stored_without_a_key_is_sealed_when_the_server_starts_with_one(
    server: ServerHandle, receiver: Receiver
) -> None:
    token = await boss(server)
    hook = await register(server, token, receiver.url)
    assert await stored_secret(server, hook) == SECRET  # no key: as given (the server says so at start)
    await one_delivery(server, receiver, "a1")
    await server.restart(secrets_key=KEY)
    stored = await stored_secret(server, hook)
    assert SECRET not in stored and SecretBox(KEY).open(stored, hook) == SECRET
    await one_delivery(server, receiver, "a2")


async def test_a_server_with_another_key_says_so_and_sends_nothing_unsigned(
    server: ServerHandle, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await server.restart(secrets_key=KEY)
    token = await boss(server)
    hook = await register(server, token, receiver.url)
    caplog.set_level(logging.INFO)
    await server.restart(secrets_key=OTHER_KEY)
    said = [r for r in caplog.records if r.levelno == logging.ERROR and hook in r.getMessage()]
    assert said and "secrets key" in said[0].getMessage()
    caplog.clear()
    await server.agent("a1")
    await settled(server)
    token = await server.login("boss")
    async with admin_api(server, token) as c, asyncio.timeout(10):
        while True:  # until the first attempt is recorded
            pending = (await c.get(f"/api/webhooks/{hook}/deliveries", params={"status": "pending"})).json()
            if pending and pending[0]["attempts"] >= 1:
                break
            await server.services.webhooks.journal.wait(server.services.webhooks.journal.top, 0.05)
    assert "does not open" in pending[0]["lastError"]
    assert receiver.got == []  # nothing sent with a wrong or missing signature
    assert SECRET not in caplog.text


# --- the sealing itself (no I/O)


def test_a_sealed_secret_opens_only_with_its_key_in_its_row() -> None:
    box = SecretBox(KEY)
    sealed = box.seal("s3cret-value-0123", "hook1")
    assert sealed != box.seal("s3cret-value-0123", "hook1")  # a fresh nonce each time
    assert box.open(sealed, "hook1") == "s3cret-value-0123"
    with pytest.raises(SecretUnavailable):
        box.open(sealed, "hook2")  # copied to another row
    with pytest.raises(SecretUnavailable):
        SecretBox(OTHER_KEY).open(sealed, "hook1")
    with pytest.raises(SecretUnavailable):
        SecretBox(None).open(sealed, "hook1")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretUnavailable):
        box.open(tampered, "hook1")
    assert box.open("plain-old-secret-1", "hook1") == "plain-old-secret-1"  # stored before the key
    assert SecretBox(None).seal("x" * 16, "hook1") == "x" * 16


def test_the_key_is_32_bytes_in_base64_or_hex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_key(base64.b64encode(KEY).decode()) == KEY
    assert parse_key(base64.urlsafe_b64encode(KEY).decode().rstrip("=") + "\n") == KEY
    assert parse_key(KEY.hex()) == KEY
    for bad in ("", "short", base64.b64encode(KEY[:16]).decode(), "z" * 64):
        with pytest.raises(ValueError, match="32 random bytes"):
            parse_key(bad)
    path = tmp_path / "key"
    path.write_text(KEY.hex())
    monkeypatch.delenv(SECRETS_KEY_ENV, raising=False)
    assert load_key(path) == KEY and load_key(None) is None
    monkeypatch.setenv(SECRETS_KEY_ENV, base64.b64encode(OTHER_KEY).decode())
    assert load_key(None) == OTHER_KEY
    with pytest.raises(ValueError, match="cannot read"):
        load_key(tmp_path / "missing")
