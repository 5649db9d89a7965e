"""The load generator: thousands of visitor and agent connections from a few
worker processes, driven phase by phase from the (synchronous) scenario.

Theory of operation
-------------------
:class:`Pool` starts ``workers`` processes (spawned, each with its own event
loop, uvloop when installed). Visitor ``i`` lives in worker ``i mod W`` and
agent ``k`` in worker ``k mod W``. The scenario calls a phase on every worker
at once (:meth:`Pool.call`) and gets one dict back per worker.

A connection is a :class:`Link` on picows (D87): each frame goes to its
visitor's or agent's handler from the transport's callback (no reader task),
and a send is written at once. The generator shares the cores with the system
it measures, so it spends as little as it can.

The same client code drives kefu and the baseline (``target``):

==============  =====================================  ===============================
                kefu                                   baseline (bench.baseline_server)
==============  =====================================  ===============================
visitor         ``/ws/visitor``, ``hello`` first        ``/echo`` or ``/relay/v/<i>``
send            ``sendMessage {text, clientMsgId?}``    the same envelope, raw
acknowledgement the reply with the request's id         the echo (same id)
agent           ``/ws/agent``, ``auth``, ready          ``/relay/a/<k>``
delivery        ``event``/``message`` push              the relayed envelope
==============  =====================================  ===============================

Every text carries who sent it, a number and the send time:
``b|<phase>|<visitor>|<n>|<monotonic ns>|xxxx…`` (visitor → agent) and
``a|<agent>|<n>|<monotonic ns>|xxxx…`` (agent → visitor), padded to the message
size. ``time.monotonic_ns`` is one clock for every process on Linux, so the
receiver computes the latency. The numbers give loss and duplicates: every
acknowledged message must be received exactly once.

Each connection's requests, answers and push order are the protocol's
sans-I/O :class:`~kefu.protocol.client_session.ClientSession` (issue 19), as
for the SDK and the agents' rig: request ids, the open requests, replayed
pushes (``seq`` at or below the last: dropped and counted) and gaps (a jump
in ``seq``) are counted there, not here. One session per visitor lives across
its reconnections (its ``last_seq`` is what the next ``hello`` resumes from).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from picows import WSError, WSFrame, WSInvalidStatusError, WSListener, WSMsgType, WSTransport, ws_connect

from bench.procs import WorkerPool, serve_worker
from kefu.protocol.client_session import Answer, ClientSession, Dropped, Push, Stray
from kefu.protocol.wire import encode, request_message

__all__ = ["LoadConfig", "Pool"]

_NS = 1_000_000_000


class LinkClosed(ConnectionError):
    """A send on a closed connection of the generator."""


class Link(WSListener):
    """One connection of the generator, on picows (D87).

    Each text message goes to ``on_text`` from the transport's own callback. No task
    reads, and no queue sits between the socket and the handler. A send is written to
    the transport at once; it waits only while the transport is paused (the server
    reads too slowly). When the connection ends, ``on_close(link)`` runs once.

    The generator shares the machine's cores with the system it measures. On
    ``websockets`` its framing alone was 40 % of its CPU (py-spy, 2026-12-06)."""

    def __init__(self, on_text: Callable[[str], None], on_close: Callable[[Link], None]) -> None:
        self.on_text = on_text
        self.on_close = on_close
        self.transport: WSTransport | None = None
        self._parts: list[bytes] = []  # a fragmented message's frames so far
        self._writable = asyncio.Event()
        self._writable.set()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT and frame.fin:
            self.on_text(frame.get_payload_as_utf8_text())
        elif kind in (WSMsgType.TEXT, WSMsgType.CONTINUATION):
            self._parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                text = b"".join(self._parts).decode()
                self._parts.clear()
                self.on_text(text)
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        # pings are answered by picows (enable_auto_pong); pongs and binary frames: none expected

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._writable.set()  # a waiting send finds the link closed
        self.on_close(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def send(self, text: str) -> None:
        if not self._writable.is_set():
            await self._writable.wait()
        if self.transport is None or self.transport.is_disconnected:
            raise LinkClosed
        self.transport.send(WSMsgType.TEXT, text.encode())

    def abort(self) -> None:
        """Drop the connection at once (no closing handshake), as a phone losing its network."""
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    async def closed(self) -> None:
        if self.transport is not None:
            await self.transport.wait_disconnected()


@dataclass(frozen=True)
class LoadConfig:
    """What every worker needs to know; picklable."""

    target: str  # "kefu" | "echo" | "relay"
    base_url: str  # ws://127.0.0.1:PORT (kefu: the server; baseline: the baseline server)
    http_url: str = ""  # kefu: http://127.0.0.1:PORT for /api/login
    visitors: int = 0
    agents: int = 0
    agent_names: tuple[str, ...] = ()
    agent_password: str = ""
    msg_size: int = 100  # characters of text
    connect_concurrency: int = 200
    open_timeout: float = 30.0
    request_timeout: float = 30.0
    visitor_prefix: str = "bv"


@dataclass
class _Pending:
    n: int
    t_ns: int
    fut: asyncio.Future[dict[str, Any]] | None = None
    cid: str | None = None
    phase: str = ""


@dataclass
class _Visitor:
    idx: int
    name: str
    ws: Link | None = None
    key: str | None = None
    session: str | None = None
    assigned: asyncio.Event = field(default_factory=asyncio.Event)
    cs: ClientSession[_Pending] = field(default_factory=lambda: ClientSession(prefix="m"))
    outbox: dict[str, tuple[int, str]] = field(default_factory=dict)  # clientMsgId → (n, text)
    acked: set[int] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    next_n: int = 0
    got: Counter[tuple[int, int]] = field(default_factory=Counter)  # (agent, n) → times received
    connected: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Agent:
    idx: int
    name: str
    ws: Link | None = None
    token: str = ""
    sessions: list[str] = field(default_factory=list)
    cs: ClientSession[_Pending] = field(default_factory=lambda: ClientSession(prefix="s"))
    acked: set[int] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    next_n: int = 0


def _fail_pending(cs: ClientSession[_Pending]) -> None:
    """The connection closed: whoever waits for an answer hears so (nobody may wait)."""
    for p in cs.fail_all():
        fut = p.tag.fut
        if fut is not None and not fut.done():
            fut.set_exception(ConnectionError("closed"))
            fut.exception()  # retrieved: no "never retrieved" log for open-loop sends


def _pad(head: str, size: int) -> str:
    return head + "x" * (size - len(head)) if len(head) < size else head


class Worker:
    """One worker's share of the visitors and agents, and the phases it runs."""

    def __init__(self, index: int, count: int, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.index = index
        self.visitors = [_Visitor(i, f"{cfg.visitor_prefix}{i}") for i in range(index, cfg.visitors, count)]
        self.agents = [
            _Agent(k, cfg.agent_names[k] if k < len(cfg.agent_names) else f"agent{k}")
            for k in range(index, cfg.agents, count)
        ]
        # agent-side records of visitor messages: (visitor, n) → count; latency per phase
        self.received: Counter[tuple[int, int]] = Counter()
        self.latency: defaultdict[str, list[int]] = defaultdict(list)
        self.recv_at: defaultdict[str, list[int]] = defaultdict(list)  # monotonic ns of each delivery
        self.ack_latency: defaultdict[str, list[int]] = defaultdict(list)
        self.ack_at: defaultdict[str, list[int]] = defaultdict(list)
        self.unparsed = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed_unexpectedly = 0

    # --- connections ------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.cfg.base_url.rstrip("/") + path

    async def _open(
        self, path: str, on_text: Callable[[str], None], on_close: Callable[[Link], None]
    ) -> Link:
        async with asyncio.timeout(self.cfg.open_timeout):
            _, link = await ws_connect(
                lambda: Link(on_text, on_close),
                self._url(path),
                websocket_handshake_timeout=self.cfg.open_timeout,
                max_frame_size=1 << 20,
                enable_auto_ping=False,  # the server pings; answering is enough
            )
        assert isinstance(link, Link)
        return link

    async def _request(self, ws: Link, cs: ClientSession[_Pending], mark: str, params: dict[str, Any]) -> Any:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        _, text = cs.request(mark, params, _Pending(-1, time.monotonic_ns(), fut))
        await ws.send(text)
        return await asyncio.wait_for(fut, self.cfg.request_timeout)

    async def _connect_visitor(self, v: _Visitor) -> None:
        t = self.cfg.target
        path = {
            "kefu": "/ws/visitor",
            "echo": "/echo",
            "relay": f"/relay/v/{v.idx}",
            "broadcast": "/broadcast",
        }[t]
        v.ws = await self._open(
            path, functools.partial(self._visitor_text, v), functools.partial(self._visitor_closed, v)
        )
        if t == "kefu":
            params: dict[str, Any] = {"name": v.name}
            if v.key is not None:
                params["visitorKey"] = v.key
                params["lastSeq"] = v.cs.last_seq
            reply = await self._request(v.ws, v.cs, "hello", params)
            if reply.get("subMark") != "success":
                raise RuntimeError(f"hello refused: {reply}")
            payload = reply.get("payload") or {}
            v.key = payload.get("visitorKey", v.key)
            session = payload.get("session")
            if isinstance(session, dict):
                v.session = session.get("id") or session.get("sessionId")
            elif isinstance(session, str):
                v.session = session
            if v.session and session and (not isinstance(session, dict) or session.get("status") != "queued"):
                v.assigned.set()
        else:
            v.assigned.set()
        v.connected.set()

    async def _connect_agent(self, a: _Agent) -> None:
        kefu = self.cfg.target == "kefu"
        if not kefu and self.cfg.target != "relay":
            return  # echo and broadcast: no agents
        if kefu and not a.token:
            a.token = await self._login(a.name)
        a.ws = await self._open(
            "/ws/agent" if kefu else f"/relay/a/{a.idx}",
            functools.partial(self._agent_text, a),
            functools.partial(self._agent_closed, a),
        )
        if kefu:
            reply = await self._request(a.ws, a.cs, "auth", {"token": a.token, "lastSeq": a.cs.last_seq})
            if reply.get("subMark") != "success":
                raise RuntimeError(f"auth refused: {reply}")
            reply = await self._request(a.ws, a.cs, "setAgentState", {"state": "idle"})
            if reply.get("subMark") == "error":
                raise RuntimeError(f"setAgentState idle refused: {reply}")

    async def _login(self, name: str) -> str:
        import httpx

        async with httpx.AsyncClient(base_url=self.cfg.http_url, timeout=60) as client:
            r = await client.post("/api/login", json={"name": name, "password": self.cfg.agent_password})
            r.raise_for_status()
            body = r.json()
            token = body.get("token") or (body.get("payload") or {}).get("token")
            if not token:
                raise RuntimeError(f"/api/login answered no token: {body}")
            return str(token)

    async def _gather_limited(self, coros: list[Any], limit: int) -> list[BaseException | None]:
        sem = asyncio.Semaphore(limit)

        async def one(c: Any) -> BaseException | None:
            async with sem:
                try:
                    await c
                except (OSError, TimeoutError, WSError, RuntimeError) as exc:
                    return exc
                return None

        return list(await asyncio.gather(*(one(c) for c in coros)))

    # --- readers ----------------------------------------------------------------------

    @staticmethod
    def _answered(got: Answer[_Pending]) -> _Pending:
        p = got.pending.tag
        if p.fut is not None and not p.fut.done():
            p.fut.set_result(got.msg)
        return p

    def _acked(self, who: _Visitor | _Agent, msg: dict[str, Any], got: Answer[_Pending]) -> _Pending | None:
        """An answer to one of ``who``'s requests: the waiter told; for a counted send (``n``),
        an error counted, else the send acknowledged and returned."""
        p = self._answered(got)
        if p.n < 0:
            return None
        if msg.get("subMark") == "error":
            who.errors[str((msg.get("error") or {}).get("code"))] += 1
            return None
        who.acked.add(p.n)
        return p

    def _visitor_text(self, v: _Visitor, raw: str) -> None:
        now = time.monotonic_ns()
        msg = json.loads(raw)  # json, not the strict decoder: the generator's own cost stays low
        if self.cfg.target == "broadcast":  # one publisher's messages, to everyone
            parts = str((msg.get("params") or {}).get("text", "")).split("|", 5)
            if len(parts) > 4 and parts[0] == "b":
                self.latency[parts[1]].append(now - int(parts[4]))
                self.recv_at[parts[1]].append(now)
            return
        got = v.cs.receive_message(msg)
        if isinstance(got, Answer):
            p = self._acked(v, msg, got)
            if p is not None:
                if p.cid is not None:
                    v.outbox.pop(p.cid, None)
                self.ack_latency[p.phase].append(now - p.t_ns)
                self.ack_at[p.phase].append(now)
            return
        if not isinstance(got, Push):
            return  # a replayed push (counted by the session), or an answer to no request
        sub = msg.get("subMark")
        payload = msg.get("payload") or {}
        if sub == "sessionAssigned":
            v.session = payload.get("sessionId", v.session)
            v.assigned.set()
        elif sub == "message":
            text = payload.get("text", "")
            if text.startswith("a|"):
                parts = text.split("|", 4)
                v.got[(int(parts[1]), int(parts[2]))] += 1
        elif sub == "sessionClosed":
            v.session = None

    @staticmethod
    def _visitor_closed(v: _Visitor, link: Link) -> None:
        _fail_pending(v.cs)
        if v.ws is link:
            v.connected.clear()

    def _agent_text(self, a: _Agent, raw: str) -> None:
        now = time.monotonic_ns()
        msg = json.loads(raw)
        got = a.cs.receive_message(msg)
        if isinstance(got, Answer):
            self._acked(a, msg, got)
            return
        if isinstance(got, Dropped):
            return  # a replayed push (counted by the session)
        if "params" in msg:  # the baseline relays the visitor's envelope as it is
            text = (msg.get("params") or {}).get("text", "")
        elif isinstance(got, Stray):
            return  # an answer to no open request
        else:
            sub = msg.get("subMark")
            payload = msg.get("payload") or {}
            if sub == "sessionAssigned":
                sid = payload.get("sessionId")
                if sid and sid not in a.sessions:
                    a.sessions.append(sid)
                # messages sent while the session waited come as its history
                for h in payload.get("messages") or ():
                    self._delivered(str(h.get("text", "")), now)
                return
            if sub == "sessionClosed":
                sid = payload.get("sessionId")
                if sid in a.sessions:
                    a.sessions.remove(sid)
                return
            if sub != "message":
                return
            text = payload.get("text", "")
        self._delivered(text, now)

    @staticmethod
    def _agent_closed(a: _Agent, link: Link) -> None:
        _fail_pending(a.cs)

    def _delivered(self, text: str, now: int) -> None:
        """A visitor's message reached an agent: count it, and its latency by phase."""
        if not text.startswith("b|"):
            self.unparsed += 1
            return
        parts = text.split("|", 5)
        phase, vi, n, t = parts[1], int(parts[2]), int(parts[3]), int(parts[4])
        self.received[(vi, n)] += 1
        self.latency[phase].append(now - t)
        self.recv_at[phase].append(now)

    # --- sending ----------------------------------------------------------------------

    async def _visitor_send(self, v: _Visitor, phase: str, *, idempotent: bool = False) -> _Pending | None:
        n = v.next_n
        v.next_n += 1
        t = time.monotonic_ns()
        text = _pad(f"b|{phase}|{v.idx}|{n}|{t}|", self.cfg.msg_size)
        cid = f"c{v.idx}-{n}" if idempotent else None
        if cid is not None:
            v.outbox[cid] = (n, text)
        if v.ws is None or not v.connected.is_set():
            return None  # queued in the outbox (idempotent) or dropped (not counted as sent)
        return await self._send_text(v, n, text, cid, t, phase)

    async def _send_text(
        self, v: _Visitor, n: int, text: str, cid: str | None, t: int, phase: str
    ) -> _Pending | None:
        assert v.ws is not None
        params: dict[str, Any] = {"text": text}
        if cid is not None:
            params["clientMsgId"] = cid
        p = _Pending(n, t, asyncio.get_running_loop().create_future(), cid, phase)
        rid, frame = v.cs.request("sendMessage", params, p)
        try:
            await v.ws.send(frame)
        except LinkClosed:
            v.cs.forget(rid)
            return None
        return p

    async def _agent_send(self, a: _Agent) -> None:
        if a.ws is None or not a.sessions:
            return
        n = a.next_n
        a.next_n += 1
        sid = a.sessions[n % len(a.sessions)]
        text = _pad(f"a|{a.idx}|{n}|{time.monotonic_ns()}|", self.cfg.msg_size)
        params = {"session_id": sid, "text": text, "clientMsgId": f"a{a.idx}-{n}"}
        _, frame = a.cs.request("sendMessage", params, _Pending(n, time.monotonic_ns(), None))
        with contextlib.suppress(LinkClosed):
            await a.ws.send(frame)

    # --- phases -----------------------------------------------------------------------

    async def connect_agents(self) -> dict[str, Any]:
        t0 = time.monotonic()
        errs = await self._gather_limited([self._connect_agent(a) for a in self.agents], 50)
        bad = [repr(e) for e in errs if e is not None]
        return {"agents": len(self.agents), "failed": len(bad), "errors": bad[:5], "s": time.monotonic() - t0}

    async def connect_visitors(self) -> dict[str, Any]:
        t0 = time.monotonic()
        errs = await self._gather_limited(
            [self._connect_visitor(v) for v in self.visitors], self.cfg.connect_concurrency
        )
        bad = [repr(e) for e in errs if e is not None]
        return {
            "visitors": len(self.visitors),
            "failed": len(bad),
            "errors": bad[:5],
            "s": time.monotonic() - t0,
        }

    async def open_sessions(self, active: int, wait_s: float, concurrency: int) -> dict[str, Any]:
        """Each active visitor's first message opens its session; wait until it is assigned.

        ``concurrency`` visitors at a time (send → assigned): kefu pushes every queue change
        to every agent, so a long queue costs O(queue × agents); this keeps it short."""
        t0 = time.monotonic()
        deadline = t0 + wait_s
        retried = 0
        if self.cfg.target == "kefu":
            sem = asyncio.Semaphore(max(1, concurrency))

            def left() -> float:
                return max(0.01, deadline - time.monotonic())

            async def one(v: _Visitor) -> None:
                nonlocal retried
                if v.assigned.is_set() or v.ws is None:
                    return
                async with sem:
                    for attempt in range(3):  # an error answer (e.g. internal) is retried, as a client would
                        p = await self._visitor_send(v, "open", idempotent=True)
                        if p is None or p.fut is None:
                            return
                        try:
                            reply = await asyncio.wait_for(p.fut, left())
                        except (TimeoutError, ConnectionError):
                            return
                        if reply.get("subMark") != "error":
                            break
                        retried += 1
                        v.outbox.clear()
                        await asyncio.sleep(0.2 * (attempt + 1))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(v.assigned.wait(), left())

            await asyncio.gather(*(one(v) for v in self.visitors if v.idx < active))
        assigned = sum(1 for v in self.visitors if v.assigned.is_set() and v.idx < active)
        return {
            "retried": retried,
            "assigned": assigned,
            "visitors": len(self.visitors),
            "agent_sessions": sum(len(a.sessions) for a in self.agents),
            "s": time.monotonic() - t0,
        }

    async def rate(self, phase: str, rate: float, duration: float, active: int) -> dict[str, Any]:
        """Open loop: ``rate`` messages/s from this worker's active visitors, round-robin."""
        live = [v for v in self.visitors if v.ws is not None and v.idx < active and v.assigned.is_set()]
        if not live or rate <= 0:
            return {"sent": 0, "lag_max_ms": 0.0}
        start = time.monotonic()
        sent = 0
        lag_max = 0.0
        order = itertools.cycle(live)
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= duration:
                break
            due = int(elapsed * rate) - sent
            if due > 0:
                lag_max = max(lag_max, due / rate)
            for _ in range(max(0, due)):
                await self._visitor_send(next(order), phase)
                sent += 1
            await asyncio.sleep(0.002)
        return {"sent": sent, "lag_max_ms": lag_max * 1000, "s": time.monotonic() - start}

    async def saturate(self, phase: str, duration: float, active: int) -> dict[str, Any]:
        """Closed loop: each active visitor sends, awaits its acknowledgement, sends again."""
        live = [v for v in self.visitors if v.ws is not None and v.idx < active and v.assigned.is_set()]
        start = time.monotonic()
        end = start + duration
        stalled = 0

        async def one(v: _Visitor) -> None:
            nonlocal stalled
            while time.monotonic() < end:
                p = await self._visitor_send(v, phase)
                if p is None or p.fut is None:
                    return
                try:
                    await asyncio.wait_for(p.fut, max(0.1, end - time.monotonic() + self.cfg.request_timeout))
                except (TimeoutError, ConnectionError):
                    stalled += 1
                    return

        await asyncio.gather(*(one(v) for v in live))
        return {
            "visitors": len(live),
            "stalled": stalled,
            "s": time.monotonic() - start,
            "start_ns": int(start * _NS),
        }

    async def broadcast(self, phase: str, rate: float, duration: float) -> dict[str, Any]:
        """The first visitor of worker 0 publishes ``rate`` messages/s; the baseline's
        ``/broadcast`` sends each to every connected client."""
        if self.index != 0 or not self.visitors or self.visitors[0].ws is None:
            await asyncio.sleep(duration)
            return {"sent": 0}
        v = self.visitors[0]
        assert v.ws is not None
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < duration:
            for _ in range(max(0, int(elapsed * rate) - sent)):
                t = time.monotonic_ns()
                text = _pad(f"b|{phase}|{v.idx}|{sent}|{t}|", self.cfg.msg_size)
                await v.ws.send(encode(request_message("sendMessage", {"text": text}, rid=f"m{sent}")))
                sent += 1
            await asyncio.sleep(0.002)
        return {"sent": sent}

    async def storm(
        self,
        *,
        before: float,
        after: float,
        visitor_rate: float,
        agent_rate: float,
        reconnect_concurrency: int,
        reconnect_timeout: float,
        active: int,
    ) -> dict[str, Any]:
        """Traffic both ways (the ``active`` visitors chat); every visitor drops its
        connection at once and reconnects."""
        stop = asyncio.Event()
        live = [v for v in self.visitors if v.ws is not None]
        chatting = [v for v in live if v.idx < active and v.assigned.is_set()]

        async def visitor_pacer() -> None:
            order = itertools.cycle(chatting)
            start = time.monotonic()
            sent = 0
            while not stop.is_set() and chatting:
                due = int((time.monotonic() - start) * visitor_rate) - sent
                for _ in range(max(0, due)):
                    await self._visitor_send(next(order), "storm", idempotent=True)
                    sent += 1
                await asyncio.sleep(0.005)

        async def agent_pacer() -> None:
            agents = [a for a in self.agents if a.sessions]
            order = itertools.cycle(agents)
            start = time.monotonic()
            sent = 0
            while not stop.is_set() and agents:
                due = int((time.monotonic() - start) * agent_rate) - sent
                for _ in range(max(0, due)):
                    await self._agent_send(next(order))
                    sent += 1
                await asyncio.sleep(0.005)

        pacers = [asyncio.create_task(visitor_pacer()), asyncio.create_task(agent_pacer())]
        await asyncio.sleep(before)
        t_drop = time.monotonic_ns()
        for v in live:
            v.connected.clear()
            if v.ws is not None:
                v.ws.abort()
        back_at: dict[int, int] = {}
        attempts = Counter[str]()
        sem = asyncio.Semaphore(reconnect_concurrency)
        deadline = time.monotonic() + reconnect_timeout

        def left() -> float:
            return max(0.05, deadline - time.monotonic())

        async def reconnect(v: _Visitor) -> None:
            if v.ws is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(v.ws.closed(), 5)
            delay = 0.05
            while time.monotonic() < deadline:
                async with sem:
                    try:
                        await asyncio.wait_for(self._connect_visitor(v), left())
                    except (OSError, TimeoutError, WSError, RuntimeError) as exc:
                        attempts[
                            type(exc).__name__ if not isinstance(exc, WSInvalidStatusError) else "http"
                        ] += 1
                        if v.ws is not None:
                            v.ws.abort()
                        v.ws = None
                    else:
                        back_at[v.idx] = time.monotonic_ns()
                        for cid, (n, text) in list(v.outbox.items()):
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(
                                    self._send_text(v, n, text, cid, time.monotonic_ns(), "retry"), left()
                                )
                        return
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

        await asyncio.gather(*(reconnect(v) for v in live))
        await asyncio.sleep(after)
        stop.set()
        # a send blocks while the server does not read: give the pacers a bounded time to stop
        _, late = await asyncio.wait(pacers, timeout=5)
        for t in late:
            t.cancel()
        await asyncio.gather(*pacers, return_exceptions=True)
        return {
            "dropped": len(live),
            "back": len(back_at),
            "t_drop_ns": t_drop,
            "t_last_back_ns": max(back_at.values()) if back_at else None,
            "retry_reasons": dict(attempts),
        }

    async def counts(self) -> dict[str, Any]:
        return {
            "visitor_acked": sum(len(v.acked) for v in self.visitors),
            "visitor_outbox": sum(len(v.outbox) for v in self.visitors),
            "visitor_pending": sum(len(v.cs) for v in self.visitors),
            "agent_received": sum(self.received.values()),
            "agent_acked": sum(len(a.acked) for a in self.agents),
            "visitor_got": sum(sum(v.got.values()) for v in self.visitors),
        }

    async def resend_outbox(self) -> dict[str, Any]:
        """Send again every idempotent message not yet acknowledged (same clientMsgId)."""
        n = 0
        for v in self.visitors:
            if v.ws is None or not v.connected.is_set():
                continue
            for cid, (num, text) in list(v.outbox.items()):
                if not any(p.tag.cid == cid for p in v.cs.pending()):
                    await self._send_text(v, num, text, cid, time.monotonic_ns(), "retry")
                    n += 1
        return {"resent": n}

    async def report(self) -> dict[str, Any]:
        return {
            "visitor_acked": {v.idx: sorted(v.acked) for v in self.visitors},
            "visitor_outbox": {
                v.idx: sorted(n for n, _ in v.outbox.values()) for v in self.visitors if v.outbox
            },
            "visitor_errors": dict(sum((v.errors for v in self.visitors), Counter())),
            "agent_received": dict(self.received),
            "latency_ns": {k: list(val) for k, val in self.latency.items()},
            "recv_at_ns": {k: list(val) for k, val in self.recv_at.items()},
            "ack_latency_ns": {k: list(val) for k, val in self.ack_latency.items()},
            "ack_at_ns": {k: list(val) for k, val in self.ack_at.items()},
            "agent_acked": {a.idx: sorted(a.acked) for a in self.agents},
            "agent_errors": dict(sum((a.errors for a in self.agents), Counter())),
            "visitor_got": {f"{k}/{n}": c for v in self.visitors for (k, n), c in v.got.items()},
            "visitor_overlap": sum(v.cs.duplicates for v in self.visitors),
            "visitor_gaps": sum(v.cs.gaps for v in self.visitors),
            "agent_gaps": sum(a.cs.gaps for a in self.agents),
            "unparsed": self.unparsed,
        }

    async def reset_records(self) -> dict[str, Any]:
        self.latency.clear()
        self.recv_at.clear()
        self.ack_latency.clear()
        self.ack_at.clear()
        return {}

    async def close(self) -> dict[str, Any]:
        conns = [v.ws for v in self.visitors if v.ws is not None] + [
            a.ws for a in self.agents if a.ws is not None
        ]
        for ws in conns:
            ws.abort()
        await asyncio.gather(*(ws.closed() for ws in conns), return_exceptions=True)
        return {"closed": len(conns)}


async def _serve(conn: Connection, index: int, count: int, cfg: LoadConfig) -> None:
    await serve_worker(conn, Worker(index, count, cfg))


def worker_main(conn: Connection, index: int, count: int, cfg: LoadConfig) -> None:
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    try:
        import uvloop

        uvloop.run(_serve(conn, index, count, cfg))
    except ImportError:
        asyncio.run(_serve(conn, index, count, cfg))


class Pool(WorkerPool):
    """``workers`` load processes running the same phase at once."""

    def __init__(self, cfg: LoadConfig, workers: int = 1) -> None:
        super().__init__(worker_main, cfg, workers, what="load worker")
