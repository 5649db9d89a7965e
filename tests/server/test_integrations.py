"""Webhooks and the event stream (issue 21): a real HTTP receiver on loopback, real sockets.

The receiver is a small HTTP/1.1 server on 127.0.0.1 that records every request; tests await
what it got (no sleeping). Backoff and polls are milliseconds here (settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from kefu.protocol.integrations import EVENT_INFO, SIGNATURE_HEADER, EventType, verify
from tests.conftest import PASSWORD, ServerHandle, scaled
from tests.server.test_calls import state
from tests.server.test_media_store import in_call, jpeg

pytestmark = pytest.mark.server_settings(
    ring_timeout=5.0,
    call_grace=0.2,
    events_poll=0.05,
    webhook_backoff=0.01,
    webhook_backoff_max=0.05,
    webhook_timeout=2.0,
)

SECRET = "whsec-test-0123456789abcdef"


class Receiver:
    """An HTTP endpoint on 127.0.0.1: answers ``status`` (or holds, or drops the connection)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.mode = "ok"  # ok | drop (accept and close: the endpoint is down) | hold (never answer)
        self.dropped = 0
        self.held = asyncio.Event()
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if self.mode == "drop":
                    self.dropped += 1
                    async with self._changed:
                        self._changed.notify_all()
                    return
                async with self._changed:
                    self.got.append((headers, body))
                    self._changed.notify_all()
                if self.mode == "hold":
                    self.held.set()
                    await asyncio.Event().wait()  # until the server (the client) goes away
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def until(self, cond: Callable[[Receiver], bool], within: float = scaled(10.0)) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: cond(self))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.got]

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events()]


