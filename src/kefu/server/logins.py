"""An agent's socket lives no longer than its login.

Theory of operation
-------------------
A socket authenticated with a token is *watched*: :class:`LoginWatch` keeps,
for each such connection of this node, the token's hash and expiry. Every
``login_check_interval`` seconds (0.5 s by default) it

- ends the connections whose token expired (by the settings' clock, so tests
  move time instead of waiting), and
- reads, in one query, the tokens of the rest with their accounts: a token
  revoked (logout on any node), deleted, or whose account was disabled (the
  ``kefu agent disable`` command, which runs without any node) ends its
  connections.

The database is the one source: a logout on node 1 or a disable from the
command line reaches node 2's sockets within the interval, with or without
the Redis bus, and a bus message lost on the way cannot keep a socket open.
A logout on this node ends its own connections at once (:meth:`end_token`).

Ending a connection (:meth:`Watched.login_ended`) sends the error in the
spec's form, then closes with :data:`CLOSE_LOGIN_ENDED` (4003), the error's
code as the close reason; docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Protocol

from sqlalchemy import select

from kefu.protocol import ErrorCode
from kefu.protocol.close import CloseCode

from .schema import agents, tokens
from .settings import Settings
from .store import Store, aware

__all__ = ["CLOSE_LOGIN_ENDED", "LoginWatch", "Watched"]

log = logging.getLogger("kefu.server.logins")

#: The close code of a socket whose login ended (expired, revoked, account disabled).
CLOSE_LOGIN_ENDED = CloseCode.login_ended

# at most this many token hashes per query (SQLite's bound parameters are limited)
_BATCH = 500


class Watched(Protocol):
    """A connection that logged in with a token."""

    def login_ended(self, code: ErrorCode) -> None:
        """Tell the peer why (an error in the spec's form) and close with 4003."""
        ...


class LoginWatch:
    """This node's token-authenticated connections, ended with their login."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.s = settings
        self._live: dict[Watched, tuple[str, datetime]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, conn: Watched, token_hash: str, expires_at: datetime) -> None:
        self._live[conn] = (token_hash, expires_at)

    def forget(self, conn: Watched) -> None:
        self._live.pop(conn, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kefu-login-watch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._live.clear()

    def end_token(self, token_hash: str, code: ErrorCode) -> None:
        """End this node's connections that logged in with ``token_hash`` now."""
        self._end([(c, code) for c, (h, _) in self._live.items() if h == token_hash])

    def _end(self, ended: list[tuple[Watched, ErrorCode]]) -> None:
        for conn, code in ended:
            if self._live.pop(conn, None) is not None:
                conn.login_ended(code)

    async def check(self) -> None:
        """One look: end the connections whose login ended."""
        if not self._live:
            return
        now = self.s.now()
        ended = [(c, ErrorCode.token_expired) for c, (_, exp) in self._live.items() if exp <= now]
        self._end(ended)
        hashes = list({h for h, _ in self._live.values()})
        verdict: dict[str, ErrorCode | None] = dict.fromkeys(hashes, ErrorCode.unauthenticated)  # deleted
        async with self.store.read() as conn:
            for i in range(0, len(hashes), _BATCH):
                q = (
                    select(tokens.c.token_hash, tokens.c.revoked_at, tokens.c.expires_at, agents.c.disabled)
                    .join(agents, agents.c.id == tokens.c.agent_id)
                    .where(tokens.c.token_hash.in_(hashes[i : i + _BATCH]))
                )
                for row in await conn.execute(q):
                    expires = aware(row.expires_at)
                    verdict[row.token_hash] = (
                        ErrorCode.account_disabled
                        if row.disabled
                        else ErrorCode.token_revoked
                        if row.revoked_at is not None
                        else ErrorCode.token_expired
                        if expires is not None and expires <= now
                        else None
                    )
        ended = []
        for c, (h, _) in self._live.items():
            code = verdict.get(h)
            if code is not None:
                ended.append((c, code))
        self._end(ended)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.s.login_check_interval)
            try:
                await self.check()
            except Exception:
                log.exception("checking the logins of open sockets failed; trying again")
