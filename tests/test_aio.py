"""The event loop of kefu's processes: uvloop unless asked otherwise (issue 18)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop
from typer.testing import CliRunner

from kefu import aio
from kefu.cli import app


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_is_the_default_and_asyncio_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEFU_LOOP", raising=False)
    assert aio.run(_loop_type()) is uvloop.Loop
    assert not issubclass(aio.run(_loop_type(), loop="asyncio"), uvloop.Loop)
    monkeypatch.setenv("KEFU_LOOP", "asyncio")
    assert not issubclass(aio.run(_loop_type()), uvloop.Loop)
    assert aio.run(_loop_type(), loop="uvloop") is uvloop.Loop


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of uvloop, asyncio"):
        aio.loop_name("tokio")


def test_the_server_refuses_an_unknown_loop(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["server", "--port", "0", "--data-dir", str(tmp_path), "--loop", "tokio"])
    assert r.exit_code == 2 and "use one of uvloop, asyncio" in r.output


def test_a_loop_for_a_thread_is_uvloop_unless_asked_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synchronous IMClient runs its own loop in a thread (kefu.sdk.imclient)."""
    monkeypatch.delenv("KEFU_LOOP", raising=False)
    loop = aio.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(_loop_type()) is uvloop.Loop
    finally:
        loop.close()
    monkeypatch.setenv("KEFU_LOOP", "asyncio")
    loop = aio.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
