"""A server that stops leaves no task of its own behind (src/kefu/server/tasks.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.server.test_calls import state, visitor


def kefu_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("kefu-") and not t.done()}


@pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.01)
async def test_a_stopped_server_leaves_no_grace_or_timer_running(
    server: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member's grace that fired and is still at work when the server stops is
    cancelled and awaited before the store closes: nothing outlives the server,
    nothing is logged at ERROR (before: the task ran on after the store closed and
    failed with "the store is not open", never retrieved)."""
    caplog.set_level(logging.ERROR)
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(agent, "003001")
    await state(agent, "006011")
    # a second call ringing: its ringing timer is pending when the server stops
    await visitor(server, "v2")
    reply = await agent.call("videoInviteVisitor", {"visitorName": "v2"})
    assert reply["subMark"] == "inviteSuccess", reply
    assert any(t.get_name().startswith("kefu-ring-") for t in kefu_tasks())

    bus = server.services.hub.bus
    present = bus.present
    at_work: list[asyncio.Task[Any]] = []
    entered = asyncio.Event()
    answer = asyncio.Event()  # the query of the grace answers only after the server stopped

    async def slow_present(recipient: str) -> bool:
        task = asyncio.current_task()
        assert task is not None
        at_work.append(task)
        entered.set()
        await answer.wait()
        result: bool = await present(recipient)
        return result

    monkeypatch.setattr(bus, "present", slow_present)
    v.abort()  # the visitor's connection dies: its grace starts, fires, asks whether it is back
    await entered.wait()
    assert at_work[0].get_name() == "kefu-call-grace-v1"
    try:
        await server.stop()
        assert kefu_tasks() == set()
        assert all(t.done() for t in at_work)
    finally:
        answer.set()
        await asyncio.gather(*at_work, return_exceptions=True)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
