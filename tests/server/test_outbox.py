"""The outbox on its own: a fake socket and a fake hub, no server.

What it keeps: replies and pushes leave in order, one at a time; pushes in
``seq`` order (a gap is read from the hub, a duplicate dropped); a reader too
slow for ``limit`` queued messages is closed with 1008; after the close or a
failed send nothing more is sent. What it saves: an idle outbox holds no
queue, no task and (one node) no timer.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from kefu.server.hub import Push
from kefu.server.outbox import CLOSE_POLICY, Outbox

R = "v:1"


class FakeSocket:
    """Records what is sent; ``gate`` (cleared) holds every send until it is set."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: BaseException | None = None
        self.changed = asyncio.Event()
        self.sending = asyncio.Event()  # a send has begun

    async def send_text(self, text: str) -> None:
        self.sending.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append(text)
        self.changed.set()

    async def close(self, code: int, reason: str) -> None:
        await self.gate.wait()
        self.closed = (code, reason)
        self.changed.set()

    async def until(self, done: Any) -> None:
        while not done():
            self.changed.clear()
            await self.changed.wait()


class FakeHub:
    """The stored pushes of one recipient."""

    def __init__(self, *texts: str) -> None:
        self.stored = [Push(R, n, t) for n, t in enumerate(texts, 1)]

    async def pushes_after(self, recipient: str, after: int, limit: int = 500) -> list[Push]:
        return [p for p in self.stored if p.recipient == recipient and p.seq > after][:limit]

    async def latest_seq(self, recipient: str) -> int:
        return max((p.seq for p in self.stored if p.recipient == recipient), default=0)


def outbox(ws: FakeSocket, hub: FakeHub | None = None, *, limit: int = 100) -> Outbox:
    services: Any = SimpleNamespace(hub=hub or FakeHub())
    box = Outbox(ws, services, limit)
    box.recipient = R
    box.start()
    return box


def idle(box: Outbox) -> bool:
    return box._task is None and box._items is None


async def sent_all(box: Outbox) -> None:
    """Until the sending task has sent what is queued and ended."""
    task = box._task
    assert task is not None
    await task


async def test_an_idle_outbox_holds_no_queue_and_no_task() -> None:
    ws = FakeSocket()
    box = outbox(ws)
    assert idle(box)
    box.reply({"n": 1})
    await sent_all(box)
    assert idle(box)
    box.reply({"n": 2})  # a new burst: a new task
    await sent_all(box)
    assert ws.sent == ['{"n":1}', '{"n":2}']
    await box.stop()
    assert idle(box)


async def test_replies_and_pushes_leave_in_order_and_pushes_in_seq_order() -> None:
    ws = FakeSocket()
    hub = FakeHub("p1", "p2", "p3", "p4")
    box = outbox(ws, hub)
    ws.gate.clear()  # a send in flight while the rest is queued
    box.reply({"r": "a"})
    box.offer(hub.stored[0])
    box.offer(hub.stored[2])  # p2 is missing: read from the hub first
    box.offer(hub.stored[1])  # sent already by then: dropped
    box.reply({"r": "b"})
    box.offer(hub.stored[3])
    ws.gate.set()
    await ws.until(lambda: len(ws.sent) == 6)
    assert ws.sent == ['{"r":"a"}', "p1", "p2", "p3", '{"r":"b"}', "p4"]
    assert box.last_sent == 4
    box.catch_up()  # nothing new stored: nothing sent
    box.reply({"r": "c"})
    await ws.until(lambda: len(ws.sent) == 7)
    assert ws.sent[-1] == '{"r":"c"}'
    await box.stop()


async def test_a_reader_too_slow_for_the_limit_is_closed_with_1008(caplog: pytest.LogCaptureFixture) -> None:
    ws = FakeSocket()
    box = outbox(ws, limit=3)
    ws.gate.clear()
    box.reply({"n": 0})  # taken by the task, its send held
    await ws.sending.wait()
    for n in range(1, 4):
        box.reply({"n": n})  # the queue is full
    assert not box.closing
    with caplog.at_level(logging.WARNING, logger="kefu.server.connection"):
        box.reply({"n": 4})  # one too many
    assert box.closing
    assert "reads too slowly" in caplog.text
    box.reply({"n": 5})  # closing: dropped
    ws.gate.set()
    await sent_all(box)
    assert ws.closed == (CLOSE_POLICY, "too slow")
    assert ws.sent == ['{"n":0}', '{"n":1}', '{"n":2}', '{"n":3}']
    assert idle(box)
    await box.stop()


async def test_close_is_the_last_thing_sent() -> None:
    ws = FakeSocket()
    box = outbox(ws)
    box.reply({"n": 1})
    box.close(4001, "replaced")
    box.reply({"n": 2})
    await sent_all(box)
    assert ws.sent == ['{"n":1}'] and ws.closed == (4001, "replaced")
    assert idle(box)


async def test_after_a_failed_send_nothing_more_is_sent() -> None:
    ws = FakeSocket()
    ws.fail = WebSocketDisconnect(1006)
    box = outbox(ws)
    box.reply({"n": 1})
    await sent_all(box)
    assert idle(box)
    ws.fail = None
    box.reply({"n": 2})  # the socket is gone: dropped, no new task
    assert idle(box) and ws.sent == []


async def test_a_check_sends_pushes_lost_on_the_bus_and_an_idle_outbox_never_looks() -> None:
    ws = FakeSocket()
    hub = FakeHub("p1", "p2")  # stored, never offered (lost on the bus)
    box = outbox(ws, hub)
    assert idle(box)  # idle: no timer, no task, no query
    box.check(2)  # the hub's look after the bus noticed a loss
    await sent_all(box)
    assert ws.sent == ["p1", "p2"] and box.last_sent == 2
    box.check(2)  # up to date: nothing queued
    assert idle(box)
    await box.stop()


async def test_stop_cancels_a_send_in_flight() -> None:
    ws = FakeSocket()
    box = outbox(ws)
    ws.gate.clear()
    box.reply({"n": 1})
    await ws.sending.wait()
    await box.stop()
    assert box.closing and idle(box)
    box.reply({"n": 2})  # stopped: dropped
    ws.gate.set()
    assert idle(box) and ws.sent == []


async def test_a_held_outbox_sends_its_replies_from_the_reader_and_pushes_do_not_wait() -> None:
    """D43: the replies of a frame cost no task; a push meanwhile starts one as before."""
    ws = FakeSocket()
    hub = FakeHub("p1")
    box = outbox(ws, hub)
    box.hold()  # the reader handles a frame
    box.reply({"r": "a"})
    box.reply({"r": "b"})
    assert box._task is None and ws.sent == []  # queued for the reader, no task
    await box.flush()  # after the frame, in the reader's own task
    assert ws.sent == ['{"r":"a"}', '{"r":"b"}'] and idle(box)

    box.hold()
    box.reply({"r": "c"})
    ws.gate.clear()
    box.offer(hub.stored[0])  # a push from another connection: it does not wait for the frame
    assert box._task is not None
    await box.flush()  # the task sends both, in order; the reader has nothing left to do
    ws.gate.set()
    await sent_all(box)
    assert ws.sent[2:] == ['{"r":"c"}', "p1"] and idle(box)

    box.hold()
    box.release()  # the frame failed: the next reply starts a task again
    box.reply({"r": "d"})
    await sent_all(box)
    assert ws.sent[-1] == '{"r":"d"}'
    await box.stop()
