"""Done-when of issue 16 (the network): calls across the bank's three
networks (tests/netns/topology.py). The agent's PC and the visitors reach
only the data centre, so the media can only flow through coturn there, with
the credentials the kefu server issued.

Each member sends its own test-pattern colour (``kefu.media.colour_for``):
who receives whom is checked by the frames' content."""

from __future__ import annotations

import base64
import io
import sqlite3
import time

from av import VideoFrame
from PIL import Image as PILImage

from kefu.media import colour_for, sample_rgb

from .conftest import LIMIT, TURNS_PORT, Lines, Network
from .topology import TURN_ADDRESS, Topology


def near(rgb: list[int] | tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def jpeg_rgb(data: bytes) -> tuple[int, int, int]:
    with PILImage.open(io.BytesIO(data)) as img:
        return sample_rgb(VideoFrame.from_image(img.convert("RGB")))  # type: ignore[return-value]


async def frames(v: Lines) -> dict[str, object]:
    start = len(v.seen)
    v.send({"cmd": "frames"})
    return await v.find(lambda m: m.get("event") == "frames", start=start)


async def callback(agent: Lines, rid: str, name: str, within: float = LIMIT) -> dict[str, object]:
    return await agent.find(lambda m: m.get("id") == rid and m.get("callback") == name, within)


async def snapshot(net: Network, agent: Lines, v: Lines) -> dict[str, object]:
    """The agent's ``snapshot`` of ``v``'s camera. When ``v`` first sees the agent's
    frames the hub may not have decoded ``v``'s first frame yet (``no_media``): each
    further try waits for ``v``'s next frames report, never a fixed time."""
    for _ in range(10):
        rid = net.call(agent, "snapshot")
        got = await agent.find(
            lambda m, rid=rid: m.get("id") == rid and m.get("callback") in ("success", "error")
        )
        if got["callback"] == "success":
            return got
        assert "no_media" in str(got["data"]), got
        await frames(v)
    raise AssertionError(f"no snapshot of {v.name}: the hub never had a frame of its camera")


async def connected(v: Lines) -> None:
    await v.find(lambda m: m.get("event") == "MediaStatus" and m.get("status") == "connected")


def record(net: Network, call_id: str) -> tuple[str | None, str | None]:
    with sqlite3.connect(net.tmp / "server" / "kefu.db") as db:
        row = db.execute("select end_reason, ended_by from calls where id = ?", (call_id,)).fetchone()
    return (row[0], row[1]) if row else (None, None)


async def test_call_out_through_the_relay_both_ways_snapshot_and_three_party(network: Network) -> None:
    net = network
    cpu_before = net.turn_cpu_seconds()
    agent = await net.agent("a1")
    v1 = await net.visitor("visitor", "v1")
    assert v1.seen[0]["iceServers"] == 1  # the server's TURN, in the hello reply
    rid = net.call(agent, "callbackToVisitor", {"visitorName": "v1"})
    accepted = await callback(agent, rid, "acceptSuccess")
    call_id = accepted["data"]["payload"]["callId"]  # type: ignore[index]
    await connected(v1)
    # frames both ways, through the relay (nothing else connects these hosts)
    seen = await frames(v1)
    assert near(seen["colours"]["a1"], colour_for("a1")), seen  # type: ignore[index]
    assert "relay" in seen["route"], seen  # type: ignore[operator]
    shot = await snapshot(net, agent, v1)
    jpeg = base64.b64decode(shot["data"]["payload"]["base64"])  # type: ignore[index]
    assert near(jpeg_rgb(jpeg), colour_for("v1"))
    # a second visitor, on its own network: the hub forwards each one's camera to the other
    v2 = await net.visitor("visitor2", "v2")
    rid3 = net.call(agent, "videoInviteVisitor", {"visitorName": "v2"})
    await callback(agent, rid3, "acceptSuccess")
    await connected(v2)
    seen2 = await frames(v2)
    assert near(seen2["colours"]["a1"], colour_for("a1")) and near(seen2["colours"]["v1"], colour_for("v1"))
    seen1 = await frames(v1)
    assert near(seen1["colours"]["v2"], colour_for("v2")), seen1  # type: ignore[index]
    assert net.turn_cpu_seconds() > cpu_before  # coturn did the relaying
    await callback(agent, net.call(agent, "videoDisconnect"), "success")
    await v1.find(lambda m: m.get("event") == "CallUpdate" and m.get("what") == "ended")
    assert record(net, call_id) == ("hangup", "a1")


async def test_a_visitor_that_cannot_reach_the_relay_ends_with_media_unreachable(
    network: Network, topology: Topology
) -> None:
    net = network
    topology.block("visitor", TURN_ADDRESS)
    assert not topology.reaches("visitor", TURN_ADDRESS)
    bound = 6.0
    agent = await net.agent("a1", connect_timeout=bound)
    v1 = await net.visitor("visitor", "v1")
    rid = net.call(agent, "callbackToVisitor", {"visitorName": "v1"})
    accepted = await callback(agent, rid, "acceptSuccess")
    started = time.monotonic()
    call_id = accepted["data"]["payload"]["callId"]  # type: ignore[index]
    ended = await v1.find(lambda m: m.get("event") == "CallUpdate" and m.get("what") == "ended")
    took = time.monotonic() - started
    assert ended["reason"] == "media_unreachable" and ended["by"] == "system"
    assert took < bound + 5.0, f"ended {took:.1f} s after the call connected (bound {bound} s)"
    disconnect = await callback(agent, rid, "visitorDisconnect")
    assert disconnect["data"]["payload"]["reason"] == "media_unreachable"  # type: ignore[index]
    assert record(net, call_id) == ("media_unreachable", "system")


async def test_a_call_through_the_relay_over_tls_turns(turns_network: Network, topology: Topology) -> None:
    """The server hands out only ``turns:`` (TURN over TLS on 5349, coturn with a test CA's
    certificate): both ends allocate over TLS, checking coturn's certificate, and the
    media flows through the relay."""
    net = turns_network
    agent = await net.agent("a1")
    v1 = await net.visitor("visitor", "v1")
    rid = net.call(agent, "callbackToVisitor", {"visitorName": "v1"})
    await callback(agent, rid, "acceptSuccess")
    await connected(v1)
    seen = await frames(v1)
    assert near(seen["colours"]["a1"], colour_for("a1")), seen  # type: ignore[index]
    assert "relay" in seen["route"], seen  # type: ignore[operator]
    shot = await snapshot(net, agent, v1)
    assert near(jpeg_rgb(base64.b64decode(shot["data"]["payload"]["base64"])), colour_for("v1"))  # type: ignore[index]
    # the two ends' allocations live on TLS connections to coturn's 5349 (and nothing else
    # could carry them: the server gave no other TURN URL)
    peers = topology.tcp_peers("dc", TURNS_PORT)
    assert {topology.hosts["agent"].address, topology.hosts["visitor"].address} <= peers, peers
    await callback(agent, net.call(agent, "videoDisconnect"), "success")
