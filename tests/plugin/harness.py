"""Test harness of the plugin and the SDKs: the real server, the real plugin,
real sockets on 127.0.0.1, every timeout short.

:class:`ServerHandle` starts ``kefu.server`` the way ``kefu server --port 0``
does (its :class:`~kefu.server.runner.ServerRunner`), on a database file of
the test, and can stop and restart it on the same port and file.

``tests/conftest.py``'s ``server`` fixture runs in the test's loop and moves
to a new port on restart; the plugin's tests need the server on the same
port after a restart, and in a thread of its own for synchronous SDK code,
so they use this harness (``kefu_server``, :class:`Stack`,
:class:`ThreadedStack`). ``tests/plugin/conftest.py`` offers its fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from kefu.plugin import Plugin, PluginSettings
from kefu.protocol.client_session import Answer, ClientSession, Push, Stray
from kefu.server.accounts import add_agent
from kefu.server.runner import ServerRunner
from kefu.server.settings import Settings
from tests.conftest import scaled

__all__ = [
    "LIMIT",
    "PASSWORD",
    "Proxy",
    "Raw",
    "ServerHandle",
    "Stack",
    "ThreadedStack",
    "Visitor",
    "fast_settings",
    "http_handshake",
    "kefu_server",
    "login_url",
    "plugin",
    "plugin_factory",
    "silent_server",
    "wait_for",
]

PASSWORD = "secret-pw"
#: Every wait of a test is bounded by this (never a sleep).
LIMIT = scaled(10.0)


async def wait_for(aw: Awaitable[Any], limit: float = LIMIT) -> Any:
    return await asyncio.wait_for(aw, limit)


class ServerHandle:
    """The real server on 127.0.0.1, stoppable and restartable on the same port."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        base: dict[str, Any] = {
            "port": 0,
            "data_dir": data_dir,
            "scrypt_n": 2**10,
            "auth_timeout": 5.0,
            "graceful_shutdown": 0.5,
            "log_level": "warning",
        }
        self.settings = Settings(**{**base, **overrides})
        self.runner: ServerRunner | None = None
        self.url = ""
        self.port = 0

    async def start(self) -> str:
        settings = self.settings if not self.port else replace(self.settings, port=self.port)
        self.runner = ServerRunner(settings)
        self.url = await self.runner.start()
        self.port = self.runner.port
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.stop()

    @property
    def services(self) -> Any:
        assert self.runner is not None
        return self.runner.services

    async def add_agent(self, name: str, password: str = PASSWORD, **kw: Any) -> None:
        sv = self.services
        await add_agent(sv.store, name, password, now=self.settings.now(), scrypt_n=2**10, **kw)

    def login_url(self, name: str, password: str = PASSWORD) -> str:
        return login_url(self.url, name, password)


def login_url(base: str, name: str, password: str = PASSWORD) -> str:
    return f"{base}/doLogin?name={name}&pwd={password}&returnTo="


def fast_settings(server_url: str, data_dir: Path, **kw: Any) -> PluginSettings:
    """Plugin settings with every timeout in milliseconds."""
    base: dict[str, Any] = {
        "server_url": server_url,
        "port": 0,
        "data_dir": data_dir,
        "login_timeout": 5.0,
        "hello_timeout": 2.0,
        "request_timeout": 5.0,
        "backoff_min": 0.01,
        "backoff_max": 0.05,
        "open_timeout": 2.0,
        "quit_logout_timeout": 1.0,
    }
    base.update(kw)
    return PluginSettings(**base)


@pytest_asyncio.fixture
async def kefu_server(tmp_path: Path) -> AsyncIterator[ServerHandle]:
    """The real server (this harness's handle: it restarts on the same port)."""
    handle = ServerHandle(tmp_path / "server")
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


PluginFactory = Callable[..., Awaitable[Plugin]]


@pytest_asyncio.fixture
async def plugin_factory(tmp_path: Path) -> AsyncIterator[PluginFactory]:
    """``await plugin_factory(server_url, **settings)``: a started plugin, closed after the test."""
    made: list[Plugin] = []

    async def make(server_url: str, **kw: Any) -> Plugin:
        data_dir = kw.pop("data_dir", tmp_path / f"plugin{len(made)}")
        p = Plugin(fast_settings(server_url, data_dir, **kw))
        await p.start()
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            await p.aclose()


