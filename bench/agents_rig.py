"""Agents through real plugins and SDKs, visitors on raw sockets: the rig of
scenarios 3–5 (``signalling``, ``state``, ``plugin``).

Theory of operation
-------------------
:class:`RigPool` starts ``workers`` processes (spawned, each with its own
asyncio loop: the default loop, as ``kefu plugin`` and ``kefu server`` run).
Pair *k* (agent *k* and visitor *k*) lives in worker ``k mod W``, so both
ends of each measured message are in the same process and the latency is the
difference of two ``time.monotonic_ns`` readings of one clock.

**kefu** (``target="kefu"``). Agent *k* is a real
:class:`kefu.plugin.Plugin` (``media=None``: ``--no-media``, its own port 0
and data directory) driven by a real :class:`kefu.sdk.IMClient` on the
worker's loop, paired with the token file of the plugin's data directory
(what the SDK does by default), logged in with the spec's ``startLogin`` and
made ready with ``setAgentState``. Visitor *k* is a raw WebSocket client of
``/ws/visitor`` (``hello`` with its name) that answers every invitation with
``answerCall {accept}`` the moment it arrives, as a visitor page does when
its user clicks "accept".

One call (:meth:`RigWorker.calls`): the SDK calls ``callbackToVisitor``
(the spec's call-out API) with a v190307 ``callback(state, payload)``;

- (a) **invite**: from the SDK's call to the visitor's receipt of the
  ``call``/``invited`` push;
- (b) **accept**: from the visitor's ``answerCall`` to the SDK callback with
  the connected code ``006011`` (``acceptSuccess``);

then ``videoDisconnect`` (``005004``, after-call work) and, unless the
server ends after-call work itself (``wrap_up``, scenario 4),
``setAgentState idle`` (``002000``) so the agent is ready for its next call.

**baseline** (``target="baseline"``): the same message pattern through
``bench.baseline_server``'s relay (no JSON parsed in it, no storage). The
plugin's analogue is a minimal relay of the worker (:class:`_StandIn`: a
``websockets`` server of its own on port 0 in front of two upstream sockets,
``/relay/v/<k>`` to send and ``/relay/a/<P+k>`` to listen); the SDK's analogue
a raw client of it that sends and parses JSON envelopes; the visitor listens
on ``/relay/a/<k>`` and sends on ``/relay/v/<P+k>``. So an invitation goes
client → stand-in → relay → visitor and an answer visitor → relay →
stand-in → client: the hops of kefu's SDK → plugin → server → visitor, and
each request is acknowledged (the relay echoes it to its sender, the
stand-in passes the echo on), as kefu answers each request.

``plugin`` (scenario 5) adds two more clients per agent: a raw WebSocket
client of the same plugin (the plugin's ``hello`` with its token), and a
"direct" client of the server's ``/ws/agent`` for another agent account
(``POST /api/login``, ``auth``), which sends the very same request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.common import Log
from bench.procs import WorkerPool, serve_worker
from kefu.protocol.client_session import Answer, ClientSession, Push, Stray

__all__ = ["CallPhase", "RigConfig", "RigPool", "RigWorker", "iso_ns", "latency_ms", "merge", "run_calls"]

Json = dict[str, Any]
T = TypeVar("T")

INVITE_SENT = "003001"  # callVisitor_inviteSendSuccess (inviteSuccess)
ACCEPTED = "006011"  # callVisitor_VisitorAcceptSuccess (acceptSuccess): the call is connected
AGENT_HUNG_UP = "005004"  # callVisitor_agentCloseVideo_answered: after-call work
READY = "002000"  # idle: ready


@dataclass(frozen=True)
class RigConfig:
    """What every worker needs to know; picklable."""

    target: str  # "kefu" | "baseline"
    http_url: str = ""  # kefu: http://127.0.0.1:PORT (login, the plugins' server)
    ws_url: str = ""  # kefu: ws://127.0.0.1:PORT; baseline: the baseline server's ws://…
    pairs: int = 0  # agent k ↔ visitor k
    agent_names: tuple[str, ...] = ()
    direct_names: tuple[str, ...] = ()  # scenario 5: the accounts of the direct clients
    password: str = ""
    visitor_prefix: str = "sv-"
    workdir: str = ""  # the plugins' data directories and the workers' logs go under it
    visitors: bool = True  # a visitor for every agent (scenarios 3 and 4)
    raw_plugin_client: bool = False  # scenario 5: a raw client of each plugin too
    timeout: float = 30.0  # every wait of one step


class _CallError(Exception):
    """One call failed: ``code`` is the error code or the unexpected state."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def iso_ns(text: str) -> int:
    """Nanoseconds since the epoch of an ISO time (the server's ``at``)."""
    dt = datetime.fromisoformat(text)
    return (int(dt.timestamp()) * 1_000_000 + dt.microsecond) * 1000


