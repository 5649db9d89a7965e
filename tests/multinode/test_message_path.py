"""The message path takes no cluster-wide lock (issue 18).

A visitor's message to its session locks that session's row only, so it never
waits for a routing pass or a queue change elsewhere in the cluster: shown by
sending while another transaction holds the routing lock (only a message that
queues a new session takes it). Two first messages
of one visitor racing on two nodes still make one session (the unique index on
the visitor's active session decides, not a lock).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, text

from kefu.server.routing import ROUTING_LOCK
from kefu.server.schema import messages, sessions
from kefu.server.visitors import identify

from .conftest import Cluster, Deployment


async def test_messages_do_not_wait_for_the_routing_lock(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2, log_level="error")
    await cluster.start()
    try:
        n1, n2 = cluster.services(0), cluster.services(1)
        visitor, _, _ = await identify(n1.hub, "v1", None)
        first = await n1.sessions.visitor_send(visitor, "opens the session", None)
        assert first["status"] == "queued"
        async with n1.store.write() as holder:  # a routing pass of some node, holding the lock
            await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROUTING_LOCK})
            async with asyncio.timeout(5):
                again = await n2.sessions.visitor_send(visitor, "to the same session", None)
                repeated = await n1.sessions.visitor_send(visitor, "once", "c1")
        assert again["sessionId"] == first["sessionId"] and again["status"] == "queued"
        assert again["position"] == 1 and repeated["sessionId"] == first["sessionId"]
    finally:
        await cluster.stop()


async def test_two_first_messages_racing_on_two_nodes_make_one_session(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2, log_level="error")
    await cluster.start()
    try:
        n1, n2 = cluster.services(0), cluster.services(1)
        rounds = 30
        for i in range(rounds):
            visitor, _, _ = await identify(n1.hub, f"v{i}", None)
            a, b = await asyncio.gather(
                n1.sessions.visitor_send(visitor, "one", None), n2.sessions.visitor_send(visitor, "two", None)
            )
            assert a["sessionId"] == b["sessionId"], (a, b)
        async with n1.store.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(sessions))).scalar_one() == rounds
            assert (await conn.execute(select(func.count()).select_from(messages))).scalar_one() == 2 * rounds
    finally:
        await cluster.stop()
