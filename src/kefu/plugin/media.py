"""The agent's media in its calls: WebRTC with :mod:`kefu.media` (DESIGN §6).

Theory of operation
-------------------
The plugin follows the server's ``event``/``call`` pushes (docs/calls.md):

- as the call's **primary agent** it is the hub (:class:`RelayCall`, a
  :class:`~kefu.media.MediaHub`): for every other member that is ``joined``
  it makes a peer connection and offers (``signal`` upstream to ``{kind,
  name}``); it closes the peer of a member who left, and everything when the
  call ends. The hub forwards each member's audio and video to the others,
  watches every member's camera (``visitorStreamOffline``) and records the
  call, uploading the recording in chunks as it is made;
- as an **invited third agent** it is a member (:class:`MemberCall`, a
  :class:`~kefu.media.MediaMember`) that answers the hub's offers;
- in the **SFU mode** (the call's ``media`` is ``"sfu"``, docs/media.md §4b)
  every agent of the call, primary or not, is an :class:`SfuCall` (a
  :class:`~kefu.media.SfuMember`): it publishes its camera and microphone
  once to the media server (``signal`` to ``{kind: "sfu", name: "sfu"}``)
  and answers the server's offer of each other member's feed; snapshots and
  the window's tiles come from those subscriptions. The call is not recorded
  by the plugin in this mode.

The server's ``signal`` pushes go to the call's object. Each call does its
work (offers, answers, closing) in order, one job at a time, on a task of
its own, so a slow negotiation never holds the plugin's other work. A
failure of one call's media is logged (and the SDKs hear nothing but what
the media could not do); the call's signalling goes on regardless.

Media events reach the SDKs as ``initInnerCallBack`` pushes:
``visitorStreamOffline`` (SPEC §2, v1216: no frame of a member's camera for
more than the threshold, once per outage) and ``visitorStreamOnline`` (an
addition: the frames are back).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from kefu.media import (
    IceServer,
    Image,
    MediaError,
    MediaSettings,
    NoFrameError,
)
from kefu.paths import open_private, private_dir
from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import MemberStatus
from kefu.protocol.mirror import CallView
from kefu.protocol.wire import Json

from .call_media import CallMediaBase, MediaHost, MemberCall, RelayCall, SfuCall
from .supervising import SupervisorCall, follow
from .uploads import ServerApi

__all__ = ["CallMediaBase", "MediaHost", "MemberCall", "PluginMedia", "RelayCall", "SfuCall"]

log = logging.getLogger("kefu.plugin.media")


class PluginMedia:
    """Every call's media of the plugin's agent (see the module's docstring)."""

    def __init__(
        self,
        host: MediaHost,
        settings: MediaSettings,
        api: ServerApi,
        data_dir: Path,
        *,
        connect_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.base = settings  # as configured (its own --ice-server)
        self.settings = settings  # for the next peer: the server's ICE servers added
        self.connect_timeout = connect_timeout
        self.api = api
        self.data_dir = data_dir
        self.calls: dict[str, RelayCall | MemberCall | SfuCall | SupervisorCall] = {}
        self._views: dict[str, CallView] = {}
        self._closing: set[asyncio.Task[Any]] = set()

    def use_ice_servers(self, servers: tuple[IceServer, ...]) -> None:
        """The server's ICE servers (TURN with a fresh credential) for the peers
        made from now on, before the plugin's own (DESIGN §6: none hard-coded)."""
        self.settings = dataclasses.replace(self.base, ice_servers=(*servers, *self.base.ice_servers))

    def recording_path(self, call_id: str) -> Path:
        """The call's recording file, made empty and the user's alone (0600 in a 0700 folder)."""
        folder = private_dir(self.data_dir / "recordings")
        path = folder / f"{call_id}.webm"
        os.close(open_private(path, os.O_WRONLY))
        return path

    def kind_of(self, call_id: str, name: str) -> str | None:
        view = self._views.get(call_id)
        if view is None:
            return None
        return next((k for k, n in view.joined() if n == name), None)

    def on_call(self, me: str, view: CallView) -> None:
        """A ``call`` push: follow the call's members."""
        call = self.calls.get(view.call_id)
        mine = view.status_of("agent", me) is MemberStatus.joined
        if me in view.supervisors and not view.ended:  # issue 20: a supervisor helping in the call
            follow(self, me, view)
            return
        if view.ended or not mine:
            self._views.pop(view.call_id, None)
            if call is not None:
                self._close(view.call_id)
            return
        self._views[view.call_id] = view
        if view.media == "sfu":
            if call is None:
                try:
                    self.calls[view.call_id] = SfuCall(self, view.call_id, me, primary=view.primary == me)
                except MediaError as exc:
                    log.error("call %s: no media: %s", view.call_id, exc.msg)
            elif isinstance(call, SfuCall):
                call.primary = view.primary == me  # a transfer moves it (issue 20)
            return
        if view.primary == me:
            if isinstance(call, MemberCall):
                # the call was transferred to this agent (issue 20): its hub is here now (D30)
                self._close(view.call_id)
                call = None
            if call is None:
                if not [n for _k, n in view.joined() if n != me]:
                    return  # nobody to send to yet (ringing, calling out)
                try:
                    call = RelayCall(self, view.call_id, me)
                except MediaError as exc:
                    log.error("call %s: no media: %s", view.call_id, exc.msg)
                    return
                self.calls[view.call_id] = call
                roles = {
                    m.get("role") for m in view.members if m.get("kind") == "agent" and m.get("name") == me
                }
                call.transferred_in = bool(roles & {"transferTarget", "consultAgent"})
            if isinstance(call, RelayCall):
                call.sync(view)
        elif call is None:
            self.calls[view.call_id] = MemberCall(self, view.call_id, me, view.primary)

    def on_signal(self, payload: Json) -> None:
        """A ``signal`` push: to the call's hub or member, in order."""
        call_id, sender, data = payload.get("callId"), payload.get("from"), payload.get("data")
        if not isinstance(call_id, str) or not isinstance(sender, dict):
            log.warning("a signal push without callId or from: dropped")
            return
        kind, name = sender.get("kind"), sender.get("name")
        call = self.calls.get(call_id)
        if call is None or not isinstance(kind, str) or not isinstance(name, str):
            log.warning("signalling for call %s, which has no media here: dropped", call_id)
            return
        call.do(lambda: call.handle(kind, name, data))

    async def snapshot(self, view: CallView) -> Image:
        """snapshot (SPEC §4.4): a JPEG of the first visitor's latest received frame."""
        visitor = view.first_visitor
        call = self.calls.get(view.call_id)
        if visitor is None:
            raise ApiError("no visitor is in the call", code=ErrorCode.not_in_call)
        if call is None:
            raise NoFrameError(f"no video from {visitor} yet")
        return await call.snapshot(visitor)

    def _close(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None:
            task = call.close()
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every call's media (the plugin stops, or the agent logs out)."""
        for call_id in list(self.calls):
            self._close(call_id)
        self._views.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def wait_closed(self, call_id: str | None = None) -> None:
        """Until the media of ended calls is closed (recordings finished and uploaded)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