def latency_ms(records: list[Json], key: str) -> list[float]:
    return [r[key] / 1e6 for r in records if r.get(key) is not None]


def merge(reports: list[Json]) -> Json:
    """The workers' reports of one phase as one: records joined, counters added."""
    out: Json = {"records": [], "errors": Counter(), "failed": 0, "s": 0.0}
    for r in reports:
        out["records"] += r.get("records", [])
        out["errors"].update(r.get("errors", {}))
        out["failed"] += r.get("failed", 0)
        out["s"] = max(out["s"], r.get("s", 0.0))
        for key in ("start_ns", "end_ns"):
            if key in r:
                pick = min if key == "start_ns" else max
                out[key] = pick(out.get(key, r[key]), r[key])
    out["errors"] = dict(out["errors"])
    return out


async def _open(url: str) -> ClientConnection:
    return await connect(
        url,
        compression=None,
        ping_interval=None,  # the server pings; answering is enough
        max_size=1 << 22,
        open_timeout=30,
        close_timeout=2,
        max_queue=None,
    )


class _RawClient:
    """A raw JSON client on one socket: requests by id, answered with the receipt time."""

    def __init__(self, ws: ClientConnection, on_push: Callable[[Json, int], Any] | None = None) -> None:
        self.ws = ws
        # every answer final, pushes in arrival order (the rig counts them itself)
        self._session: ClientSession[asyncio.Future[tuple[int, Json]]] = ClientSession(ordered=False)
        self._on_push = on_push
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic_ns()
                got = self._session.receive_message(json.loads(raw))  # json: the rig's own cost stays low
                if isinstance(got, Answer):
                    if not got.pending.tag.done():
                        got.pending.tag.set_result((now, got.msg))
                elif isinstance(got, Push | Stray) and self._on_push is not None:
                    await self._on_push(got.msg, now)
        except ConnectionClosed:
            pass
        finally:
            for p in self._session.fail_all():
                if not p.tag.done():
                    p.tag.set_exception(ConnectionError("closed"))
                    p.tag.exception()

    async def send(self, mark: str, params: Json | None = None) -> asyncio.Future[tuple[int, Json]]:
        """Send one request; the future of (receipt time, answer)."""
        fut: asyncio.Future[tuple[int, Json]] = asyncio.get_running_loop().create_future()
        _, text = self._session.request(mark, params, fut)
        await self.ws.send(text)
        return fut

    async def request(self, mark: str, params: Json | None = None, within: float = 30.0) -> Json:
        fut = await self.send(mark, params)
        return (await asyncio.wait_for(fut, within))[1]

    async def close(self) -> None:
        self.ws.transport.abort()
        with contextlib.suppress(BaseException):
            await self.reader


# --- kefu: a plugin and its SDK, a raw visitor ------------------------------------------


