"""A push for a recipient held on its own node is not published; the node hands the
recipient's last ``seq`` over when another node may hold it (D84).

Real Redis, two buses of one prefix; the connections are recording sinks.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from kefu.server.hub import Push
from kefu.server.redisbus import RedisBus, frame_messages, header

from .conftest import REDIS_URL

pytestmark = pytest.mark.skipif(REDIS_URL is None, reason="needs KEFU_TEST_REDIS_URL")


class _Conn:
    """A connection: what it was offered, told to check, and whether it was replaced."""

    def __init__(self) -> None:
        self.got: list[int] = []
        self.checks: list[int] = []
        self.was_replaced = False
        self._changed = asyncio.Event()

    def offer(self, push: Push) -> None:
        self.got.append(push.seq)
        self._changed.set()

    def reply(self, msg: dict[str, Any]) -> None:
        raise AssertionError(msg)

    def check(self, latest: int) -> None:
        self.checks.append(latest)
        self._changed.set()

    def replaced(self) -> None:
        self.was_replaced = True

    async def until(self, what: str, want: list[int]) -> None:
        while getattr(self, what) != want:  # the test's timeout bounds it
            self._changed.clear()
            await self._changed.wait()


class _Rig:
    def __init__(self) -> None:
        assert REDIS_URL is not None
        self.prefix = f"kefu-test-{uuid.uuid4().hex[:12]}:"
        self.a = RedisBus(REDIS_URL, node_id="a", prefix=self.prefix)
        self.b = RedisBus(REDIS_URL, node_id="b", prefix=self.prefix)
        self.watch = aioredis.from_url(REDIS_URL)
        self.pubsub: Any = self.watch.pubsub()
        self.heard: list[dict[str, Any]] = []  # every message of node a on the channel

    async def start(self) -> None:
        await self.pubsub.subscribe(f"{self.prefix}bus")
        await self.a.start()
        await self.b.start()

    async def a_sent_until_queue_mark(self) -> list[dict[str, Any]]:
        """What node a published up to now: it marks the end with a ``queue`` message."""
        self.a.queue_changed()
        await self.a.flush()
        out: list[dict[str, Any]] = []
        async for m in self.pubsub.listen():  # the test's timeout bounds it
            if m["type"] != "message":
                continue
            node, msgs = frame_messages(m["data"])
            if node != "a":
                continue
            for x in msgs:
                if x["k"] == "queue":
                    return out
                out.append(x)
        raise AssertionError("the channel ended")

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()
        await self.pubsub.aclose()
        await self.watch.aclose()


@pytest.fixture
async def rig() -> AsyncIterator[_Rig]:
    r = _Rig()
    await r.start()
    try:
        yield r
    finally:
        await r.close()


def _push(seq: int) -> Push:
    return Push("v:x", seq, json.dumps({"seq": seq}))


async def test_a_push_to_a_recipient_held_here_is_not_published_and_is_handed_over_when_it_moves(
    rig: _Rig,
) -> None:
    old, new = _Conn(), _Conn()
    rig.a.attach("v:x", old)
    await rig.a.publish_many([_push(1), _push(2)])
    assert old.got == [1, 2]
    assert await rig.a_sent_until_queue_mark() == []  # nothing published: nobody else wants it

    await rig.b.announce("v:x")  # the visitor is back, on node b
    rig.b.attach("v:x", new)
    await new.until("checks", [2])  # a handed over what its connection was given: b reads the rest
    assert old.was_replaced and new.got == []
    sent = await rig.a_sent_until_queue_mark()
    assert [(x["k"], x["r"], x["s"]) for x in sent] == [("seq", "v:x", 2)]

    await rig.a.publish_many([_push(3)])  # a commits another: no connection here, so published
    await new.until("got", [3])
    assert rig.a.losses == rig.b.losses == 0


async def test_a_connection_closing_hands_over_its_last_unpublished_push(rig: _Rig) -> None:
    old, new = _Conn(), _Conn()
    rig.a.attach("v:x", old)
    rig.b.attach("v:x", new)  # (its announce not heard yet by a)
    await rig.a.publish_many([_push(5)])
    assert old.got == [5] and new.got == []
    rig.a.detach("v:x", old)  # the old connection closes
    await new.until("checks", [5])
    rig.a.attach("v:y", _Conn())
    rig.a.detach("v:y", rig.a.local_sink("v:y"))  # type: ignore[arg-type]
    sent = await rig.a_sent_until_queue_mark()
    assert [(x["k"], x["r"]) for x in sent] == [("seq", "v:x")]  # nothing given to v:y: no hand-over


async def test_after_a_loss_a_recipient_is_handed_over_and_its_pushes_are_published(rig: _Rig) -> None:
    old, new = _Conn(), _Conn()
    rig.a.attach("v:x", old)
    rig.b.attach("v:x", new)  # b's announce was lost on the way to a
    await rig.a.publish_many([_push(1)])
    assert new.checks == [] and new.got == []
    # a hears node z skip a number: a message was lost, maybe an attach of v:x
    for no in (1, 3):
        msg = {"k": "queue", "n": "z", "i": "run-z", "c": no}
        await rig.watch.publish(f"{rig.prefix}bus", header("z") + json.dumps(msg).encode())
    await new.until("checks", [1])
    assert rig.a.losses == 1
    await rig.a.publish_many([_push(2)])  # published now, and still given to a's connection
    await new.until("got", [2])
    assert old.got == [1, 2]
