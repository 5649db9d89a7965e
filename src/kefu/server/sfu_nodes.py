"""Several nodes in the SFU mode: a call's Janus work runs on the node that made its room.

Theory of operation
-------------------
A node's Janus handles belong to its own Janus session, and Janus tells only
that session's long poll what happens to them (``webrtcup``, ``hangup``, a
subscription's new offer). So one node drives a call's publishers and
subscriptions: its room's **owner**, the node that created the room, named in
``media_rooms.node`` (docs/decisions.md D46). A member's ``signal`` to the sfu,
and the call's changes (who is joined now, the end), happen on whichever node
the member or the request is connected to; that node hands them to the owner
over Redis, on the owner's channel ``<prefix>sfu:<node>``:

- ``signal`` is **asked**: the owner runs it (:meth:`SfuRelay.signal`) and
  answers on the asker's channel with nothing or the error's code and text, so
  the member gets the answer one node would give (``invalid_field``,
  ``media_server_unavailable`` …). No answer within the limit is
  ``media_server_unavailable``.
- ``sync`` (who is joined) and ``ended`` are **told**.

The owner handles one call's messages in the order they came (a member's offer
before its candidates), different calls side by side. ``PUBLISH`` says how many
listened: none means the owner is gone (its process died, its Janus session and
handles with it): a ``signal`` is refused with ``media_server_unavailable`` and
the end of the call is handled where it happened (the room destroyed, the
recording made from the ``.mjr`` files). What goes to members (Janus's answers
and offers) is pushed through the hub, which reaches any node, as on one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.client_session import reply_error

from .tasks import Background

__all__ = ["InOrder", "SfuNodes"]

log = logging.getLogger("kefu.server.sfu")

Member = tuple[str, str]
#: run on the owner: ``signal(call_id, me, joined, data)``, ``sync(call_id, joined, ended,
#: audience)``, ``ended(call_id)``
Signal = Callable[[str, Member, list[Member], object], Awaitable[None]]
Sync = Callable[[str, list[Member], bool, Mapping[Member, frozenset[str]] | None], None]
Ended = Callable[[str], None]


class InOrder:
    """Work handed in for one call runs in the order it came; different calls side by side."""

    def __init__(self, background: Background) -> None:
        self._background = background
        self._last: dict[str, asyncio.Task[None]] = {}  # each call's latest work

    def run(self, call_id: str, coro: Coroutine[Any, Any, None], name: str) -> None:
        prev = self._last.get(call_id)
        task = self._background.spawn(self._after(prev, coro), name)
        if task is None:  # shutting down
            coro.close()
            return
        self._last[call_id] = task
        task.add_done_callback(
            lambda t: self._last.pop(call_id, None) if self._last.get(call_id) is t else None
        )

    @staticmethod
    async def _after(prev: asyncio.Task[None] | None, coro: Coroutine[Any, Any, None]) -> None:
        if prev is not None:
            await asyncio.wait([prev])  # the call's earlier work first (its failure is its own)
        await coro


class SfuNodes:
    """This node's end of the SFU messages between nodes (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        node_id: str,
        timeout: float,
        signal: Signal,
        sync: Sync,
        ended: Ended,
    ) -> None:
        self.node_id = node_id
        self.prefix = prefix
        self.timeout = timeout
        self._signal, self._sync, self._ended = signal, sync, ended
        self._redis: aioredis.Redis = aioredis.from_url(url)
        self._asked: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._work = Background(log)
        self._in_order = InOrder(self._work)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closed = False

    def channel(self, node: str) -> str:
        return f"{self.prefix}sfu:{node}"

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="kefu-sfu-nodes")
        await asyncio.wait_for(self._subscribed.wait(), 10.0)

    async def aclose(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        for fut in self._asked.values():
            if not fut.done():
                fut.set_exception(ApiError("this node is closing", code=ErrorCode.media_server_unavailable))
        self._asked.clear()
        await self._work.close()
        await self._redis.aclose()

    # --- asking and telling the owner

    async def _send(self, node: str, msg: dict[str, Any]) -> int:
        """Publish to ``node``; how many listened (0: it is gone)."""
        try:
            return int(await self._redis.publish(self.channel(node), json.dumps(msg, separators=(",", ":"))))
        except (RedisError, OSError) as exc:
            raise ApiError(
                f"the node carrying this call's media cannot be reached ({type(exc).__name__})",
                code=ErrorCode.media_server_unavailable,
            ) from None

    async def signal(self, owner: str, call_id: str, me: Member, joined: list[Member], data: object) -> None:
        """``me``'s signal, run by ``owner``; raises the error it answered."""
        rid = secrets.token_hex(8)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._asked[rid] = fut
        try:
            msg = {"op": "signal", "id": rid, "from": self.node_id, "call": call_id}
            heard = await self._send(
                owner, {**msg, "me": list(me), "joined": [list(m) for m in joined], "data": data}
            )
            if heard == 0:
                raise ApiError(
                    "the node carrying this call's media is gone", code=ErrorCode.media_server_unavailable
                )
            try:
                reply = await asyncio.wait_for(fut, self.timeout)
            except TimeoutError:
                raise ApiError(
                    "the node carrying this call's media did not answer in time",
                    code=ErrorCode.media_server_unavailable,
                ) from None
        finally:
            self._asked.pop(rid, None)
        failed = reply_error(reply)
        if failed is not None:
            raise ApiError(failed.msg or "", code=failed.code)

    async def tell(self, owner: str, op: str, call_id: str, **fields: Any) -> bool:
        """Tell ``owner`` a call's ``sync`` or ``ended``; whether it listened."""
        try:
            heard = await self._send(owner, {"op": op, "from": self.node_id, "call": call_id, **fields})
        except ApiError as exc:
            log.warning("call %s: %s not told to node %s: %s", call_id, op, owner, exc.msg)
            return False
        return heard > 0

    # --- the owner's side

    async def _listen(self) -> None:
        while not self._closed:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel(self.node_id))
                self._subscribed.set()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self._heard(msg["data"])
            except (RedisError, OSError) as exc:
                log.warning("the SFU channel's subscription failed (%r); subscribing again", exc)
                await asyncio.sleep(0.2)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _heard(self, raw: bytes | str) -> None:
        try:
            msg = json.loads(raw)
            op, call_id = msg["op"], msg.get("call")
        except (ValueError, KeyError, TypeError):
            log.warning("a message on the SFU channel that is not ours: dropped")
            return
        if op == "reply":
            fut = self._asked.get(msg.get("id"))
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if not isinstance(call_id, str):
            return
        self._in_order.run(call_id, self._handle(msg), f"kefu-sfu-node-{op}-{call_id}")

    async def _handle(self, msg: dict[str, Any]) -> None:
        op, call_id = msg["op"], msg["call"]
        members = [(str(k), str(n)) for k, n in msg.get("joined", [])]
        if op == "sync":
            heard = {(str(k), str(n)): frozenset(map(str, names)) for k, n, names in msg.get("audience", [])}
            self._sync(call_id, members, bool(msg.get("ended")), heard)
        elif op == "ended":
            self._ended(call_id)
        elif op == "signal":
            error: dict[str, str] | None = None
            try:
                kind, name = msg["me"]
                await self._signal(call_id, (str(kind), str(name)), members, msg.get("data"))
            except ApiError as exc:
                error = {"code": exc.code.value, "msg": exc.msg}
            except Exception:
                log.exception("call %s: a signal from node %s failed", call_id, msg.get("from"))
                error = {"code": ErrorCode.internal.value, "msg": "internal error"}
            with contextlib.suppress(ApiError):  # the asker times out
                await self._send(str(msg["from"]), {"op": "reply", "id": msg.get("id"), "error": error})
