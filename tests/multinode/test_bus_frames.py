"""The bus sends what was queued since its last send in one ``PUBLISH`` (D53).

A group-commit batch hands the bus its pushes at once; they reach Redis as one
message (a JSON array) and the other nodes' connections get each of them, in
order, with nothing noticed as lost. Real Redis, two buses of one prefix.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from kefu.server.hub import Push
from kefu.server.redisbus import PUBLISH_MAX, RedisBus, frame_messages, header

from .conftest import REDIS_URL

pytestmark = pytest.mark.skipif(REDIS_URL is None, reason="needs KEFU_TEST_REDIS_URL")


class _Sink:
    def __init__(self, want: int) -> None:
        self.got: list[int] = []
        self.want = want
        self.all = asyncio.Event()

    def offer(self, push: Push) -> None:
        self.got.append(push.seq)
        if len(self.got) >= self.want:
            self.all.set()

    def reply(self, msg: dict[str, Any]) -> None:
        raise AssertionError(msg)

    def check(self, latest: int) -> None:
        raise AssertionError(latest)


async def _frames(pubsub: Any, until: int) -> list[Any]:
    """What the channel carried, one entry per PUBLISH, until ``until`` pushes were seen."""
    frames: list[Any] = []
    pushes = 0
    async for m in pubsub.listen():  # the test's timeout bounds it
        if m["type"] != "message":
            continue
        _, got = frame_messages(m["data"])
        frames.append(got)
        pushes += sum(1 for x in got if x["k"] == "push")
        if pushes >= until:
            return frames


@pytest.mark.parametrize("n", [1, 50, PUBLISH_MAX + 3])
async def test_a_batch_of_pushes_is_one_publish_and_each_arrives_once(n: int) -> None:
    assert REDIS_URL is not None
    prefix = f"kefu-test-{uuid.uuid4().hex[:12]}:"
    a = RedisBus(REDIS_URL, node_id="a", prefix=prefix)
    b = RedisBus(REDIS_URL, node_id="b", prefix=prefix)
    watch = aioredis.from_url(REDIS_URL)
    pubsub: Any = watch.pubsub()
    await pubsub.subscribe(f"{prefix}bus")
    await a.start()
    await b.start()
    try:
        sink = _Sink(n)
        b.attach("v:x", sink)
        frames = asyncio.create_task(_frames(pubsub, n))
        await a.publish_many([Push("v:x", s, f'{{"seq":{s}}}') for s in range(1, n + 1)])
        await asyncio.wait_for(sink.all.wait(), 10)
        seen = await asyncio.wait_for(frames, 10)
        assert sink.got == list(range(1, n + 1))  # each once, in order
        publishes = [f for f in seen if any(x["k"] == "push" for x in f)]
        assert len(publishes) == -(-n // PUBLISH_MAX)  # one PUBLISH per PUBLISH_MAX pushes
        assert b.losses == 0 and a.publish_failures == 0
    finally:
        await a.close()
        await b.close()
        await pubsub.aclose()
        await watch.aclose()


async def test_a_frame_names_its_node_which_drops_its_own_unread_and_old_frames_are_still_heard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert REDIS_URL is not None
    prefix = f"kefu-test-{uuid.uuid4().hex[:12]}:"
    channel = f"{prefix}bus"
    a = RedisBus(REDIS_URL, node_id="a", prefix=prefix)
    b = RedisBus(REDIS_URL, node_id="b", prefix=prefix)
    watch = aioredis.from_url(REDIS_URL)
    pubsub: Any = watch.pubsub()
    await pubsub.subscribe(channel)
    await a.start()
    await b.start()
    try:
        sink = _Sink(2)
        b.attach("v:x", sink)
        await a.publish_many([Push("v:x", 1, '{"seq":1}')])
        async for m in pubsub.listen():  # the test's timeout bounds it
            if m["type"] == "message" and frame_messages(m["data"])[1][0]["k"] == "push":
                break
        assert m["data"].startswith(header("a"))  # the sender's id, then a newline (D81)
        node, msgs = frame_messages(m["data"])
        assert node == "a" and [(x["r"], x["s"]) for x in msgs] == [("v:x", 1)]
        await a.close()  # b alone reads what follows
        # b drops a frame with its own header unread: not JSON after it, and no warning
        await watch.publish(channel, header("b") + b"{not json")
        # a frame without a header (a node before D81) is still heard
        old = {"k": "push", "n": "z", "r": "v:x", "s": 2, "t": '{"seq":2}', "i": "run-z", "c": 1}
        await watch.publish(channel, json.dumps(old))
        await asyncio.wait_for(sink.all.wait(), 10)  # after the bad frame: one connection, in order
        assert sink.got == [1, 2]
        assert not [r for r in caplog.records if "bad message" in r.getMessage()]
        with pytest.raises(ValueError):
            frame_messages(b'"a"\n{not json')
    finally:
        await a.close()  # (again: a no-op)
        await b.close()
        await pubsub.aclose()
        await watch.aclose()