@pytest_asyncio.fixture
async def plugin(kefu_server: ServerHandle, plugin_factory: PluginFactory) -> Plugin:
    """A plugin linked to :func:`kefu_server`, with agent ``a1`` ready to log in."""
    await kefu_server.add_agent("a1")
    return await plugin_factory(kefu_server.url)


class Raw:
    """A raw WebSocket client of the plugin: it sends what a test says, frame by frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, plugin: Plugin, *, origin: str | None = None, hello: bool = True, **kw: Any
    ) -> AsyncIterator[Raw]:
        headers = {"Origin": origin} if origin is not None else None
        async with connect(plugin.url, additional_headers=headers, max_size=None, **kw) as ws:
            raw = cls(ws)
            if hello and origin is None:
                await raw.send({"v": 1, "id": "h", "mark": "hello", "params": {"token": plugin.token._value}})
                reply = await raw.reply("h")
                assert reply["subMark"] == "success", reply
            yield raw

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def recv(self) -> dict[str, Any]:
        msg = json.loads(await wait_for(self.ws.recv()))
        assert isinstance(msg, dict)
        return msg

    async def reply(self, rid: str | None) -> dict[str, Any]:
        """The next message with id ``rid`` (None: the next error without an id); pushes are kept."""
        while True:
            msg = await self.recv()
            if msg.get("id") == rid and (rid is not None or msg.get("subMark") == "error"):
                return msg
            self.pushes.append(msg)

    async def push(self, mark: str, sub_mark: str | None = None) -> dict[str, Any]:
        """The next push of ``mark`` (and ``subMark``), from those kept first."""
        for i, msg in enumerate(self.pushes):
            if msg.get("mark") == mark and (sub_mark is None or msg.get("subMark") == sub_mark):
                return self.pushes.pop(i)
        while True:
            msg = await self.recv()
            if (
                "id" not in msg
                and msg.get("mark") == mark
                and (sub_mark is None or msg.get("subMark") == sub_mark)
            ):
                return msg
            self.pushes.append(msg)

    async def call(self, rid: str, mark: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"v": 1, "id": rid, "mark": mark}
        if params is not None:
            msg["params"] = params
        await self.send(msg)
        return await self.reply(rid)


class Visitor:
    """A visitor on the server's ``/ws/visitor`` (raw, as a visitor page speaks)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # replies by id through the protocol's client session; pushes in arrival order (no seq check)
        self._session: ClientSession[asyncio.Future[dict[str, Any]]] = ClientSession(
            prefix="v", ordered=False
        )
        self.key = ""
        self._task = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, server: ServerHandle, name: str, key: str | None = None) -> AsyncIterator[Visitor]:
        """Connect as ``name``; with ``key`` (a :attr:`key` of before), as the same visitor again."""
        ws_url = server.url.replace("http://", "ws://") + "/ws/visitor"
        async with connect(ws_url) as ws:
            v = cls(ws)
            try:
                params: dict[str, Any] = {"name": name}
                if key is not None:
                    params["visitorKey"] = key
                hello = await v.request("hello", params)
                assert hello["subMark"] == "success", hello
                v.key = hello["payload"]["visitorKey"]
                yield v
            finally:
                v._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await v._task

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                got = self._session.receive(raw)
                if isinstance(got, Answer):
                    got.pending.tag.set_result(got.msg)
                elif isinstance(got, Push | Stray):
                    self.events.put_nowait(got.msg)

    async def request(self, mark: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        _, text = self._session.request(mark, params or {}, fut)
        await self.ws.send(text)
        return await wait_for(fut)

    async def say(self, text: str) -> dict[str, Any]:
        reply = await self.request("sendMessage", {"text": text})
        assert reply["subMark"] == "success", reply
        return reply

    async def event(self, sub_mark: str) -> dict[str, Any]:
        while True:
            msg = await wait_for(self.events.get())
            if msg.get("subMark") == sub_mark:
                return msg


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """An HTTP "server" on 127.0.0.1 that accepts connections and never answers;
    yields its base URL."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    srv = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        srv.close()
        await srv.wait_closed()


async def http_handshake(
    port: int,
    headers: dict[str, str],
    path: str = "/",
    *,
    tls: ssl.SSLContext | None = None,
    sni: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send a WebSocket opening handshake with exactly ``headers``; the status and JSON body.
    ``tls``: over TLS, the certificate checked for the name ``sni``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname=sni)
    lines = [f"GET {path} HTTP/1.1"]
    base = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    lines += [f"{k}: {v}" for k, v in {**base, **headers}.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    head = await wait_for(reader.readuntil(b"\r\n\r\n"))
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await wait_for(reader.readexactly(length)) if length else b""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return status, (json.loads(body) if body.startswith(b"{") else {})


class Proxy:
    """A TCP forwarder on 127.0.0.1 in front of the server, to cut the plugin's
    link and restore it while the server stays up."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._srv: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._srv = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._srv.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def cut(self) -> None:
        """Stop listening and break every connection (no close frames: a network cut)."""
        if self._srv is not None:
            self._srv.close()
            self._srv = None
        for w in list(self._writers):
            transport = w.transport
            transport.abort()
        self._writers.clear()
        for t in list(self._pipes):
            t.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()

    async def aclose(self) -> None:
        await self.cut()


class Stack:
    """The real server with agents ``a1`` and ``a2``, and a plugin linked to it,
    on the running loop: ``async with Stack(tmp_path) as stack``. ``server``
    overrides the server's settings, the other keywords the plugin's."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        server: dict[str, Any] | None = None,
        via_proxy: bool = False,
        **plugin_settings: Any,
    ) -> None:
        self.tmp_path = tmp_path
        self.server = ServerHandle(tmp_path / "server", **(server or {}))
        self.plugin_settings = plugin_settings
        self.plugin: Plugin | None = None
        self.via_proxy = via_proxy
        self.proxy: Proxy | None = None
        self._visitors = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Stack:
        await self.server.start()
        await self.server.add_agent("a1")
        await self.server.add_agent("a2")
        url = self.server.url
        if self.via_proxy:  # the plugin reaches the server through a cuttable proxy
            self.proxy = Proxy(self.server.port)
            await self.proxy.start()
            url = self.proxy.url
        self.plugin = Plugin(fast_settings(url, self.tmp_path / "plugin", **self.plugin_settings))
        await self.plugin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._visitors.aclose()
        if self.plugin is not None:
            await self.plugin.aclose()
        if self.proxy is not None:
            await self.proxy.aclose()
        await self.server.stop()

    @property
    def p(self) -> Plugin:
        assert self.plugin is not None
        return self.plugin

    @property
    def token(self) -> str:
        return self.p.token._value

    def login_url(self, name: str = "a1", password: str = PASSWORD) -> str:
        """The spec's login URL on the plugin's server (the proxy, if there is one)."""
        return login_url(self.p.settings.server_origin, name, password)

    def options(self, **extra: Any) -> dict[str, Any]:
        """``new IMClient`` options for this stack (the token read from its plugin's folder)."""
        return {
            "baseWsUrl": self.p.url,
            "ssoTo": f"{self.server.url}/agent",
            "videoBarVisible": True,
            "dataDir": str(self.p.settings.data_dir),
            **extra,
        }

    async def visitor(self, name: str) -> Visitor:
        """A visitor kept connected until the stack closes."""
        return await self._visitors.enter_async_context(Visitor.connect(self.server, name))

    async def visitor_says(self, name: str, text: str) -> str:
        """A visitor (kept connected) says ``text``; its session's id."""
        v = await self.visitor(name)
        reply = await v.say(text)
        sid: str = reply["payload"]["sessionId"]
        return sid


class ThreadedStack:
    """A :class:`Stack` on an event loop in a thread of its own, so that a
    test can be a plain synchronous script, as an integrator's would be."""

    def __init__(self, tmp_path: Path, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack = Stack(tmp_path, **kw)
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-stack", daemon=True)

    def run(self, coro: Coroutine[Any, Any, Any], limit: float = LIMIT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(limit)

    def __enter__(self) -> ThreadedStack:
        self._thread.start()
        self.run(self.stack.__aenter__(), 60)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.stack.__aexit__(), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
