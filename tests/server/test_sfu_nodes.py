"""The SFU messages between nodes (server/sfu_nodes.py) on the real Redis: a signal asked of
the room's node gets that node's answer, errors included; one call's messages run in
order; a node that is gone is said so at once (nobody heard the PUBLISH)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping

import pytest

from kefu.protocol import ApiError, ErrorCode
from kefu.server.sfu_nodes import SfuNodes
from tests.conftest import REDIS_URL

Member = tuple[str, str]


class Owner:
    """What the room's node does with what it is handed (recorded; ``bad`` data refused)."""

    def __init__(self) -> None:
        self.done: list[tuple[str, object]] = []
        self.changed = asyncio.Event()
        self.gate = asyncio.Event()  # a "gated" signal waits for it (a Janus request taking its time)

    async def signal(self, call_id: str, me: Member, joined: list[Member], data: object) -> None:
        if data == "bad":
            raise ApiError("data: not a signal", code=ErrorCode.invalid_field)
        if data == "gated":
            self.done.append(("started", call_id))
            self.changed.set()
            await self.gate.wait()
        self.done.append(("signal", (call_id, me, joined, data)))
        self.changed.set()

    def sync(
        self,
        call_id: str,
        joined: list[Member],
        ended: bool,
        audience: Mapping[Member, frozenset[str]] | None,
    ) -> None:
        self.done.append(("sync", (call_id, joined, ended, dict(audience or {}))))
        self.changed.set()

    def ended(self, call_id: str) -> None:
        self.done.append(("ended", call_id))
        self.changed.set()

    async def wait(self, n: int) -> None:
        while len(self.done) < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5.0)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SfuNodes, SfuNodes, Owner]]:
    if not REDIS_URL:
        pytest.skip("needs KEFU_TEST_REDIS_URL (.ci/run sets it)")
    prefix = f"kefu-test-{uuid.uuid4().hex[:12]}:"
    owner = Owner()
    nodes = [
        SfuNodes(
            REDIS_URL,
            prefix=prefix,
            node_id=node,
            timeout=2.0,
            signal=owner.signal,
            sync=owner.sync,
            ended=owner.ended,
        )
        for node in ("1", "2")
    ]
    for n in nodes:
        await n.start()
    try:
        yield nodes[0], nodes[1], owner
    finally:
        for n in nodes:
            await n.aclose()  # pub/sub only: no key left in Redis


async def test_a_signal_is_run_by_the_rooms_node_and_answered(pair: tuple[SfuNodes, SfuNodes, Owner]) -> None:
    _one, two, owner = pair
    await two.signal("1", "c1", ("visitor", "v1"), [("agent", "a1"), ("visitor", "v1")], {"type": "offer"})
    assert owner.done == [
        ("signal", ("c1", ("visitor", "v1"), [("agent", "a1"), ("visitor", "v1")], {"type": "offer"}))
    ]
    # the room's node's error comes back as it is
    with pytest.raises(ApiError) as refused:
        await two.signal("1", "c1", ("visitor", "v1"), [], "bad")
    assert (refused.value.code, refused.value.msg) == (ErrorCode.invalid_field, "data: not a signal")


async def test_one_calls_messages_run_in_order(pair: tuple[SfuNodes, SfuNodes, Owner]) -> None:
    _one, two, owner = pair
    first = asyncio.ensure_future(two.signal("1", "c1", ("agent", "a1"), [], "gated"))
    await owner.wait(1)  # the signal is being run on node 1
    assert await two.tell(
        "1", "sync", "c1", joined=[["agent", "a1"]], ended=False, audience=[["agent", "s1", ["a1"]]]
    )
    assert await two.tell("1", "ended", "c1")
    owner.gate.set()
    await first
    await owner.wait(4)
    assert [kind for kind, _ in owner.done] == ["started", "signal", "sync", "ended"]
    assert owner.done[2] == ("sync", ("c1", [("agent", "a1")], False, {("agent", "s1"): frozenset({"a1"})}))


async def test_a_node_that_is_gone_is_said_so(pair: tuple[SfuNodes, SfuNodes, Owner]) -> None:
    _one, two, owner = pair
    with pytest.raises(ApiError) as gone:
        await two.signal("3", "c1", ("visitor", "v1"), [], {"type": "offer"})
    assert gone.value.code is ErrorCode.media_server_unavailable
    assert await two.tell("3", "ended", "c1") is False
    assert owner.done == []
