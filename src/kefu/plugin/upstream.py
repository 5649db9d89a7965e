"""What the plugin asks the server on the agent's link (``plugin_api.FORWARDED_MARKS`` and its own).

An SDK's forwarded request goes to the server under a fresh id; every answer
is mapped back to the SDK's id and mark, and a call API's later progress
(``state`` pushes naming it) reaches the SDK's request too, until its final
callback (:mod:`kefu.protocol.mirror`). The plugin's own requests are the
media's ``signal`` and ``mediaFailed``, ``logout`` and ``iceServers``: the
TURN credentials, renewed before they expire (issue 16).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kefu.protocol import ApiError, ErrorCode, Request, error_message
from kefu.protocol.messages import readdress
from kefu.protocol.plugin_api import CALL_MARKS, is_final
from kefu.protocol.wire import Json

from .host import PluginCore, Replier
from .link import AgentLink

__all__ = ["Upstream"]

log = logging.getLogger("kefu.plugin")


class Upstream:
    def __init__(
        self, core: PluginCore, logged_out: Callable[[AgentLink], Coroutine[Any, Any, None]]
    ) -> None:
        self.core = core
        #: the agent logged out (its ``logout`` answered): the plugin forgets it
        self.logged_out = logged_out
        self._ice_renewal: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self._ice_renewal is not None:
            self._ice_renewal.cancel()
            self._ice_renewal = None

    async def forward(self, conn: Replier, req: Request) -> None:
        link = self.core.link
        if link is None or self.core.agent is None:
            conn.reply(error_message(req.mark, ErrorCode.not_logged_in, rid=req.id))
            return
        params = req.params.model_dump(exclude_none=True)
        done = asyncio.Event()
        uid = link.new_id()
        # a call API goes on after its reply: its progress comes as state pushes
        # (docs/calls.md), possibly before the reply, so it is registered first
        call = (
            self.core.requests.open(conn.reply, req.id, req.mark, uid, done.set)
            if req.mark in CALL_MARKS
            else None
        )

        def on_message(msg: Json) -> None:
            out = readdress(msg, req.id, req.mark)
            sub_mark = msg.get("subMark")
            if (
                req.mark in ("setAgentState", "logout", "getState")
                and sub_mark == "success"
                and "state" in msg
            ):
                self.core.set_state(msg["state"])
            if req.mark == "getState" and sub_mark == "success":
                payload = out.get("payload")
                out["payload"] = {
                    **(payload if isinstance(payload, dict) else {}),
                    "currentCall": self.core.current_call(),
                }
            if call is not None:
                call.reply(out)
            else:
                conn.reply(out)
                if is_final(req.mark, sub_mark if isinstance(sub_mark, str) else None):
                    done.set()
            if req.mark == "logout" and sub_mark == "success":
                self.core.spawn(self.logged_out(link))

        try:
            await link.request(req.mark, params, on_message, uid=uid)
        except ApiError as exc:
            if call is not None:
                call.close()
            conn.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
            return
        await done.wait()

    async def upstream(self, link: AgentLink, mark: str, params: dict[str, Any]) -> Json:
        """Send ``mark`` and wait for its first answer."""
        answer: asyncio.Future[Json] = asyncio.get_running_loop().create_future()

        def on_message(msg: Json) -> None:
            if not answer.done():
                answer.set_result(msg)

        await link.request(mark, params, on_message)
        return await answer

    def use_ice(self, payload: object) -> None:
        """The server's ``iceServers`` (auth reply or ``iceServers`` answer) for
        the next calls' media; asked again after ``iceRenewIn`` seconds."""
        if self.core.media is None or not isinstance(payload, dict):
            return
        from kefu.media import MediaError, ice_servers_from_wire

        try:
            servers = ice_servers_from_wire(payload.get("iceServers"))
        except MediaError as exc:
            log.warning("the server's iceServers are unusable: %s", exc.msg)
            return
        self.core.media.use_ice_servers(servers)
        renew_in = payload.get("iceRenewIn")
        if self._ice_renewal is not None:
            self._ice_renewal.cancel()
            self._ice_renewal = None
        if isinstance(renew_in, int | float) and renew_in > 0:
            self._ice_renewal = asyncio.get_running_loop().call_later(
                renew_in, lambda: self.core.spawn(self._renew_ice(float(renew_in)))
            )

    async def _renew_ice(self, renew_in: float) -> None:
        link = self.core.link
        if link is None or not link.up:
            return  # the next auth reply brings fresh ones
        try:
            answer = await self.upstream(link, "iceServers", {})
        except (ApiError, TimeoutError) as exc:
            log.warning("renewing the TURN credential failed: %s; trying again", exc)
            answer = {}
        if answer.get("subMark") == "success":
            self.use_ice(answer.get("payload"))
        else:
            retry = max(1.0, renew_in / 10)
            self._ice_renewal = asyncio.get_running_loop().call_later(
                retry, lambda: self.core.spawn(self._renew_ice(renew_in))
            )

    async def media_failed(self, call_id: str, kind: str, name: str, reason: str) -> None:
        """Tell the server the media with ``name`` could not connect: it ends that
        member's part of the call with ``media_unreachable``."""
        link = self.core.link
        if link is None:
            return
        params = {"callId": call_id, "member": {"kind": kind, "name": name}, "reason": reason[:128]}
        try:
            answer = await self.upstream(link, "mediaFailed", params)
        except (ApiError, TimeoutError) as exc:
            log.warning("call %s: reporting the media failure failed: %s", call_id, exc)
            return
        if answer.get("subMark") == "error":
            log.info("call %s: mediaFailed refused: %s", call_id, (answer.get("error") or {}).get("msg"))

    async def send_signal(self, call_id: str, kind: str, name: str, data: Json) -> None:
        """WebRTC signalling to a member of the call, through the server (docs/calls.md)."""
        link = self.core.link
        if link is None:
            raise ApiError("no link to the server", code=ErrorCode.upstream_down)

        def on_answer(msg: Json) -> None:
            if msg.get("subMark") == "error":
                error = msg.get("error") or {}
                # no_such_call / forbidden: the call or the member ended while this was on its way
                ended = error.get("code") in ("no_such_call", "forbidden")
                log.log(
                    logging.INFO if ended else logging.WARNING,
                    "call %s: signal to %s %s refused: %s",
                    call_id,
                    kind,
                    name,
                    error.get("msg"),
                )

        params = {"callId": call_id, "to": {"kind": kind, "name": name}, "data": data}
        await link.request("signal", params, on_answer)