class _KefuVisitor:
    """Visitor ``name`` on ``/ws/visitor``: accepts every invitation at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: _RawClient | None = None
        self.invited: dict[str, int] = {}  # call id → receipt of call/invited
        self.answered: dict[str, int] = {}  # call id → when answerCall was sent
        self.arrived: dict[str, asyncio.Future[None]] = {}
        self.errors: Counter[str] = Counter()
        self._answers: set[asyncio.Task[None]] = set()

    async def connect(self, ws_url: str) -> None:
        ws = await _open(ws_url + "/ws/visitor")
        self.client = _RawClient(ws, self._push)
        reply = await self.client.request("hello", {"name": self.name})
        if reply.get("subMark") != "success":
            raise RuntimeError(f"hello refused: {reply}")

    def _arrival(self, call_id: str) -> asyncio.Future[None]:
        fut = self.arrived.get(call_id)
        if fut is None:
            fut = self.arrived[call_id] = asyncio.get_running_loop().create_future()
        return fut

    async def _push(self, msg: Json, now: int) -> None:
        payload = msg.get("payload")
        if msg.get("subMark") != "call" or not isinstance(payload, dict) or payload.get("what") != "invited":
            return
        call_id = str(payload.get("callId"))
        self.invited[call_id] = now
        assert self.client is not None
        self.answered[call_id] = time.monotonic_ns()
        answer = await self.client.send("answerCall", {"callId": call_id, "answer": "accept"})
        fut = self._arrival(call_id)
        if not fut.done():
            fut.set_result(None)
        task = asyncio.create_task(self._check(answer))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _check(self, answer: asyncio.Future[tuple[int, Json]]) -> None:
        try:
            _, msg = await asyncio.wait_for(answer, 60)
        except (TimeoutError, ConnectionError):
            self.errors["answerCall: no answer"] += 1
            return
        if msg.get("subMark") == "error":
            self.errors[f"answerCall: {(msg.get('error') or {}).get('code')}"] += 1

    async def wait_invited(self, call_id: str, within: float) -> int:
        await asyncio.wait_for(asyncio.shield(self._arrival(call_id)), within)
        self.arrived.pop(call_id, None)
        return self.invited[call_id]

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class _KefuAgent:
    """Agent ``name``: a real plugin (no media) and a real ``IMClient`` on this loop."""

    def __init__(self, name: str, data_dir: Path) -> None:
        self.name = name
        self.data_dir = data_dir
        self.plugin: Any = None
        self.sdk: Any = None
        self.states: Log[tuple[int, int, str, Json]] = Log()  # stateChange: mono, wall, code, payload
        self.raw: _RawClient | None = None  # scenario 5: a raw client of the plugin

    async def start(self, cfg: RigConfig) -> None:
        from kefu.plugin import Plugin, PluginSettings
        from kefu.sdk import IMClient

        self.plugin = Plugin(
            PluginSettings(
                server_url=cfg.http_url,
                port=0,
                data_dir=self.data_dir,
                media=None,  # --no-media: calls are signalling only
                # the SDK's flood guard (100 messages / 10 s) would throttle a closed loop:
                # what is measured is the path, not the guard
                rate_limit=1_000_000,
                request_timeout=cfg.timeout,
                login_timeout=cfg.timeout,
                allow_many=cfg.raw_plugin_client,
            )
        )
        await self.plugin.start()
        loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = loop.create_future()

        def sso_ready(_data: Json) -> None:
            if not connected.done():
                connected.set_result(None)

        self.sdk = IMClient(
            {
                "baseWsUrl": self.plugin.url,
                "ssoTo": f"{cfg.http_url}/agent",
                "dataDir": str(self.data_dir),  # the pairing token, read from plugin.token
                "ssoReady": sso_ready,
            }
        )
        self.sdk.initInnerCallBack({"stateChange": self._state_change})
        await asyncio.wait_for(connected, cfg.timeout)
        url = f"{cfg.http_url}/doLogin?name={self.name}&pwd={cfg.password}&returnTo="
        login = await asyncio.wait_for(self.sdk.startLogin({"data": {"url": url}}), cfg.timeout)
        if login.get("subMark") != "success":
            raise RuntimeError(f"startLogin failed for {self.name}: {login}")
        ready = await asyncio.wait_for(self.sdk.setAgentState({"state": "idle"}), cfg.timeout)
        if ready.get("state") != READY:
            raise RuntimeError(f"setAgentState idle failed for {self.name}: {ready}")
        if cfg.raw_plugin_client:
            from kefu.plugin.security import PairingToken

            token = PairingToken.read(self.plugin.settings.token_path)
            self.raw = _RawClient(await _open(self.plugin.url))
            hello = await self.raw.request("hello", {"token": token})
            if hello.get("subMark") != "success":
                raise RuntimeError(f"the plugin refused a raw client: {hello}")

    def _state_change(self, state: Any, payload: Any) -> None:
        now, wall = time.monotonic_ns(), time.time_ns()
        self.states.add((now, wall, str(state), payload if isinstance(payload, dict) else {}))

    async def close(self) -> None:
        if self.raw is not None:
            await self.raw.close()
        if self.sdk is not None:
            with contextlib.suppress(Exception):
                await self.sdk.aclose()
        if self.plugin is not None:
            with contextlib.suppress(Exception):
                await self.plugin.aclose()


class _Direct:
    """Scenario 5: an SDK-like client on the server's ``/ws/agent`` (no plugin)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: _RawClient | None = None

    async def start(self, cfg: RigConfig) -> None:
        import httpx

        async with httpx.AsyncClient(base_url=cfg.http_url, timeout=cfg.timeout) as http:
            r = await http.post("/api/login", json={"name": self.name, "password": cfg.password})
            r.raise_for_status()
            body = r.json()
        token = body.get("token") or (body.get("payload") or {}).get("token")
        self.client = _RawClient(await _open(cfg.ws_url + "/ws/agent"), self._ignore)
        reply = await self.client.request("auth", {"token": token, "lastSeq": 0})
        if reply.get("subMark") != "success":
            raise RuntimeError(f"auth refused: {reply}")

    async def _ignore(self, msg: Json, now: int) -> None:
        return None

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


