"""What the plugin's parts need of the plugin: small ``Protocol`` interfaces it implements.

The parts of :class:`kefu.plugin.app.Plugin` (the control server, the login,
the link's events and forwarding, the media API) each hold the plugin as a
:class:`PluginCore`: its agent, link, state, mirror, and the way out to the
SDKs. A request comes from a :class:`Replier`: an SDK's
:class:`~kefu.plugin.connection.ControlConnection`, or the desktop window's
own connection (:mod:`kefu.plugin.desktop`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from kefu.protocol.mirror import CallMirror, CallRequests
from kefu.protocol.wire import Json

from .link import AgentLink
from .settings import PluginSettings
from .uploads import ServerApi
from .window import Window

if TYPE_CHECKING:  # kefu.media loads aiortc: only a plugin with media imports it
    from .media import PluginMedia

__all__ = ["PluginCore", "Replier"]


class Replier(Protocol):
    """Where a request's answers go: the connection it came on."""

    def reply(self, msg: Json) -> None: ...


class PluginCore(Protocol):
    """The plugin's state and its way out to the SDKs, as its parts see them."""

    settings: PluginSettings
    window: Window
    api: ServerApi
    server_ssl: ssl.SSLContext | None
    #: the agent's link to the server, while logged in
    link: AgentLink | None
    #: the agent as the server described it, while logged in
    agent: dict[str, Any] | None
    #: the agent's state code as the plugin last heard it
    state: str
    #: the waiting list as the server last described it
    queue: Json | None
    mirror: CallMirror
    requests: CallRequests
    media: PluginMedia | None
    #: the agent's token for the REST API (uploads)
    api_token: str | None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def broadcast(self, msg: Json) -> None: ...

    def set_state(self, value: object) -> None: ...

    def ready_payload(self) -> Json: ...

    def current_call(self) -> Json | None: ...

    def sso_ready(self) -> Json: ...

    def someone_waits(self) -> bool: ...

    async def end_calls(self) -> None: ...
