"""The call tests' kit: the real server (the ``server`` fixture of
``tests/conftest.py``), real plugins on loopback ports, and each agent driven
through ``IMClient`` on the test's loop — every API called with **both
conventions at once** (SPEC §5: a v1204 object of named callbacks and a
v190307 ``callback(state, payload)``), so every check sees both.

:class:`AgentSide` is one agent: its plugin, its ``IMClient``, its state
pushes (``stateChange``) and ``initInnerCallBack`` events. :class:`ApiCall`
is one API request and every callback it got. :class:`Reach` checks that a
code was reached in both conventions and records it against
:data:`CODE_TABLE`, the scenario meant to reach each code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench import common
from kefu.media import MediaSettings
from kefu.plugin import Plugin
from kefu.sdk import IMClient
from tests.conftest import PASSWORD, ServerHandle, child_env
from tests.conftest import plugin_process as kefu_plugin
from tests.plugin.harness import LIMIT
from tests.plugin.harness import fast_settings as plugin_settings

__all__ = [
    "CALLBACKS",
    "CODE_TABLE",
    "SMALL_MEDIA",
    "AgentSide",
    "ApiCall",
    "Log",
    "PluginProcess",
    "Reach",
    "login_url",
    "payload_of",
    "plugin_process",
]

Json = dict[str, Any]
T = TypeVar("T")

#: Small video for tests: 320x240 at 15 fps; short waits; no recording unless asked.
SMALL_MEDIA = MediaSettings(
    video_width=320,
    video_height=240,
    fps=15,
    photo_width=640,
    photo_height=360,
    close_timeout=1.0,
    watchdog_interval=0.05,
    record=False,
    record_video_bitrate=200_000,
)

#: Every v1204 callback name a call or media API can get (SPEC §4.3–4.5, additions).
CALLBACKS = (
    "success",
    "error",
    "ringing",
    "inviteSuccess",
    "acceptSuccess",
    "visitorJoin",
    "visitorRefuse",
    "videoBusyMark",
    "timeoutDisconnect",
    "visitorDisconnect",
    "kefuCloseVideoSuccess",
    "exitSuccess",
    "refuseSuccess",
    "open",
    "close",
    # call transfers (issue 20)
    "transferSuccess",
    "completeSuccess",
    "cancelSuccess",
    "refuse",
    "targetLeft",
    "queued",  # blind to a team's queue (D50)
)


def login_url(server: ServerHandle, name: str) -> str:
    return f"{server.url}/doLogin?name={name}&pwd={PASSWORD}&returnTo="


def payload_of(msg: Json) -> Any:
    """What the v190307 ``callback(state, payload)`` gets for ``msg`` (kefu.sdk.imclient)."""
    if "payload" in msg:
        return msg["payload"]
    if "error" in msg:
        return {"error": msg["error"]}
    if "data" in msg:
        return {"data": msg["data"]}
    return None


class Log(common.Log[T]):
    """The rig's log of things that happen, with the tests' default bound."""

    async def find(self, test: Callable[[T], bool], within: float = LIMIT, *, start: int = 0) -> T:
        return await super().find(test, within, start=start)


@dataclasses.dataclass
class ApiCall:
    """One API request and every message its callbacks got, in both conventions."""

    api: str
    v1204: Log[tuple[str, Json]] = dataclasses.field(default_factory=Log)
    v190307: Log[tuple[Any, Any]] = dataclasses.field(default_factory=Log)

    async def callback(self, name: str, state: str | None = None, within: float = LIMIT) -> Json:
        """The v1204 callback ``name`` (with ``state``), after checking that the
        v190307 callback got the same message: ``(data["state"], payload)``."""
        _, data = await self.v1204.find(
            lambda e: e[0] == name and (state is None or e[1].get("state") == state), within
        )
        assert data["subMark"] == name and data["mark"] == self.api, data
        expected = (data.get("state"), payload_of(data))
        await self.v190307.find(lambda e: e == expected, 1.0)
        return data

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.v1204.items]


@dataclasses.dataclass
class PluginProcess:
    """A plugin running as its own process (``kefu plugin``): the test may ``kill -9`` it."""

    proc: asyncio.subprocess.Process
    url: str  # its control socket
    token: str  # its pairing token


@contextlib.asynccontextmanager
async def plugin_process(
    server: ServerHandle, data_dir: Path, log_path: Path, *options: str, prefix: Sequence[str] = ()
) -> AsyncIterator[PluginProcess]:
    """``kefu plugin --headless`` on a free port, with media (320x240 at 15 fps) and
    ``options``, until it printed ``ready``; killed at the end if still running.
    ``prefix``: e.g. ``ip netns exec NAME`` to run it in a network namespace."""
    with log_path.open("ab") as log:
        async with kefu_plugin(
            server.url,
            data_dir,
            "--port",
            "0",
            "--headless",
            "--video-size",
            "320x240",
            "--fps",
            "15",
            *options,
            env=child_env(),
            stderr=log,
            prefix=prefix,
        ) as (proc, url):
            yield PluginProcess(proc, url, (data_dir / "plugin.token").read_text().strip())


class AgentSide:
    """One agent: its plugin (in this process) and its ``IMClient`` on the test's loop."""

    def __init__(self, server: ServerHandle, name: str, data_dir: Path, **plugin_kw: Any) -> None:
        self.server = server
        self.name = name
        kw: dict[str, Any] = {"media": None, "media_timeout": 5.0, **plugin_kw}
        url = kw.pop("server_url", server.url)  # e.g. through a proxy the test can cut
        self._plugin: Plugin | None = Plugin(plugin_settings(url, data_dir, **kw))
        self._external: tuple[str, str] | None = None
        self.client: IMClient | None = None
        self.states: Log[tuple[str, Json]] = Log()  # stateChange(state, payload)
        self.inner: Log[tuple[str, Json]] = Log()  # initInnerCallBack events by name

    @classmethod
    def of_process(cls, server: ServerHandle, name: str, url: str, token: str) -> AgentSide:
        """An agent whose plugin is another process (``kefu plugin``), at ``url``."""
        side = cls.__new__(cls)
        side.server, side.name = server, name
        side._plugin, side._external = None, (url, token)
        side.client = None
        side.states, side.inner = Log(), Log()
        return side

    @property
    def plugin(self) -> Plugin:
        assert self._plugin is not None, "this agent's plugin runs in another process"
        return self._plugin

    @property
    def sdk(self) -> IMClient:
        assert self.client is not None
        return self.client

    async def start(self, *, ready: bool = False) -> AgentSide:
        if self._plugin is not None:
            await self._plugin.start()
            url, token = self._plugin.url, self._plugin.token._value
            origin = self._plugin.settings.server_origin
        else:
            assert self._external is not None
            (url, token), origin = self._external, self.server.url
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.client = IMClient(
            {
                "baseWsUrl": url,
                "ssoTo": f"{self.server.url}/agent",
                "token": token,
                "ssoReady": lambda data: None if connected.done() else connected.set_result(None),
            }
        )
        names = (
            "videoCloseCB",
            "visitorStreamOffline",
            "visitorStreamOnline",
            "chatCloseCB",
            "call",
            "recording",
        )
        callbacks: dict[str, Any] = {n: (lambda data, n=n: self.inner.add((n, data))) for n in names}
        callbacks["stateChange"] = lambda state, payload: self.states.add((state, payload or {}))
        self.client.initInnerCallBack(callbacks)
        await asyncio.wait_for(connected, LIMIT)
        login_at = f"{origin}/doLogin?name={self.name}&pwd={PASSWORD}&returnTo="
        login = self.call("startLogin", {"data": {"url": login_at}})
        await login.callback("success")
        if ready:
            await self.set_ready()
        return self

    def call(self, api: str, params: Json | None = None) -> ApiCall:
        """``client.api({...params, <every callback>}, function(state, payload))``."""
        record = ApiCall(api)
        options: dict[str, Any] = dict(params or {})
        for name in CALLBACKS:
            options[name] = lambda data, name=name: record.v1204.add((name, data))
        getattr(self.sdk, api)(options, lambda state, payload: record.v190307.add((state, payload)))
        return record

    async def set_ready(self) -> None:
        c = self.call("setAgentState", {"state": "idle"})
        await c.callback("success", "002000")

    async def state(self, code: str, within: float = LIMIT, *, start: int = 0) -> Json:
        """The payload of the state push with ``code`` (v190307's ``stateChange``)."""
        _, payload = await self.states.find(lambda e: e[0] == code, within, start=start)
        return payload

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self._plugin is not None:
            await self._plugin.aclose()


