"""Login, tokens and login throttling.

A login gives a random 256-bit token (``secrets.token_urlsafe(32)``). Only
its SHA-256 is stored, with its expiry, so a copy of the database holds no
usable token. Tokens travel in the first socket message or in an
``Authorization: Bearer`` header / HttpOnly cookie, never in a URL. Logout
and disabling the account revoke a token (``revoked_at``): it is refused as
``token_revoked`` from then on, and the sockets that logged in with it are
closed (:mod:`kefu.server.logins`).

Throttling counts failed logins per name and per client address within
``login_window``: past ``login_delay_after`` failures every answer is slowed
down by ``login_delay`` per extra failure; at ``login_max_failures`` (per
name) or ``login_max_failures_per_address`` the name or address is refused
with ``login_locked`` for ``login_lock`` seconds without checking the
password. A successful login clears the name's count. The counts live in
memory: a restart forgets them, which only gives an attacker a fresh window
after the server restarts, not a way to cause one.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update

from kefu.protocol import ApiError, ErrorCode

from .accounts import Agent, find_agent, hash_password, password_hash_of, verify_password_async
from .schema import tokens
from .settings import Settings
from .store import Store, aware

__all__ = ["Auth", "Grant", "Login", "LoginLocked", "Throttle", "normalize_origin", "token_hash"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class LoginLocked(ApiError):
    code = ErrorCode.login_locked

    def __init__(self, retry_after: float) -> None:
        super().__init__()
        self.retry_after = retry_after


@dataclass
class _Count:
    failures: list[datetime] = field(default_factory=list)
    locked_until: datetime | None = None


class Throttle:
    """Failed attempts per key (``name:…`` or ``addr:…``), in memory."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._counts: dict[str, _Count] = {}

    def _count(self, key: str, now: datetime) -> _Count:
        c = self._counts.setdefault(key, _Count())
        horizon = now - timedelta(seconds=self.s.login_window)
        c.failures = [t for t in c.failures if t > horizon]
        if c.locked_until is not None and c.locked_until <= now:
            c.locked_until = None
            c.failures.clear()
        return c

    def check(self, key: str, now: datetime) -> None:
        """Raise :class:`LoginLocked` while ``key`` is locked."""
        c = self._count(key, now)
        if c.locked_until is not None:
            raise LoginLocked((c.locked_until - now).total_seconds())

    def fail(self, key: str, now: datetime, limit: int) -> float:
        """Count a failure; return how long to slow the answer down."""
        c = self._count(key, now)
        c.failures.append(now)
        if len(c.failures) >= limit:
            c.locked_until = now + timedelta(seconds=self.s.login_lock)
        extra = len(c.failures) - self.s.login_delay_after
        return max(0, extra) * self.s.login_delay

    def clear(self, key: str) -> None:
        self._counts.pop(key, None)


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    expires_at: datetime
    agent: Agent

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "expiresAt": self.expires_at.isoformat(), "agent": self.agent.profile()}


@dataclass(frozen=True, slots=True)
class Grant:
    """A valid token: whose it is, its hash (what the server keeps) and when it expires."""

    agent: Agent
    token_hash: str
    expires_at: datetime


def normalize_origin(url: str) -> str | None:
    """``scheme://host[:port]`` in lower case without default ports, or None if it is not one."""
    if any(c in url for c in "\\\x00\r\n\t "):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None  # https://bank.example@evil.example/
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


class Auth:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.s = settings
        self.throttle = Throttle(settings)
        self._dummy_hash: str | None = None
        self.allowed_origins = frozenset(
            o for o in (normalize_origin(x) for x in settings.allowed_origins) if o is not None
        )

    async def _dummy(self) -> str:
        # a wrong name costs as much time as a wrong password: no user enumeration by timing
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(8), self.s.scrypt_n)
        return self._dummy_hash

    def return_to_allowed(self, return_to: str) -> bool:
        """A relative path on this server, or a URL on an allowed origin (no open redirect)."""
        if return_to.startswith("/"):
            return (
                not return_to.startswith("//")
                and "\\" not in return_to
                and all(c.isprintable() for c in return_to)
            )
        origin = normalize_origin(return_to)
        return origin is not None and origin in self.allowed_origins

    async def login(self, name: str, password: str, address: str) -> Login:
        now = self.s.now()
        name_key, addr_key = f"name:{name}", f"addr:{address}"
        self.throttle.check(name_key, now)
        self.throttle.check(addr_key, now)
        async with self.store.read() as conn:
            found = await password_hash_of(conn, name)
        stored = found[1] if found is not None else await self._dummy()
        ok = await verify_password_async(password, stored) and found is not None
        if not ok:
            delay = max(
                self.throttle.fail(name_key, now, self.s.login_max_failures),
                self.throttle.fail(addr_key, now, self.s.login_max_failures_per_address),
            )
            if delay > 0:
                await asyncio.sleep(delay)  # slow down guessing; the lock comes after
            raise ApiError(code=ErrorCode.bad_credentials)
        assert found is not None
        agent = found[0]
        if agent.disabled:
            raise ApiError(code=ErrorCode.account_disabled)
        self.throttle.clear(name_key)
        return await self.issue(agent, now)

    async def issue(self, agent: Agent, now: datetime) -> Login:
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(seconds=self.s.token_ttl)
        async with self.store.write() as conn:
            await conn.execute(tokens.delete().where(tokens.c.expires_at < now))
            await conn.execute(
                insert(tokens).values(
                    token_hash=token_hash(token), agent_id=agent.id, created_at=now, expires_at=expires
                )
            )
        return Login(token, expires, agent)

    async def check(self, token: str) -> Agent:
        """The agent a token belongs to (see :meth:`grant`)."""
        return (await self.grant(token)).agent

    async def grant(self, token: str) -> Grant:
        """The login a token stands for. Raises ``unauthenticated`` (unknown),
        ``token_revoked`` (logged out, or its account disabled), ``account_disabled`` or
        ``token_expired``."""
        digest = token_hash(token)
        async with self.store.read() as conn:
            row = (await conn.execute(select(tokens).where(tokens.c.token_hash == digest))).first()
            if row is None:
                raise ApiError(code=ErrorCode.unauthenticated)
            agent = await find_agent(conn, agent_id=row.agent_id)
        if agent is None:
            raise ApiError(code=ErrorCode.unauthenticated)
        if row.revoked_at is not None:  # logged out, or revoked with its account
            raise ApiError(code=ErrorCode.token_revoked)
        if agent.disabled:
            raise ApiError(code=ErrorCode.account_disabled)
        expires = aware(row.expires_at)
        assert expires is not None
        if expires <= self.s.now():
            raise ApiError(code=ErrorCode.token_expired)
        return Grant(agent, digest, expires)

    async def revoke(self, digest: str) -> None:
        """Revoke the token whose hash is ``digest`` (logout): it is refused from now on, on every
        node, and the sockets that logged in with it are closed (:class:`LoginWatch`)."""
        async with self.store.write() as conn:
            await conn.execute(
                update(tokens)
                .where(tokens.c.token_hash == digest, tokens.c.revoked_at.is_(None))
                .values(revoked_at=self.s.now())
            )
