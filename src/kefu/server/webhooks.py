"""Webhooks: registered endpoints, and the delivery of the journal's events to them.

Theory of operation
-------------------
An admin registers an endpoint (URL, the event types it wants, a secret).
The journal's sequencer (:class:`kefu.server.events.Journal`) writes one
``webhook_deliveries`` row per event and endpoint that wants it, in the same
transaction that gives the event its cursor; so a delivery exists for every
event, and survives a restart.

Every node runs one **worker per endpoint**. A worker delivers only while its
node holds the endpoint's lease (``webhooks.lease_owner`` / ``lease_until``,
taken with one conditional ``UPDATE`` and renewed before each attempt): one
node at a time delivers an endpoint's events, and when that node dies another
takes over once the lease runs out. The worker sends the endpoint's pending
deliveries one at a time in cursor order, so events of a call or a session
arrive in their order; a delivery that fails (no 2xx, no answer within
``webhook_timeout``) is retried after ``webhook_backoff · 2^(n-1)`` seconds
(at most ``webhook_backoff_max``) and marked ``failed`` once the event is
older than ``webhook_retry_for``; the next one then goes. A slow or dead
endpoint holds up only its own worker.

Delivery is at least once: a node stopped between the endpoint's answer and
the row's update sends that event again; receivers deduplicate by event id.
The secret signs each request (:func:`kefu.protocol.integrations.sign`) and
is never logged nor returned after creation; logs name an endpoint by its id.
With a secrets key it is stored encrypted (:mod:`kefu.server.atrest`) and
decrypted only to sign a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, insert, or_, select, update

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.integrations import EVENT_INFO, SIGNATURE_HEADER, backoff, sign

from .atrest import SecretBox, SecretUnavailable
from .events import Journal, envelope
from .hub import Hub
from .schema import journal, webhook_deliveries, webhooks
from .settings import Settings
from .store import iso, new_id

__all__ = ["Webhooks", "check_events", "check_url"]

log = logging.getLogger("kefu.server.webhooks")

_TYPES = {t.value for t in EVENT_INFO}
_PREFIXES = {t.split(".")[0] for t in _TYPES}


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError("url: an http:// or https:// URL with a host", code=ErrorCode.invalid_field)
    return url


def check_events(wanted: list[str]) -> list[str]:
    if not wanted:
        raise ApiError('events: at least one type, or "*"', code=ErrorCode.invalid_field)
    for w in wanted:
        ok = w == "*" or w in _TYPES or (w.endswith(".*") and w[:-2] in _PREFIXES)
        if not ok:
            raise ApiError(f"events: unknown event type {w!r}", code=ErrorCode.invalid_field)
    return list(dict.fromkeys(wanted))


def _hook_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "url": r.url,
        "events": r.events,
        "createdAt": iso(r.created_at),
        "createdBy": r.created_by,
    }


def _delivery_view(r: Any) -> dict[str, Any]:
    return {
        "eventId": r.id,
        "type": r.type,
        "cursor": str(r.pos),
        "status": r.status,
        "attempts": r.attempts,
        "lastStatus": r.last_status,
        "lastError": r.last_error,
        "nextAt": iso(r.next_at) if r.status == "pending" else None,
        "deliveredAt": iso(r.delivered_at),
    }


class Webhooks:
    def __init__(self, hub: Hub, settings: Settings, journal_: Journal) -> None:
        self.hub = hub
        self.s = settings
        self.journal = journal_
        self.http = httpx.AsyncClient(
            timeout=settings.webhook_timeout, follow_redirects=False, trust_env=False
        )
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self.box = SecretBox(settings.secrets_key)

    # --- registration (admin; kefu.server.integrations)

    async def register(self, url: str, wanted: list[str], secret: str, by: str) -> dict[str, Any]:
        hook_id = new_id()
        async with self.hub.store.write() as conn:
            await conn.execute(
                insert(webhooks).values(
                    id=hook_id,
                    url=check_url(url),
                    events=check_events(wanted),
                    secret=self.box.seal(secret, hook_id),
                    created_at=self.s.now(),
                    created_by=by,
                )
            )
            row = (await conn.execute(select(webhooks).where(webhooks.c.id == hook_id))).one()
        log.info("webhook %s registered by %s for %s", hook_id, by, ", ".join(row.events))
        self._ensure_worker(hook_id)
        return _hook_view(row)

    async def all(self) -> list[dict[str, Any]]:
        async with self.hub.store.read() as conn:
            rows = await conn.execute(select(webhooks).order_by(webhooks.c.created_at, webhooks.c.id))
            return [_hook_view(r) for r in rows]

    async def get(self, hook_id: str) -> dict[str, Any]:
        async with self.hub.store.read() as conn:
            row = (await conn.execute(select(webhooks).where(webhooks.c.id == hook_id))).first()
        if row is None:
            raise ApiError(code=ErrorCode.no_such_webhook)
        return _hook_view(row)

    async def delete(self, hook_id: str, by: str) -> None:
        async with self.hub.store.write() as conn:
            await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == hook_id))
            gone = (await conn.execute(delete(webhooks).where(webhooks.c.id == hook_id))).rowcount
        if not gone:
            raise ApiError(code=ErrorCode.no_such_webhook)
        log.info("webhook %s deleted by %s", hook_id, by)
        await self._stop_worker(hook_id)

    async def deliveries(
        self, hook_id: str, *, status: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        await self.get(hook_id)
        d = webhook_deliveries
        q = (
            select(d, journal.c.id, journal.c.type)
            .join(journal, journal.c.num == d.c.event_num)
            .where(d.c.webhook_id == hook_id, d.c.pos > after)
            .order_by(d.c.pos)
            .limit(limit)
        )
        if status is not None:
            q = q.where(d.c.status == status)
        async with self.hub.store.read() as conn:
            return [_delivery_view(r) for r in await conn.execute(q)]

    # --- the workers

    async def start(self) -> None:
        await self._seal_stored()
        await self._refresh()
        self._watcher = asyncio.create_task(self._watch(), name="kefu-webhooks")

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._watcher, *self._workers.values()) if t is not None]
        self._workers.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.http.aclose()

    async def _seal_stored(self) -> None:
        """With a key: seal the secrets stored without one. Say so if some cannot be opened."""
        async with self.hub.store.read() as conn:
            rows = (await conn.execute(select(webhooks.c.id, webhooks.c.secret))).all()
        plain = [r for r in rows if not self.box.is_sealed(r.secret)]
        if self.box.sealing and plain:
            async with self.hub.store.write() as conn:
                for r in plain:
                    await conn.execute(
                        update(webhooks)
                        .where(webhooks.c.id == r.id, webhooks.c.secret == r.secret)
                        .values(secret=self.box.seal(r.secret, r.id))
                    )
            log.info(
                "the secrets of %d webhook(s) stored before the secrets key are now encrypted", len(plain)
            )
        for r in rows:
            if self.box.is_sealed(r.secret):
                try:
                    self.box.open(r.secret, r.id)
                except SecretUnavailable as exc:
                    log.error("webhook %s: %s; its deliveries fail until the key is given", r.id, exc)

    async def _refresh(self) -> None:
        """Start a worker for every endpoint (registered on any node), stop those deleted."""
        async with self.hub.store.read() as conn:
            ids = set((await conn.execute(select(webhooks.c.id))).scalars())
        for hook_id in ids - self._workers.keys():
            self._ensure_worker(hook_id)
        for hook_id in self._workers.keys() - ids:
            await self._stop_worker(hook_id)

    async def _watch(self) -> None:
        """Wake the workers when the journal grows; look for other nodes' endpoints now and then."""
        seen = self.journal.top
        clock = asyncio.get_running_loop()
        looked = clock.time()
        while not self._closed and not self.journal.closed:  # a closed journal's wait returns at once
            await self.journal.wait(seen, self.s.events_poll)
            if self.journal.top > seen:
                seen = self.journal.top
                for ev in self._wake.values():
                    ev.set()
            # other nodes' endpoints: one look per ``events_poll``, not one per journal growth
            # (that was a read per batch, i.e. per message at a steady 100 msg/s: D60); this
            # node's own registrations and deletions start and stop their workers at once
            if clock.time() - looked < self.s.events_poll:
                continue
            looked = clock.time()
            try:
                await self._refresh()
            except Exception:
                log.exception("looking for webhooks failed")

    def _ensure_worker(self, hook_id: str) -> None:
        if self._closed or hook_id in self._workers:
            return
        self._wake[hook_id] = asyncio.Event()
        self._workers[hook_id] = asyncio.create_task(self._work(hook_id), name=f"kefu-webhook-{hook_id[:8]}")

    async def _stop_worker(self, hook_id: str) -> None:
        task = self._workers.pop(hook_id, None)
        self._wake.pop(hook_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _idle(self, hook_id: str, seconds: float) -> None:
        ev = self._wake.get(hook_id)
        if ev is None:
            await asyncio.sleep(seconds)  # a worker being stopped
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), max(0.0, seconds))
        ev.clear()

    async def _work(self, hook_id: str) -> None:
        while not self._closed:
            try:
                wait = await self._step(hook_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: delivering failed; trying again", hook_id)
                wait = self.s.events_poll
            if wait is None:
                return  # deleted
            if wait > 0:
                await self._idle(hook_id, wait)

    async def _lease(self, hook_id: str) -> bool | None:
        """Take or renew the endpoint's lease: ``True`` held, ``False`` another node's, ``None`` deleted."""
        now = self.s.now()
        me = self.s.node_id
        async with self.hub.store.write() as conn:
            got = (
                await conn.execute(
                    update(webhooks)
                    .where(
                        webhooks.c.id == hook_id,
                        or_(
                            webhooks.c.lease_owner.is_(None),
                            webhooks.c.lease_owner == me,
                            webhooks.c.lease_until < now,
                        ),
                    )
                    .values(lease_owner=me, lease_until=now + timedelta(seconds=self.s.webhook_lease))
                )
            ).rowcount
            if got:
                return True
            exists = (await conn.execute(select(webhooks.c.id).where(webhooks.c.id == hook_id))).first()
        return False if exists is not None else None

    async def _step(self, hook_id: str) -> float | None:
        """One attempt, if one is due: the seconds to wait before the next step (``None``: deleted)."""
        leased = await self._lease(hook_id)
        if leased is None:
            return None
        if not leased:
            return self.s.webhook_lease / 3
        d = webhook_deliveries
        async with self.hub.store.read() as conn:
            row = (
                await conn.execute(
                    select(
                        d.c.num.label("dnum"),
                        d.c.attempts,
                        d.c.next_at,
                        webhooks.c.url,
                        webhooks.c.secret,
                        journal,
                    )
                    .join(webhooks, webhooks.c.id == d.c.webhook_id)
                    .join(journal, journal.c.num == d.c.event_num)
                    .where(d.c.webhook_id == hook_id, d.c.status == "pending")
                    .order_by(d.c.pos)
                    .limit(1)
                )
            ).first()
        if row is None:
            return self.s.events_poll  # woken sooner when the journal grows
        now = self.s.now()
        due = (row.next_at if row.next_at.tzinfo else row.next_at.replace(tzinfo=now.tzinfo)) - now
        if due.total_seconds() > 0:
            return min(float(due.total_seconds()), self.s.events_poll)
        ok, status, error = await self._post(hook_id, row)
        await self._record(hook_id, row, ok, status, error)
        return 0.0

    async def _post(self, hook_id: str, row: Any) -> tuple[bool, int | None, str | None]:
        body = json.dumps(envelope(row), ensure_ascii=False, separators=(",", ":")).encode()
        try:
            secret = self.box.open(row.secret, hook_id)  # only to sign, never kept
        except SecretUnavailable as exc:
            return False, None, str(exc)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kefu-webhooks/1",
            "Kefu-Event-Id": row.id,
            "Kefu-Event-Type": row.type,
            SIGNATURE_HEADER: sign(secret, body, int(self.s.now().timestamp())),
        }
        try:
            resp = await self.http.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
        if 200 <= resp.status_code < 300:
            return True, resp.status_code, None
        return False, resp.status_code, f"HTTP {resp.status_code}"

    async def _record(self, hook_id: str, row: Any, ok: bool, status: int | None, error: str | None) -> None:
        now = self.s.now()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
        if ok:
            values.update(status="delivered", delivered_at=now)
        else:
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=now.tzinfo)
            retry = backoff(attempts, self.s.webhook_backoff, self.s.webhook_backoff_max)
            if (now - created).total_seconds() + retry > self.s.webhook_retry_for:
                values["status"] = "failed"
                log.warning(
                    "webhook %s: event %s not delivered within the retry time: failed", hook_id, row.id
                )
            else:
                values["next_at"] = now + timedelta(seconds=retry)
                log.info("webhook %s: event %s attempt %d failed (%s)", hook_id, row.id, attempts, error)
        async with self.hub.store.write() as conn:
            await conn.execute(
                update(webhook_deliveries).where(webhook_deliveries.c.num == row.dnum).values(**values)
            )