#: Every code of SPEC §5.2 and the two ringing codes (SPEC §5.3.5), the
#: scenario (a test of test_call_codes.py) that reaches it, and the v1204
#: callback it reaches. ``push``: the agent has no request open then (it rings,
#: or its invitation ends before it answered): the code arrives as a state
#: push — ``stateChange(state, payload)`` and ``payload.subMark``.
CODE_TABLE: dict[str, tuple[str, str, str]] = {
    "000000": ("login", "success", "logout"),
    "001001": ("visitorInvite", "timeoutDisconnect", "videoPickUp, the visitor never joins"),
    "001002": ("thirdAgent", "push:timeoutDisconnect", "the invited agent lets the invitation ring out"),
    "002001": ("callVisitor", "visitorRefuse", "callbackToVisitor, the visitor refuses"),
    "002002": ("callVisitor", "timeoutDisconnect", "callbackToVisitor, nobody answers"),
    "002003": ("callVisitor", "videoBusyMark", "callbackToVisitor, the visitor answers busy"),
    "002004": (
        "callVisitor",
        "error",
        "callbackToVisitor to nobody (SDK_08) / another agent's visitor (SDK_11)",
    ),
    "002005": (
        "callVisitor",
        "kefuCloseVideoSuccess",
        "callbackToVisitor, the agent hangs up while it rings",
    ),
    "002006": ("callCurrentVisitor", "visitorRefuse", "videoInviteCurrentVisitor, refused"),
    "002007": ("callCurrentVisitor", "timeoutDisconnect", "videoInviteCurrentVisitor, not answered"),
    "002008": ("callCurrentVisitor", "videoBusyMark", "videoInviteCurrentVisitor, busy"),
    "002009": ("callCurrentVisitor", "error", "videoInviteCurrentVisitor without a session"),
    "002010": (
        "callCurrentVisitor",
        "kefuCloseVideoSuccess",
        "videoInviteCurrentVisitor, hung up while ringing",
    ),
    "002011": ("visitorInvite", "error", "videoPickUp, the visitor withdraws before joining"),
    "002012": ("thirdAgent", "push:error", "the invited agent's link dies while it rings"),
    "003001": ("callVisitor", "inviteSuccess", "callbackToVisitor"),
    "003002": ("callCurrentVisitor", "inviteSuccess", "videoInviteCurrentVisitor"),
    "004001": ("visitorInvite", "success", "the visitor asks for video; videoPickUp"),
    "004002": ("thirdAgent", "push:ringing", "videoInviteAgent rings the second agent"),
    "005001": ("thirdVisitor", "kefuCloseVideoSuccess", "three-party with two visitors, the agent hangs up"),
    "005002": ("thirdAgent", "kefuCloseVideoSuccess", "three-party with two agents, the primary hangs up"),
    "005003": ("callVisitor", "visitorDisconnect", "callbackToVisitor connected, the visitor hangs up"),
    "005004": ("callVisitor", "kefuCloseVideoSuccess", "callbackToVisitor connected, the agent hangs up"),
    "005005": ("callCurrentVisitor", "visitorDisconnect", "current visitor connected, it hangs up"),
    "005006": (
        "callCurrentVisitor",
        "kefuCloseVideoSuccess",
        "current visitor connected, the agent hangs up",
    ),
    "005007": ("visitorInvite", "visitorDisconnect", "videoPickUp connected, the visitor hangs up"),
    "005008": ("visitorInvite", "kefuCloseVideoSuccess", "videoPickUp connected, the agent hangs up"),
    "005009": ("thirdAgent", "kefuCloseVideoSuccess", "the invited agent's call ends: the visitor hangs up"),
    "005010": ("thirdAgent", "exitSuccess", "the invited agent leaves (and: the primary hangs up)"),
    "006001": ("thirdVisitor", "visitorRefuse", "videoInviteVisitor, refused"),
    "006002": ("thirdVisitor", "videoBusyMark", "videoInviteVisitor, busy"),
    "006003": ("thirdVisitor", "timeoutDisconnect", "videoInviteVisitor, not answered"),
    "006004": ("thirdVisitor", "error", "videoInviteVisitor to nobody (SDK_08)"),
    "006005": ("thirdVisitor", "visitorDisconnect", "the third visitor hangs up"),
    "006006": ("thirdAgent", "visitorRefuse", "videoInviteAgent, the agent refuses (multipleVideoRefuse)"),
    "006007": ("thirdAgent", "videoBusyMark", "videoInviteAgent to a not-ready agent"),
    "006008": ("thirdAgent", "timeoutDisconnect", "videoInviteAgent, not answered"),
    "006009": ("thirdAgent", "error", "videoInviteAgent to nobody (SDK_08); the invitee's link dies"),
    "006010": ("thirdAgent", "exitSuccess", "the third agent leaves (videoDisconnect)"),
    "006011": ("callVisitor", "acceptSuccess", "callbackToVisitor, accepted"),
    "006012": ("callCurrentVisitor", "acceptSuccess", "videoInviteCurrentVisitor, accepted"),
    "006013": ("visitorInvite", "visitorJoin", "videoPickUp, the visitor joins"),
    "006014": ("thirdAgent", "acceptSuccess", "multipleVideoPickUp"),
    "007001": ("thirdVisitor", "inviteSuccess", "videoInviteVisitor"),
    "007002": ("thirdAgent", "inviteSuccess", "videoInviteAgent"),
    "008001": ("thirdVisitor", "acceptSuccess", "videoInviteVisitor, accepted"),
    "008002": ("thirdAgent", "acceptSuccess", "videoInviteAgent, accepted (multipleVideoPickUp)"),
}