# --- baseline: the same pattern through the minimal relay ------------------------------


class _StandIn:
    """The plugin's analogue: a ``websockets`` server of its own in front of the relay."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.sdk_ws: ServerConnection | None = None
        self.up_send: ClientConnection | None = None
        self.up_listen: ClientConnection | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.url = ""

    async def start(self, base: str, k: int, pairs: int) -> None:
        self.up_send = await _open(f"{base}/relay/v/{k}")
        self.up_listen = await _open(f"{base}/relay/a/{pairs + k}")
        self.server = await serve(self._handler, "127.0.0.1", 0, compression=None, max_size=1 << 22)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        self.tasks = [
            asyncio.create_task(self._pump(self.up_send)),
            asyncio.create_task(self._pump(self.up_listen)),
        ]

    async def _handler(self, ws: ServerConnection) -> None:
        self.sdk_ws = ws
        assert self.up_send is not None
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:
                await self.up_send.send(msg)

    async def _pump(self, src: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in src:
                if self.sdk_ws is not None:
                    await self.sdk_ws.send(msg)

    async def close(self) -> None:
        for ws in (self.up_send, self.up_listen):
            if ws is not None:
                ws.transport.abort()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class _BaselinePair:
    """Pair ``k`` of the baseline: stand-in plugin, SDK-like client, visitor."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.stand_in = _StandIn()
        self.sdk: ClientConnection | None = None
        self.v_listen: ClientConnection | None = None
        self.v_send: ClientConnection | None = None
        self.acks: dict[str, asyncio.Future[int]] = {}
        self.accepted: dict[str, asyncio.Future[int]] = {}
        self.pushes: Log[tuple[int, Json]] = Log()
        self.invited: dict[str, int] = {}
        self.answered: dict[str, int] = {}
        self.arrived: dict[str, asyncio.Future[None]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count()

    async def start(self, base: str, pairs: int) -> None:
        await self.stand_in.start(base, self.k, pairs)
        self.v_listen = await _open(f"{base}/relay/a/{self.k}")
        self.v_send = await _open(f"{base}/relay/v/{pairs + self.k}")
        self.sdk = await _open(self.stand_in.url)
        self.tasks = [
            asyncio.create_task(self._sdk_reader(self.sdk)),
            asyncio.create_task(self._visitor_reader(self.v_listen)),
            asyncio.create_task(self._drain(self.v_send)),
        ]

    def _future(self, table: dict[str, asyncio.Future[T]], key: str) -> asyncio.Future[T]:
        fut = table.get(key)
        if fut is None:
            fut = table[key] = asyncio.get_running_loop().create_future()
        return fut

    async def _sdk_reader(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                now = time.monotonic_ns()
                msg = json.loads(raw)
                if msg.get("from") == "sdk":  # the relay's echo: the request's acknowledgement
                    fut = self.acks.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(now)
                elif msg.get("mark") == "accept":
                    fut = self._future(self.accepted, msg["call"])
                    if not fut.done():
                        fut.set_result(now)
                else:
                    self.pushes.add((now, msg))

    async def _visitor_reader(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                now = time.monotonic_ns()
                msg = json.loads(raw)
                if msg.get("mark") != "invite":
                    continue
                call = msg["call"]
                self.invited[call] = now
                self.answered[call] = time.monotonic_ns()
                assert self.v_send is not None
                await self.v_send.send(
                    json.dumps({"v": 1, "id": f"a{call}", "mark": "accept", "from": "visitor", "call": call})
                )
                fut = self._future(self.arrived, call)
                if not fut.done():
                    fut.set_result(None)

    async def _drain(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async def request(self, mark: str, within: float, **extra: Any) -> tuple[int, int]:
        """Send ``mark`` from the SDK-like client; (sent, acknowledged) times."""
        rid = f"s{next(self._ids)}"
        fut = self._future(self.acks, rid)
        assert self.sdk is not None
        t = time.monotonic_ns()
        await self.sdk.send(json.dumps({"v": 1, "id": rid, "mark": mark, "from": "sdk", "t": t, **extra}))
        return t, await asyncio.wait_for(fut, within)

    async def push_state(self) -> int:
        """The visitor side sends a "state" push to the client (scenario 4's baseline)."""
        assert self.v_send is not None
        t = time.monotonic_ns()
        await self.v_send.send(json.dumps({"v": 1, "mark": "state", "from": "visitor", "t": t}))
        return t

    async def close(self) -> None:
        for ws in (self.sdk, self.v_listen, self.v_send):
            if ws is not None:
                ws.transport.abort()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.stand_in.close()


# --- the worker ---------------------------------------------------------------------


@dataclass
class _Pair:
    k: int
    agent: _KefuAgent | None = None
    visitor: _KefuVisitor | None = None
    direct: _Direct | None = None
    base: _BaselinePair | None = None
    ok: bool = False  # set up without an error


class RigWorker:
    """One worker's share of the pairs, and the phases it runs."""

    def __init__(self, index: int, count: int, cfg: RigConfig) -> None:
        self.cfg = cfg
        self.index = index
        self.pairs = [_Pair(k) for k in range(index, cfg.pairs, count)]

    # --- setup

    async def setup(self) -> Json:
        t0 = time.monotonic()
        sem = asyncio.Semaphore(10)
        failed: list[str] = []

        async def one(p: _Pair) -> None:
            async with sem:
                try:
                    await self._setup_pair(p)
                    p.ok = True
                except Exception as exc:
                    failed.append(f"pair {p.k}: {type(exc).__name__}: {exc}"[:300])

        await asyncio.gather(*(one(p) for p in self.pairs))
        return {
            "pairs": len(self.pairs),
            "failed": len(failed),
            "errors": failed[:5],
            "s": time.monotonic() - t0,
        }

    @property
    def ready(self) -> list[_Pair]:
        return [p for p in self.pairs if p.ok]

    async def _setup_pair(self, p: _Pair) -> None:
        cfg = self.cfg
        if cfg.target == "baseline":
            p.base = _BaselinePair(p.k)
            await p.base.start(cfg.ws_url, cfg.pairs)
            return
        if cfg.visitors:
            p.visitor = _KefuVisitor(f"{cfg.visitor_prefix}{p.k}")
            await p.visitor.connect(cfg.ws_url)
        p.agent = _KefuAgent(cfg.agent_names[p.k], Path(cfg.workdir) / "plugins" / f"agent-{p.k}")
        await p.agent.start(cfg)
        if cfg.direct_names:
            p.direct = _Direct(cfg.direct_names[p.k])
            await p.direct.start(cfg)

    # --- scenarios 3 and 4: calls

    async def calls(
        self, *, per_agent: int, rate: float, start_ns: int, wrap_up: float = 0.0, ready: bool = True
    ) -> Json:
        """Every agent makes ``per_agent`` calls to its visitor; over all workers the calls
        start ``rate`` per second, evenly spaced (an agent still in its previous call
        starts the next one as soon as that ends: the lag is recorded)."""
        records: list[Json] = []
        errors: Counter[str] = Counter()
        n = self.cfg.pairs

        async def agent_loop(p: _Pair) -> None:
            for j in range(per_agent):
                slot = start_ns + int((j * n + p.k) / rate * 1e9)
                delay = (slot - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                lag = max(0, time.monotonic_ns() - slot)
                try:
                    if p.base is not None:
                        rec = await self._baseline_call(p.base, f"{p.k}-{j}", wrap_up=wrap_up)
                    else:
                        rec = await self._kefu_call(p, wrap_up=wrap_up, ready=ready)
                except _CallError as exc:
                    errors[exc.code] += 1
                    await self._recover(p)
                    continue
                except (TimeoutError, ConnectionError, ConnectionClosed) as exc:
                    errors[f"{type(exc).__name__}"] += 1
                    await self._recover(p)
                    continue
                rec["k"], rec["j"], rec["lag_ns"] = p.k, j, lag
                records.append(rec)

        t0 = time.monotonic()
        await asyncio.gather(*(agent_loop(p) for p in self.ready))
        for p in self.pairs:
            if p.visitor is not None:
                errors.update(p.visitor.errors)
                p.visitor.errors.clear()
        return {
            "records": records,
            "errors": dict(errors),
            "failed": sum(errors.values()),
            "s": time.monotonic() - t0,
            "start_ns": start_ns,
            "end_ns": time.monotonic_ns(),
        }

    async def _kefu_call(self, p: _Pair, *, wrap_up: float, ready: bool) -> Json:
        a, v, timeout = p.agent, p.visitor, self.cfg.timeout
        assert a is not None and v is not None
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[int] = loop.create_future()
        seen: dict[str, int] = {}

        def callback(state: Any, payload: Any) -> None:  # v190307: callback(state, payload)
            now = time.monotonic_ns()
            seen.setdefault(str(state), now)
            if accepted.done():
                return
            if state == ACCEPTED:
                accepted.set_result(now)
            elif state != INVITE_SENT:
                err = payload.get("error") if isinstance(payload, dict) else None
                code = (err or {}).get("code") if isinstance(err, dict) else None
                accepted.set_exception(_CallError(f"callbackToVisitor: {code or state}"))

        mark = len(a.states.items)
        t_invite = time.monotonic_ns()
        first = await asyncio.wait_for(
            a.sdk.callbackToVisitor({"visitorName": v.name, "startVideo": True}, callback), timeout
        )
        if first.get("state") not in (INVITE_SENT, ACCEPTED):  # the first answer; its progress follows
            err = first.get("error") or {}
            if accepted.done():
                accepted.exception()  # retrieved: the reason is raised here
            else:
                accepted.cancel()
            raise _CallError(f"callbackToVisitor: {err.get('code') or first.get('state')}")
        call_id = str((first.get("payload") or {}).get("callId"))
        t_accepted = await asyncio.wait_for(accepted, timeout)
        t_invited = await v.wait_invited(call_id, timeout)
        t_answered = v.answered.pop(call_id)
        v.invited.pop(call_id, None)
        t_hang = time.monotonic_ns()
        hung = await asyncio.wait_for(a.sdk.videoDisconnect(None), timeout)
        t_hung = time.monotonic_ns()
        if hung.get("state") != AGENT_HUNG_UP:
            raise _CallError(f"videoDisconnect: {(hung.get('error') or {}).get('code') or hung.get('state')}")
        rec: Json = {
            "invite_ns": t_invited - t_invite,
            "accept_ns": t_accepted - t_answered,
            "reply_ns": seen.get(INVITE_SENT, t_invite) - t_invite,
            "hangup_ns": t_hung - t_hang,
        }
        if wrap_up > 0:
            # the server ends after-call work itself: its state push is what is measured
            _, _, _, acw = await a.states.find(lambda e: e[2] == AGENT_HUNG_UP, timeout, start=mark)
            _, wall, _, back = await a.states.find(
                lambda e: e[2] == READY and e[3].get("event") == "wrapUpTimeout",
                wrap_up + timeout,
                start=mark,
            )
            at, acw_at = iso_ns(str(back["at"])), iso_ns(str(acw["at"]))
            rec["push_ns"] = wall - at  # the server's change → the SDK's stateChange
            rec["due_ns"] = wall - (acw_at + int(wrap_up * 1e9))  # the timer's due time → the SDK
            rec["late_ns"] = at - (acw_at + int(wrap_up * 1e9))  # the server's own lateness
        elif ready:
            t_ready = time.monotonic_ns()
            back = await asyncio.wait_for(a.sdk.setAgentState({"state": "idle"}), timeout)
            if back.get("state") != READY:
                raise _CallError(
                    f"setAgentState: {(back.get('error') or {}).get('code') or back.get('state')}"
                )
            rec["ready_ns"] = time.monotonic_ns() - t_ready
        rec["cycle_ns"] = time.monotonic_ns() - t_invite
        return rec

    async def _baseline_call(self, b: _BaselinePair, call: str, *, wrap_up: float) -> Json:
        timeout = self.cfg.timeout
        accepted = b._future(b.accepted, call)
        arrived = b._future(b.arrived, call)
        t_invite, t_ack = await b.request("invite", timeout, call=call)
        t_accepted = await asyncio.wait_for(accepted, timeout)
        await asyncio.wait_for(arrived, timeout)
        b.accepted.pop(call, None)
        b.arrived.pop(call, None)
        t_invited, t_answered = b.invited.pop(call), b.answered.pop(call)
        t_hang, t_hung = await b.request("hangup", timeout, call=call)
        rec: Json = {
            "invite_ns": t_invited - t_invite,
            "accept_ns": t_accepted - t_answered,
            "reply_ns": t_ack - t_invite,
            "hangup_ns": t_hung - t_hang,
        }
        if wrap_up > 0:
            mark = len(b.pushes.items)
            await asyncio.sleep(wrap_up)  # the stand-in "server" ends after-call work
            sent = await b.push_state()
            got, _ = await b.pushes.find(lambda e: e[1].get("t") == sent, timeout, start=mark)
            rec["push_ns"] = got - sent
        else:
            t_ready, t_done = await b.request("ready", timeout, call=call)
            rec["ready_ns"] = t_done - t_ready
        rec["cycle_ns"] = time.monotonic_ns() - t_invite
        return rec

    async def _recover(self, p: _Pair) -> None:
        """After a failed call: hang up whatever is left and get ready again (errors ignored)."""
        if p.agent is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(p.agent.sdk.videoDisconnect(None), self.cfg.timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(p.agent.sdk.setAgentState({"state": "idle"}), self.cfg.timeout)

    # --- scenario 5: one request by three paths

    async def _one_request(self, p: _Pair, path: str, mark: str) -> int:
        """The round trip of ``mark`` by ``path`` in ns; raises _CallError on an error answer."""
        timeout = self.cfg.timeout
        if path == "sdk":
            assert p.agent is not None
            fut: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()

            def callback(state: Any, payload: Any) -> None:
                if not fut.done():
                    fut.set_result((time.monotonic_ns(), payload))

            t0 = time.monotonic_ns()
            getattr(p.agent.sdk, mark)(None, callback)
            t1, payload = await asyncio.wait_for(fut, timeout)
            if isinstance(payload, dict) and "error" in payload:
                raise _CallError(f"{mark}: {(payload['error'] or {}).get('code')}")
            return t1 - t0
        client = p.agent.raw if path == "plugin" and p.agent is not None else None
        if path == "direct" and p.direct is not None:
            client = p.direct.client
        if client is None:
            raise _CallError(f"no {path} client")
        t0 = time.monotonic_ns()
        answer = await client.send(mark)
        t1, msg = await asyncio.wait_for(answer, timeout)
        if msg.get("subMark") == "error":
            raise _CallError(f"{mark}: {(msg.get('error') or {}).get('code')}")
        return t1 - t0

    async def requests(
        self, *, paths: list[str], mark: str, start_ns: int, duration: float, rate: float | None = None
    ) -> Json:
        """``mark`` by ``paths`` (``sdk``: IMClient → plugin → server; ``plugin``: a raw client →
        plugin → server; ``direct``: a raw client → server), request *j* of agent *k* by
        ``paths[(j + k) mod len(paths)]``: several paths interleave, so they are measured in
        the same conditions. With ``rate``: open loop, the requests of all workers evenly
        spaced at ``rate`` per second; without: closed loop, each agent sends its next
        request when the last one is answered."""
        records: list[Json] = []
        errors: Counter[str] = Counter()
        n = self.cfg.pairs
        end_ns = start_ns + int(duration * 1e9)
        inflight: set[asyncio.Task[None]] = set()

        async def one(p: _Pair, path: str) -> None:
            try:
                records.append({"rtt_ns": await self._one_request(p, path, mark), "path": path})
            except _CallError as exc:
                errors[f"{path}: {exc.code}"] += 1
            except (TimeoutError, ConnectionError, ConnectionClosed) as exc:
                errors[f"{path}: {type(exc).__name__}"] += 1

        async def open_loop(p: _Pair) -> None:
            assert rate is not None
            for j in itertools.count():
                slot = start_ns + int((j * n + p.k) / rate * 1e9)
                if slot >= end_ns:
                    return
                delay = (slot - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(p, paths[(j + p.k) % len(paths)]))
                inflight.add(task)
                task.add_done_callback(inflight.discard)

        async def closed_loop(p: _Pair) -> None:
            for j in itertools.count():
                if time.monotonic_ns() >= end_ns:
                    return
                await one(p, paths[(j + p.k) % len(paths)])

        delay = (start_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.monotonic()
        await asyncio.gather(*((open_loop if rate else closed_loop)(p) for p in self.ready))
        if inflight:
            await asyncio.wait(set(inflight), timeout=self.cfg.timeout + 5)
        return {
            "records": records,
            "errors": dict(errors),
            "failed": sum(errors.values()),
            "s": time.monotonic() - t0,
            "start_ns": start_ns,
            "end_ns": time.monotonic_ns(),
        }

    async def close(self) -> Json:
        for p in self.pairs:
            for part in (p.direct, p.agent, p.visitor, p.base):
                if part is not None:
                    with contextlib.suppress(Exception):
                        await part.close()
        return {"closed": len(self.pairs)}


async def _serve(conn: Connection, index: int, count: int, cfg: RigConfig) -> None:
    await serve_worker(conn, RigWorker(index, count, cfg))


def _worker_main(conn: Connection, index: int, count: int, cfg: RigConfig) -> None:
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    if cfg.workdir:  # the plugins' log lines go to a file, not into the tables
        logging.basicConfig(
            filename=str(Path(cfg.workdir) / f"rig-worker-{index}.log"),
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    asyncio.run(_serve(conn, index, count, cfg))  # asyncio's own loop, as kefu plugin runs


class RigPool(WorkerPool):
    """``workers`` rig processes running the same phase at once."""

    def __init__(self, cfg: RigConfig, workers: int = 1) -> None:
        super().__init__(_worker_main, cfg, workers, what="rig worker")


# --- one run of calls: a server (kefu or the baseline), a pool, the phases ------------------

CALL_KEYS = ("invite", "accept", "reply", "hangup", "ready", "push", "due", "late", "cycle", "lag")


@dataclass(frozen=True)
class CallPhase:
    """``per_agent`` calls from every agent, ``rate`` calls/s offered over all of them."""

    name: str
    per_agent: int
    rate: float


def run_calls(
    target: str,
    workdir: Path,
    *,
    pairs: int,
    workers: int,
    phases: list[CallPhase],
    wrap_up: float = 0.0,
    setup_timeout: float = 300.0,
) -> Json:
    """Set up ``pairs`` agents and visitors against ``target`` (``kefu``: a ``kefu server``
    process; ``baseline``: ``bench.baseline_server``), run the call ``phases`` one after
    the other, and return the figures of each. ``wrap_up`` > 0: the kefu server ends
    after-call work after that many seconds (scenario 4), the agents do not."""
    from bench.common import machine_busy_pct, percentiles, proc_sample, system_cpu
    from bench.kefu_server import AGENT_PASSWORD, add_agents, agent_names, kefu_process, ws_of
    from bench.procs import ServerProcess, baseline_process

    workdir.mkdir(parents=True, exist_ok=True)
    srv: ServerProcess
    names: tuple[str, ...] = ()
    if target == "baseline":
        srv = baseline_process(workdir / "baseline.log")
    else:
        names = agent_names(pairs)
        add_agents(workdir / "data", names, capacity=5)
        srv = kefu_process(workdir)
        if wrap_up > 0:
            srv.argv += ["--wrap-up-timeout", f"{wrap_up:g}"]
    out: Json = {"target": target, "pairs": pairs, "wrap_up_s": wrap_up, "phases": {}}
    with srv:
        cfg = RigConfig(
            target=target,
            http_url=srv.url if target == "kefu" else "",
            ws_url=ws_of(srv.url) if target == "kefu" else srv.url,
            pairs=pairs,
            agent_names=names,
            password=AGENT_PASSWORD,
            workdir=str(workdir),
        )
        with RigPool(cfg, workers) as pool:
            setup = pool.call("setup", timeout=setup_timeout)
            out["pairs_ready"] = sum(r["pairs"] - r["failed"] for r in setup)
            out["setup_s"] = max(r["s"] for r in setup)
            out["setup_errors"] = [e for r in setup for e in r["errors"]][:5]
            for ph in phases:
                s0, l0, m0 = srv.sample(), [proc_sample(pid) for pid in pool.pids], system_cpu()
                start_ns = time.monotonic_ns() + 300_000_000  # every worker starts at the same moment
                bound = ph.per_agent * (pairs / ph.rate + 2 * cfg.timeout + wrap_up) + 60
                m = merge(
                    pool.call(
                        "calls",
                        timeout=bound,
                        per_agent=ph.per_agent,
                        rate=ph.rate,
                        start_ns=start_ns,
                        wrap_up=wrap_up,
                    )
                )
                s1, l1, m1 = srv.sample(), [proc_sample(pid) for pid in pool.pids], system_cpu()
                records = m["records"]
                span = (m["end_ns"] - m["start_ns"]) / 1e9
                f: Json = {
                    "per_agent": ph.per_agent,
                    "rate_offered": ph.rate,
                    "calls_offered": out["pairs_ready"] * ph.per_agent,
                    "calls_done": len(records),
                    "call_errors": m["errors"],
                    "calls_per_s": len(records) / span if span > 0 else None,
                    "span_s": span,
                    "server_cpu_pct": s1.cpu_percent_since(s0),
                    "load_cpu_pct": sum(b.cpu_percent_since(a) for a, b in zip(l0, l1, strict=True)),
                    "machine_busy_pct": machine_busy_pct(m0, m1),
                    "server_rss_mib": s1.rss_bytes / 2**20,
                }
                for key in CALL_KEYS:
                    values = latency_ms(records, f"{key}_ns")
                    f[f"{key}_ms"] = percentiles(values) if values else None
                out["phases"][ph.name] = f
            pool.call("close", timeout=120)
        out["server_log_tail"] = srv.tail(1500)
    return out