@pytest.fixture
async def receiver() -> Any:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def admin_api(server: ServerHandle, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


async def boss(server: ServerHandle) -> str:
    await server.add_agent("boss", admin=True)
    return await server.login("boss")


async def register(server: ServerHandle, token: str, url: str, events: list[str] | None = None) -> str:
    async with admin_api(server, token) as c:
        r = await c.post("/api/webhooks", json={"url": url, "events": events or ["*"], "secret": SECRET})
        assert r.status_code == 200, r.text
        return str(r.json()["id"])


async def journal(server: ServerHandle, token: str, after: str | None = None) -> list[dict[str, Any]]:
    """Every event after ``after``, page by page, over REST."""
    out: list[dict[str, Any]] = []
    async with admin_api(server, token) as c:
        while True:
            params = {"limit": 7} if after is None else {"after": after, "limit": 7}
            page = (await c.get("/api/events", params=params)).json()
            out += page["events"]
            if not page["events"]:
                return out
            after = page["cursor"]


async def settled(server: ServerHandle) -> None:
    """Every committed event has its cursor (the sequencer ran after the last commit)."""
    await server.services.journal.sequence()


def check_signed(headers: dict[str, str], body: bytes) -> None:
    sig = headers[SIGNATURE_HEADER.lower()]
    assert verify(SECRET, body, sig, time.time()), sig
    assert not verify("another-secret-0123456789", body, sig, time.time())
    assert not verify(SECRET, body + b" ", sig, time.time())
    env = json.loads(body)
    assert headers["kefu-event-id"] == env["id"] and headers["kefu-event-type"] == env["type"]


def check_order_per_stream(events: list[dict[str, Any]]) -> None:
    """Each stream's events arrive with consecutive seqs (n, n+1, …) in that order."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in events:
        seqs[e["stream"]].append(e["seq"])
    for stream, got in seqs.items():
        assert got == list(range(got[0], got[0] + len(got))), (stream, got)


async def a_day(server: ServerHandle) -> str:
    """A scripted day: a chat (queued, assigned, messages, transferred, closed) and a call with a
    snapshot, a photo, a transfer refused, a supervisor and a recording; returns the call's id."""
    agent, v, call_id, token = await in_call(server)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post(
            "/api/media/snapshot", params={"callId": call_id}, content=jpeg((0, 90, 0)), headers=auth
        )
        assert r.status_code == 200, r.text
        request_id = (await agent.call("takePhoto"))["payload"]["requestId"]
        await v.next_event("photoRequest")
        r = await http.post(
            "/api/visitor/photo",
            params={"callId": call_id, "requestId": request_id},
            content=jpeg((200, 0, 0)),
            headers={"X-Visitor-Name": "v1", "X-Visitor-Key": v.visitor_key},
        )
        assert r.status_code == 200, r.text
        r = await http.put(
            f"/api/calls/{call_id}/recording",
            params={"offset": 0, "final": True},
            content=b"webm",
            headers=auth,
        )
        assert r.status_code == 200, r.text
    other = await server.agent("a9", ready=True)  # issue 20: a call transfer, refused
    await agent.call("transferCall", {"agentName": "a9", "note": "loans"})
    await state(agent, "007003")
    await other.call("multipleVideoRefuse")
    await state(agent, "006015")
    await other.call("setAgentState", {"state": "busy"})  # a1 stays the only ready agent
    sup = await server.agent("boss", add=False)  # an admin supervises any call (issue 20)
    await sup.call("monitorCall", {"callId": call_id})
    await sup.call("leaveMonitor")
    await agent.call("videoDisconnect")
    await state(agent, "005004")
    await agent.call("setAgentState", {"state": "idle"})
    await state(agent, "002000")
    chat = await server.visitor("v2")
    sid = (await chat.send_message("hello"))["sessionId"]
    await agent.next_event("sessionAssigned")
    await agent.call("sendMessage", {"session_id": sid, "text": "hi, how can I help?"})
    await chat.next_event("message")
    await agent.call("transferSession", {"session_id": sid, "note": "back to the queue"})  # issue 20
    await agent.next_event("sessionAssigned")  # the only ready agent takes it again
    await agent.call("chatClose", {"session_id": sid})
    await chat.next_event("sessionClosed")
    return call_id


async def test_every_event_of_a_day_arrives_once_in_order_and_signed(
    server: ServerHandle, receiver: Receiver
) -> None:
    token = await boss(server)
    await register(server, token, receiver.url)
    call_id = await a_day(server)
    await settled(server)
    every = await journal(server, token)
    # every type happened, but those of the SFU mode's recording (tests/janus/test_recording_sfu.py)
    sfu_only = {EventType.recording_started.value, EventType.recording_failed.value}
    assert {e["type"] for e in every} == {t.value for t in EventType} - sfu_only
    await receiver.until(lambda r: len(r.got) >= len(every))
    got = receiver.events()
    assert [e["id"] for e in got] == [e["id"] for e in every]  # once each, in journal order
    assert len(set(receiver.ids())) == len(got)
    for headers, body in receiver.got:
        check_signed(headers, body)
    check_order_per_stream(got)
    call = [e for e in got if e["stream"] == f"call:{call_id}"]
    kinds = [e["type"] for e in call]
    assert kinds.index("call.ringing") < kinds.index("call.connected") < kinds.index("call.ended")
    assert kinds[-1] == "call.ended" and "call.member_left" in kinds
    ended = next(e for e in call if e["type"] == "call.ended")["data"]
    assert ended["endedBy"] == "a1" and ended["reason"]
    states = [e["data"] for e in got if e["type"] == "agent.state_changed" and e["data"]["agentName"] == "a1"]
    assert [s["new"] for s in states] == [
        "001000",
        "002000",
        "003001",
        "006011",
        "007003",
        "006015",
        "005004",
        "002000",
    ]
    for e in got:
        assert set(EVENT_INFO[EventType(e["type"])].data) <= set(e["data"]), e
    photo = next(e for e in got if e["type"] == "photo.taken")["data"]
    assert photo["callId"] == call_id and photo["requestId"]
    async with admin_api(server, token) as c:
        hook = (await c.get("/api/webhooks")).json()[0]
        deliveries = (await c.get(f"/api/webhooks/{hook['id']}/deliveries", params={"limit": 1000})).json()
    assert {d["status"] for d in deliveries} == {"delivered"} and len(deliveries) == len(every)
    assert all(d["attempts"] == 1 and d["lastStatus"] == 204 for d in deliveries)


async def test_an_endpoint_down_for_a_while_gets_everything_once_when_back(
    server: ServerHandle, receiver: Receiver
) -> None:
    token = await boss(server)
    a1 = await server.agent("a1")
    await settled(server)
    before = (await journal(server, token))[-1]["cursor"]  # a webhook gets what happens after it
    hook = await register(server, token, receiver.url, ["agent.*", "session.*", "message.created"])
    receiver.mode = "drop"
    v = await server.visitor("v1")
    await v.send_message("one")
    for state_ in ("idle", "busy", "idle"):
        await a1.call("setAgentState", {"state": state_})
    await a1.next_event("sessionAssigned")
    await v.send_message("two")
    await receiver.until(lambda r: r.dropped >= 4)  # the first event, tried again and again
    async with admin_api(server, token) as c:
        pending = (await c.get(f"/api/webhooks/{hook}/deliveries", params={"status": "pending"})).json()
        assert pending[0]["attempts"] >= 3 and pending[0]["lastError"] and pending[0]["nextAt"]
    receiver.mode = "ok"
    await settled(server)
    every = await journal(server, token, before)
    await receiver.until(lambda r: len(r.got) >= len(every))
    got = receiver.events()
    assert len(got) == len(set(receiver.ids())) == len(every)  # nothing twice
    assert [e["id"] for e in got] == [e["id"] for e in every]  # nothing lost, in order
    check_order_per_stream(got)
    assert {e["type"] for e in got} == {
        "agent.state_changed",
        "session.queued",
        "session.assigned",
        "message.created",
    }


async def test_a_server_stopped_mid_delivery_delivers_after_restart(
    server: ServerHandle, receiver: Receiver
) -> None:
    token = await boss(server)
    await register(server, token, receiver.url)
    receiver.mode = "hold"
    a1 = await server.agent("a1")
    await a1.call("setAgentState", {"state": "idle"})
    await a1.call("setAgentState", {"state": "busy"})
    await receiver.held.wait()  # the first delivery is in flight
    await server.restart()
    receiver.mode = "ok"
    token = await server.login("boss")
    await settled(server)
    every = await journal(server, token)
    await receiver.until(lambda r: set(r.ids()) >= {e["id"] for e in every})
    ids = receiver.ids()
    assert ids.count(ids[0]) == 2  # the one in flight came again (at least once: dedupe by id)
    deduped = list(dict.fromkeys(ids))
    assert deduped == [e["id"] for e in every]


async def test_the_stream_resumed_from_a_cursor_gives_exactly_what_follows(server: ServerHandle) -> None:
    token = await boss(server)
    a1 = await server.agent("a1")
    for state_ in ("idle", "busy", "idle", "busy"):
        await a1.call("setAgentState", {"state": state_})
    await settled(server)
    every = await journal(server, token)
    assert len(every) >= 5
    cut = every[2]["cursor"]
    expected = [e["id"] for e in every[3:]]
    assert [e["id"] for e in await journal(server, token, cut)] == expected
    async with (
        admin_api(server, token) as c,
        c.stream("GET", "/api/events/stream", headers={"Last-Event-ID": cut}) as resp,
    ):
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        seen: list[dict[str, Any]] = []
        ids: list[str] = []
        lines = resp.aiter_lines()
        live_sent = False
        async with asyncio.timeout(10):
            async for line in lines:
                if line.startswith("id: "):
                    ids.append(line[4:])
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if len(seen) == len(expected) and not live_sent:
                        live_sent = True
                        await a1.call("setAgentState", {"state": "idle"})  # a new event, live
                    if len(seen) > len(expected):
                        break
    assert [e["id"] for e in seen[: len(expected)]] == expected
    assert ids == [e["cursor"] for e in seen]
    live = seen[-1]
    assert live["type"] == "agent.state_changed" and live["data"]["new"] == "002000"
    assert int(live["cursor"]) > int(every[-1]["cursor"])


async def test_webhooks_are_for_admins_and_never_show_their_secret(
    server: ServerHandle, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await boss(server)
    a1 = await server.agent("a1")
    agent_token = await server.login("a1")
    async with admin_api(server, agent_token) as c:
        for method, path in (("GET", "/api/webhooks"), ("POST", "/api/webhooks"), ("GET", "/api/events")):
            r = await c.request(method, path, json={"url": receiver.url, "events": ["*"], "secret": SECRET})
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", path
    async with httpx.AsyncClient(base_url=server.url) as anon:
        assert (await anon.get("/api/events")).json()["error"]["code"] == "unauthenticated"
    async with admin_api(server, token) as c:
        bad = [
            ({"url": "ftp://x", "events": ["*"]}, "invalid_field"),
            ({"url": receiver.url, "events": ["call.exploded"]}, "invalid_field"),
            ({"url": receiver.url, "events": []}, "invalid_field"),
            ({"url": receiver.url, "events": ["*"], "secret": "short"}, "invalid_field"),
            ({"events": ["*"]}, "missing_field"),
        ]
        for body, code in bad:
            r = await c.post("/api/webhooks", json=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == code, (body, r.text)
        made = (await c.post("/api/webhooks", json={"url": receiver.url, "events": ["agent.*"]})).json()
        generated = made["secret"]
        assert len(generated) >= 32
        listed = (await c.get("/api/webhooks")).json()
        assert [h["id"] for h in listed] == [made["id"]] and listed[0]["secret"] is None
        assert generated not in (await c.get(f"/api/webhooks/{made['id']}")).text
        await a1.call("setAgentState", {"state": "idle"})
        await receiver.until(lambda r: len(r.got) >= 1)
        headers, body = receiver.got[0]
        assert verify(generated, body, headers[SIGNATURE_HEADER.lower()], time.time())
        assert (await c.get("/api/webhooks/nope")).json()["error"]["code"] == "no_such_webhook"
        assert (await c.get("/api/webhooks/nope/deliveries")).status_code == 404
        assert (await c.delete(f"/api/webhooks/{made['id']}")).status_code == 204
        assert (await c.delete(f"/api/webhooks/{made['id']}")).json()["error"]["code"] == "no_such_webhook"
        assert (await c.get("/api/webhooks")).json() == []
        assert (await c.get("/api/events", params={"after": "nonsense"})).json()["error"][
            "code"
        ] == "invalid_field"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert generated not in logged and SECRET not in logged and PASSWORD not in logged


async def test_two_nodes_on_one_database_deliver_each_event_once(
    server: ServerHandle, receiver: Receiver
) -> None:
    if server.settings.is_sqlite:
        pytest.skip("several nodes share a PostgreSQL database")
    other = ServerHandle(replace(server.settings, node_id="2"))
    await other.start()
    try:
        token = await boss(server)
        await register(server, token, receiver.url)
        a1 = await server.agent("a1")
        await other.add_agent("a2")
        from tests.server.clients import AgentClient

        a2 = AgentClient(other.ws("/ws/agent"), await other.login("a2"))
        other._clients.append(a2)
        await a2.connect()
        for state_ in ("idle", "busy", "idle"):
            await a1.call("setAgentState", {"state": state_})
            await a2.call("setAgentState", {"state": state_})
        await settled(server)
        await settled(other)
        every = await journal(server, token)
        assert {e["data"]["agentName"] for e in every} == {"a1", "a2"}
        await receiver.until(lambda r: len(r.got) >= len(every))
        assert receiver.ids() == [e["id"] for e in every]  # once each, one node delivering
        check_order_per_stream(receiver.events())
    finally:
        await other.stop()


async def test_a_rolled_back_change_records_no_event(server: ServerHandle) -> None:
    token = await boss(server)
    await server.agent("a1")
    await settled(server)
    before = await journal(server, token)
    from kefu.server.events import emit

    with contextlib.suppress(RuntimeError):
        async with server.services.hub.transaction() as tx:
            await emit(tx, EventType.session_queued, "s1", {"sessionId": "s1", "visitorName": "x"})
            raise RuntimeError("the change fails")
    await settled(server)
    assert await journal(server, token) == before


async def test_the_webhooks_watcher_stops_when_the_journal_closes(server: ServerHandle) -> None:
    """A closed journal's ``wait`` returns at once: the watcher must end, not spin on the loop
    (it held the loop for a whole ``events_poll`` at a time, with nothing else running)."""
    watcher = server.services.webhooks._watcher
    assert watcher is not None and not watcher.done()
    await server.services.journal.close()
    await asyncio.wait_for(asyncio.shield(watcher), scaled(2.0))
    assert watcher.exception() is None


@pytest.mark.server_settings(events_poll=5.0, sequence_every=0.5)
async def test_the_events_of_commits_in_a_burst_are_numbered_by_one_run(server: ServerHandle) -> None:
    """D85: a commit that emitted kicks the sequencer, which runs at most once every
    ``sequence_every``: the events of the commits made meanwhile are numbered together, where
    each commit had a run (a transaction and the cluster's lock) of its own before."""
    from kefu.server.events import emit

    journal_ = server.services.journal
    await settled(server)
    top, runs = journal_.top, journal_.runs
    ids = [f"burst{i}" for i in range(5)]
    for sid in ids:  # 20 ms apart: each commit finds the sequencer idle (a run takes ~1 ms)
        async with server.services.hub.transaction() as tx:
            await emit(tx, EventType.session_queued, sid, {"sessionId": sid, "visitorName": "x"})
        await asyncio.sleep(0.02)

    async def numbered() -> list[str]:
        while True:
            got = [
                e["data"]["sessionId"]
                for e in await journal_.after(top, 100)
                if e["stream"].startswith("session")
            ]
            if len(got) == len(ids):
                return got
            await journal_.wait(journal_.top, scaled(1.0))

    assert await asyncio.wait_for(numbered(), scaled(5.0)) == ids  # in commit order, each once
    assert journal_.runs - runs <= 2  # 5 before D85