class Reach:
    """Checks codes of one scenario in both conventions, and that none was missed."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.seen: set[str] = set()

    async def call(self, call: ApiCall, code: str, within: float = LIMIT) -> Json:
        """``code`` reached ``call``'s v1204 callback named in the table and its v190307 callback."""
        scenario, callback, _ = CODE_TABLE[code]
        assert scenario == self.scenario, (code, scenario)
        data = await call.callback(callback.removeprefix("push:"), code, within)
        assert data["state"] == code
        self.seen.add(code)
        return data

    async def push(self, agent: AgentSide, code: str, within: float = LIMIT, *, start: int = 0) -> Json:
        """``code`` reached the agent as a state push: ``stateChange(code, payload)`` with
        ``payload.subMark`` the table's callback (no request of this agent was open)."""
        scenario, callback, _ = CODE_TABLE[code]
        assert scenario == self.scenario, (code, scenario)
        payload = await agent.state(code, within, start=start)
        assert payload["subMark"] == callback.removeprefix("push:"), payload
        self.seen.add(code)
        return payload

    def done(self) -> None:
        wanted = {code for code, (scenario, _, _) in CODE_TABLE.items() if scenario == self.scenario}
        assert wanted <= self.seen, f"{self.scenario}: not reached {sorted(wanted - self.seen)}"
