"""The server goes down mid-session and comes back: the SDK sees
``kefuWSClose``, then the recovery (``kefuWSOpen``), and no event is lost or
repeated.

In the first test the plugin reaches the server through a TCP proxy, so the
link stays down while the restarted server already records new events for
the agent: they must all arrive, once and in order, when the link is back.
"""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path
from typing import Any

import pytest

from kefu.protocol import Code, ErrorCode
from kefu.sdk import Client, IMClient, PluginEvent, RequestError
from tests.plugin.harness import LIMIT, Stack, ThreadedStack, Visitor


async def next_event(events: Any, name: str, kept: list[PluginEvent]) -> PluginEvent:
    """The next event called ``name``; the others are kept, in order."""
    while True:
        event: PluginEvent = await asyncio.wait_for(anext(events), LIMIT)
        if event.name == name:
            return event
        kept.append(event)


async def test_server_down_and_back_nothing_lost_nothing_repeated(tmp_path: Path) -> None:
    async with Stack(tmp_path, via_proxy=True) as stack:
        assert stack.proxy is not None
        async with Client(stack.p.url, data_dir=stack.p.settings.data_dir) as client:
            events = client.events()
            kept: list[PluginEvent] = []
            await client.start_login(stack.login_url())
            await client.set_agent_state("idle")
            async with Visitor.connect(stack.server, "v1") as v1:
                await v1.say("m0")
                key = v1.key
                assigned = await next_event(events, "sessionAssigned", kept)
                sid = assigned.payload["sessionId"]
            # the server goes down; the plugin's link with it
            await stack.proxy.cut()
            await stack.server.stop()
            closed = await next_event(events, "kefuWSClose", kept)
            assert closed.payload["reconnecting"] is True and client.link_up is False
            with pytest.raises(RequestError) as down:
                await client.session_count()
            assert down.value.code is ErrorCode.upstream_down
            # the server is back, the link not yet: the agent's events are kept for it
            await stack.server.start()
            async with Visitor.connect(stack.server, "v1", key) as again:
                for i in (1, 2, 3):
                    await again.say(f"m{i}")
                await stack.proxy.restore()
                opened = await next_event(events, "kefuWSOpen", kept)
                assert opened.payload["state"] == "002000" and client.link_up is True
                missed = [await next_event(events, "message", kept) for _ in range(3)]
                assert [m.payload["text"] for m in missed] == ["m1", "m2", "m3"]
                assert {m.payload["sessionId"] for m in missed} == {sid}
                await again.say("m4")
                assert (await next_event(events, "message", kept)).payload["text"] == "m4"
            # a round trip after everything: nothing else came, nothing came twice
            assert await client.session_count() == 1
            assert await client.get_state() is Code.idle
            # the pushes before the last reply are in the stream already: take them
            rest = events.pending()
            texts = [e.payload["text"] for e in kept + rest if e.name == "message"]
            assert texts == [], texts
            assert [e.name for e in kept + rest if e.name in ("kefuWSClose", "kefuWSOpen")] == []


def test_server_restart_seen_from_a_script(tmp_path: Path) -> None:
    with ThreadedStack(tmp_path) as ts:
        got: queue.Queue[tuple[str, Any]] = queue.Queue()

        def cb(name: str) -> Any:
            return lambda data: got.put((name, data))

        client = IMClient(
            ts.stack.options(
                kefuReady=cb("kefuReady"), kefuWSClose=cb("kefuWSClose"), kefuWSOpen=cb("kefuWSOpen")
            )
        )
        client.initInnerCallBack({"sessionAssigned": cb("sessionAssigned"), "stateChange": lambda s, p: None})

        def take(name: str) -> Any:
            while True:
                n, data = got.get(timeout=LIMIT)
                if n == name:
                    return data
                seen.append(n)

        seen: list[str] = []
        try:
            client.startLogin({"data": {"url": ts.stack.login_url()}}).result(LIMIT)
            take("kefuReady")
            client.setAgentState({"state": "idle"}).result(LIMIT)
            ts.run(ts.stack.visitor_says("v1", "before"))
            assert take("sessionAssigned")["payload"]["visitorName"] == "v1"
            ts.run(ts.stack._visitors.aclose())
            ts.run(ts.stack.server.stop())
            assert take("kefuWSClose")["payload"]["reconnecting"] is True
            ts.run(ts.stack.server.start())
            assert take("kefuWSOpen")["payload"]["state"] == "002000"
            ts.run(ts.stack.visitor_says("v2", "after"))
            assert take("sessionAssigned")["payload"]["visitorName"] == "v2"
            assert client.sessionCount().result(LIMIT)["payload"]["sessionCount"] == 2
            while not got.empty():
                seen.append(got.get_nowait()[0])
            assert "sessionAssigned" not in seen  # v1's assignment did not come again
            assert seen.count("kefuWSClose") == 0 and seen.count("kefuWSOpen") == 0
        finally:
            client.close()
