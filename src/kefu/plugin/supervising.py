"""A supervisor's media in a call it helps in (issue 20, :mod:`kefu.protocol.supervise`).

The server's ``call`` push names the call's supervisors and their modes. The
supervisor's plugin follows it: in the hub mode a :class:`SupervisorCall` (a
:class:`~kefu.media.MediaMember` that sends nothing at first) answers the primary agent's hub, which
sends it every member's media; it sends its microphone only in whisper and
barge, and the hub forwards it to the mode's audience. Switching modes keeps
the connection (a renegotiation, no re-join). In the SFU mode an
:class:`~kefu.plugin.media.SfuCall` that publishes no camera subscribes to
every member's feed, and publishes its microphone in whisper and barge; the
server subscribes the mode's audience to it.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from kefu.media import MediaError, MediaEvent, MediaMember, NegotiationNeeded, NoFrameError
from kefu.media.frames import Image, encode_jpeg_async
from kefu.protocol.mirror import CallView
from kefu.protocol.supervise import SupervisorMode

from .call_media import CallMediaBase, MediaOwner, SfuCall

if TYPE_CHECKING:
    from .media import PluginMedia

__all__ = ["SupervisorCall", "follow"]

log = logging.getLogger("kefu.plugin.media")


def speaks(mode: str | None) -> bool:
    return mode in (SupervisorMode.whisper.value, SupervisorMode.barge.value)


def follow(media: PluginMedia, me: str, view: CallView) -> None:
    """A ``call`` push naming ``me`` among the call's supervisors: its media, in its mode."""
    call = media.calls.get(view.call_id)
    mode = view.supervisors.get(me)
    if isinstance(call, SupervisorCall) and call.primary != view.primary:
        media._close(view.call_id)  # the call was transferred: its hub moved (issue 20, D30)
        call = None
    if call is None:
        try:
            if view.media == "sfu":
                call = SfuCall(media, view.call_id, me, primary=False, publish=())
            else:
                call = SupervisorCall(media, view.call_id, me, view.primary)
        except MediaError as exc:
            log.error("call %s: no media: %s", view.call_id, exc.msg)
            return
        media.calls[view.call_id] = call
    if isinstance(call, SupervisorCall | SfuCall):
        call.do(functools.partial(call.speak, speaks(mode)))


class SupervisorCall(CallMediaBase):
    """A supervisor's media in a call led by the primary agent's hub."""

    def __init__(self, owner: MediaOwner, call_id: str, me: str, primary: str) -> None:
        super().__init__(owner, call_id)
        self.me = me
        self.primary = primary
        self.member = MediaMember(owner.settings, local=me, hub=primary, call_id=call_id, send=())
        self.member.events.subscribe(self._on_event)

    async def speak(self, on: bool) -> None:
        self.member.speak(on)

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, NegotiationNeeded):
            self.do(self._negotiate)

    async def _negotiate(self) -> None:
        message = await self.member.negotiate()
        if message is not None:
            await self.owner.host.send_signal(self.call_id, "agent", self.primary, message)

    async def handle(self, kind: str, name: str, data: object) -> None:
        if kind != "agent" or name != self.primary:
            log.warning("call %s: signalling from %s %s, not the hub: dropped", self.call_id, kind, name)
            return
        reply = await self.member.handle(data)
        if reply is not None:
            await self.owner.host.send_signal(self.call_id, "agent", self.primary, reply)

    async def snapshot(self, member: str) -> Image:
        try:
            frame = self.member.latest_frame(member)
        except MediaError as exc:
            raise NoFrameError(exc.msg) from None
        return await encode_jpeg_async(frame, self.owner.settings.jpeg_quality)

    async def _shutdown(self) -> None:
        await self.member.close()
