"""A push lost on the bus, with nothing after it, still arrives (the outbox's idle poll).

Pub/sub is at most once. The push is stored by a hub whose bus never reaches
Redis (an in-process :class:`~kefu.server.hub.LocalBus` on the same database:
exactly what the other nodes see when a publish is lost); the visitor,
connected to node 2, gets it within a few ``gap_poll`` periods, once.
"""

from __future__ import annotations

from kefu.protocol.wire import event_message
from kefu.server.hub import Hub, LocalBus, visitor_key
from kefu.visitor.link import Link

from .conftest import Cluster, Deployment


async def test_a_push_lost_on_the_bus_is_found_by_the_idle_poll(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2)
    await cluster.start()
    v = Link(cluster.urls[1].replace("http", "ws", 1) + "/ws/visitor", timeout=5.0)
    try:
        await v.connect()
        hello = await v.request("hello", {"name": "v1"})
        recipient = visitor_key(hello["payload"]["visitorId"])
        n1 = cluster.services(0)
        silent = Hub(n1.store, n1.settings, LocalBus())  # commits, publishes nowhere
        async with silent.transaction() as tx:
            seq = await tx.push(recipient, event_message("notice", {"text": "lost on the bus"}, mark="event"))
        got = await v.next_event("notice")  # bounded by the link's timeout (5 s; gap_poll is 0.2 s)
        assert got["seq"] == seq and got["payload"]["text"] == "lost on the bus"
        assert not [m for m in v.pending_events() if m.get("seq") == seq]  # once
    finally:
        await v.disconnect()
        await cluster.stop()
