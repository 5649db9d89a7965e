"""Members whose connection or media comes and goes (reliability F3, F5, F15; D22).

A member whose connection closed is hung up unless it is back within
``call_grace``; an agent whose plugin came back without a call's media leaves
that call; in the SFU mode a call whose media server died ends for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kefu.protocol import ApiError
from kefu.protocol.call import MEDIA_SERVER_LOST, Call, Effect, MemberKind, MemberStatus

from .call_engine import CallEngine
from .tasks import Background

__all__ = ["CallPresence"]

log = logging.getLogger("kefu.server.calls")


class CallPresence:
    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine
        self.queries = engine.queries
        self._grace: dict[tuple[str, str], asyncio.Task[None]] = {}
        # every grace task until it has ended (it leaves _grace when it is over)
        self._tasks = Background(log)

    async def close(self) -> None:
        """Stop the members' graces on shutdown, those at work too."""
        self._grace.clear()
        await self._tasks.close()

    async def member_gone(self, kind: MemberKind, name: str) -> None:
        """A member's connection closed: hang it up unless it is back within ``call_grace``.

        Whether it is in a call is asked when the grace is over, not now: most connections
        that close are in no call, and in a reconnect storm all come back within the grace,
        so none of them costs a query."""
        key = (kind.value, name)
        old = self._grace.pop(key, None)
        if old is not None:
            old.cancel()
        task = self._tasks.spawn(self._grace_over(kind, name), f"kefu-call-grace-{name}")
        if task is not None:
            self._grace[key] = task

    def member_back(self, kind: MemberKind, name: str) -> None:
        task = self._grace.pop((kind.value, name), None)
        if task is not None:
            task.cancel()

    async def _grace_over(self, kind: MemberKind, name: str) -> None:
        grace = self.engine.settings.call_grace
        await asyncio.sleep(grace)
        if self._grace.get((kind.value, name)) is asyncio.current_task():
            del self._grace[(kind.value, name)]
        recipient = await self.queries.recipient(kind, name)
        if await self.engine.push_hub.bus.present(recipient):
            return
        call_id = await self.queries.call_of(kind, name)
        if call_id is None:
            if kind is MemberKind.agent:
                await self.engine.supervision.gone(name)  # issue 20: a supervisor helping in a call leaves
            return
        reason = f"{kind.value}_disconnected"
        log.info("%s %s did not come back within %.1f s: hanging up", kind.value, name, grace)

        def gone(call: Call) -> list[Effect]:
            m = call.member(kind, name)
            if kind is MemberKind.agent and m is not None and m.status is MemberStatus.invited:
                # an invited agent that is gone: the invitation failed (006009 / 002012)
                return call.fail(reason)
            return call.hangup(kind, name, reason)

        with contextlib.suppress(ApiError):
            await self.engine.run(call_id, gone)

    async def media_server_lost(self, call_id: str) -> None:
        """SFU mode: the media server carrying the call's media died: the call ends for everyone
        with ``media_server_lost`` (:meth:`Call.media_server_lost`)."""
        with contextlib.suppress(ApiError):  # ended meanwhile
            out = await self.engine.run(call_id, lambda call: call.media_server_lost())
            if out.call is not None and out.call.end_reason == MEDIA_SERVER_LOST:
                log.warning("call %s ended: the media server is lost", call_id)

    async def media_back(self, name: str, held: frozenset[str]) -> None:
        """A plugin logged in as agent ``name``, holding the media of the calls ``held``.

        The media of a call lives in the plugins (the primary's relays it in
        ``media: "hub"``): a plugin process that died (a crash, ``kill -9``)
        took it along, and a new one that logs in within ``call_grace`` cancels
        the grace but has no peer connection. A connected call the agent is
        joined in that the plugin does not hold would go on silent: the agent
        leaves it at once with ``agent_media_lost`` (:meth:`Call.media_lost`),
        every member told. A plugin that reconnects its link (same process,
        media alive) says nothing, and a call the plugin holds goes on."""
        call_id = await self.queries.call_of(MemberKind.agent, name, status=MemberStatus.joined)
        if call_id is None or call_id in held:
            return
        call = await self.queries.snapshot(call_id)
        if call is None or not call.media_lost(name):
            return  # not connected yet: no media to lose (the plugin makes it when the call connects)
        try:
            out = await self.engine.run(call_id, lambda call: call.media_lost(name))
        except ApiError:
            return  # the call ended meanwhile
        if out.changes:
            log.warning("agent %s came back without the media of call %s: it leaves the call", name, call_id)
