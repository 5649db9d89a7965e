"""The live floor of the contact centre (issue 20): agents, queue, the day's figures.

Theory of operation
-------------------
The floor is *read* from the database, never kept beside it: every agent with
its state, the reason and who set it (the last ``state_changes`` row), its open
sessions and calls in progress; the waiting queue; the calls waiting in a
team's queue after a blind transfer (D50, shown to the team's supervisors and
admins: D54); and the figures of the day
(:func:`figures`: service level, abandoned, average wait and handle time,
not-ready time by reason). :meth:`Floor.snapshot` reads it once for a
:class:`~kefu.server.teams.Viewer` (a supervisor sees its teams' agents, an
admin everyone; the queue and its figures are the centre's).

It is *shown* live to subscribers (the supervisor page's and integrators' SSE
streams, :mod:`kefu.server.floor_api`): a change marks the floor dirty
(:meth:`Floor.changed`: an agent's state change, heard from
:class:`~kefu.server.agents.AgentService`; a queue change, heard from the
router's :class:`~kefu.server.routing.QueueNotifier`, which also hears other
nodes; a call joining or leaving a team's queue, heard from the call engine's
``queue_listeners``), and one task reads the whole floor once and hands each subscriber its
view, at most every ``floor_push_interval`` seconds however many changes came
meanwhile (the same coalescing as the queue pushes, D10). A subscriber keeps
only the newest frame: a slow reader skips frames, it never queues them.
Changes no hook reports (a session closing, an agent's change on another
node, a call queued on another node) show at the latest after ``floor_refresh`` seconds, when the floor is
read again anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import CODE_INFO, Code

from .agents import Change
from .call_queries import queued_calls
from .hub import Hub, agent_key
from .reasons import list_reasons
from .routing import Router
from .schema import agents, call_members, calls, sessions, state_changes, team_members, teams
from .settings import Settings
from .store import aware, iso
from .supervise import supervising
from .tasks import Coalesced
from .teams import Viewer

__all__ = ["Floor", "Subscription", "call_queue", "day_start", "figures", "not_ready_by_reason"]

log = logging.getLogger("kefu.server.floor")

NOT_READY = "001"  # SPEC §5.1: 001xxx, not ready (busy)


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: where "the day" of the figures begins."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a is not None and b is not None else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def figures(
    rows: Iterable[Any],
    call_rows: Iterable[Any],
    *,
    since: datetime,
    until: datetime,
    sla_seconds: float,
) -> dict[str, Any]:
    """The queue's figures over [since, until) from session and call rows (pure).

    - *offered*: sessions created in the window; *answered*: those given to an
      agent (``assigned_at``); *abandoned*: those closed while still waiting;
      *waiting*: those still in the queue.
    - *service level*: answered within ``sla_seconds`` of arriving, over
      answered + abandoned (the ones still waiting are not decided yet);
      ``None`` when nothing was decided.
    - *average wait*: arrival → assignment, over the answered.
    - *average handle time*: assignment → close, over the sessions closed in
      the window; for calls, answer → end, over the calls ended in it.
    """
    offered = answered = within = abandoned = waiting = 0
    waits: list[float] = []
    handles: list[float] = []
    for r in rows:
        created, assigned, closed = aware(r.created_at), aware(r.assigned_at), aware(r.closed_at)
        if created is not None and since <= created < until:
            offered += 1
            if assigned is not None:
                answered += 1
                wait = _secs(created, assigned) or 0.0
                waits.append(wait)
                within += wait <= sla_seconds
            elif r.status == "closed":
                abandoned += 1
            else:
                waiting += 1
        if assigned is not None and closed is not None and since <= closed < until:
            handles.append(_secs(assigned, closed) or 0.0)
    call_handles = [
        _secs(aware(c.answered_at), aware(c.ended_at)) or 0.0
        for c in call_rows
        if c.answered_at is not None and c.ended_at is not None and since <= aware(c.ended_at) < until  # type: ignore[operator]
    ]
    decided = answered + abandoned
    return {
        "since": iso(since),
        "until": iso(until),
        "serviceLevelSeconds": sla_seconds,
        "offered": offered,
        "answered": answered,
        "answeredWithin": within,
        "abandoned": abandoned,
        "waiting": waiting,
        "serviceLevel": round(within / decided, 4) if decided else None,
        "averageWait": _mean(waits),
        "handled": len(handles),
        "averageHandle": _mean(handles),
        "callsHandled": len(call_handles),
        "averageCallHandle": _mean(call_handles),
    }


def not_ready_by_reason(
    changes: Iterable[Any], *, since: datetime, until: datetime
) -> dict[int, dict[str, list[float]]]:
    """Per agent, per reason: [times it went not ready, seconds not ready] within [since, until) (pure).

    ``changes`` are state changes ordered by agent and ``num``, each agent's
    first one the last before ``since`` if there is one (the state the agent
    was in when the window opened). A change without a reason counts as
    ``"none"``."""
    out: dict[int, dict[str, list[float]]] = defaultdict(dict)
    rows = list(changes)
    for i, r in enumerate(rows):
        if not r.new_code.startswith(NOT_READY):
            continue
        at = aware(r.at)
        assert at is not None
        nxt = rows[i + 1] if i + 1 < len(rows) and rows[i + 1].agent_id == r.agent_id else None
        end = until
        if nxt is not None:
            next_at = aware(nxt.at)
            assert next_at is not None
            end = min(next_at, until)
        start = max(at, since)
        if end <= start and at < since:
            continue
        slot = out[r.agent_id].setdefault(r.reason or "none", [0, 0.0])
        slot[0] += at >= since
        slot[1] += max(0.0, (end - start).total_seconds())
    return out


def call_queue(rows: Iterable[Any], now: datetime) -> list[dict[str, Any]]:
    """The calls waiting in the teams' queues (D50) as the floor shows them (pure): ``rows``
    first come first, as :func:`~kefu.server.call_queries.queued_calls` reads them; each
    with its place in its own team's queue."""
    places: dict[str, int] = defaultdict(int)
    out = []
    for r in rows:
        places[r.team] += 1
        since = aware(r.queued_at)
        out.append(
            {
                "callId": r.id,
                "visitorName": r.name,
                "team": r.team,
                "since": iso(since),
                "wait": round(_secs(since, now) or 0.0, 3),
                "position": places[r.team],
            }
        )
    return out


@dataclass(eq=False)
class Subscription:
    """One live view of the floor; holds only the newest frame."""

    viewer: Viewer
    metrics_only: bool = False
    frame: dict[str, Any] | None = None
    last_text: str = ""
    closed: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self, wait: float) -> dict[str, Any] | None:
        """The newest frame not taken yet; ``None`` after ``wait`` seconds without one
        (the caller sends a keep-alive) or once closed."""
        if self.frame is None and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait)
        self._ready.clear()
        frame, self.frame = self.frame, None
        return None if self.closed else frame


class Floor:
    def __init__(self, hub: Hub, settings: Settings, router: Router) -> None:
        self.hub = hub
        self.s = settings
        self.router = router
        self.subs: set[Subscription] = set()
        self.rounds = 0  # how many times the floor was read for subscribers (tests, benchmarks)
        self._rounds = Coalesced(
            self._show,
            "kefu-floor",
            log,
            failed="showing the floor failed; the next change shows it",
            interval=lambda: self.s.floor_push_interval,
        )
        self._ticker: asyncio.Task[None] | None = None

    @property
    def _closed(self) -> bool:
        return self._rounds.closed

    # --- hooks

    async def on_agent_change(self, change: Change) -> None:
        self.changed()

    def changed(self) -> None:
        """Something on the floor changed: show it to the subscribers soon (coalesced)."""
        if self.subs:
            self._rounds.ask()

    async def _tick(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.s.floor_refresh)
            self.changed()

    async def _show(self) -> None:
        subs = [s for s in self.subs if not s.closed]
        if not subs:
            return
        board = await self._read()
        self.rounds += 1
        for sub in subs:
            view = self._view(board, sub.viewer)
            frame = {"metrics": view["metrics"]} if sub.metrics_only else view
            text = repr({k: v for k, v in frame.items() if k != "now"})
            if text != sub.last_text:
                sub.last_text = text
                sub.offer(frame)

    @contextlib.asynccontextmanager
    async def subscribe(self, viewer: Viewer, *, metrics_only: bool = False) -> AsyncIterator[Subscription]:
        """A live view for ``viewer``; its first frame is the floor as it is now."""
        sub = Subscription(viewer, metrics_only)
        board = await self._read()
        view = self._view(board, viewer)
        sub.offer({"metrics": view["metrics"]} if metrics_only else view)
        self.subs.add(sub)
        if self._ticker is None and self.s.floor_refresh > 0 and not self._closed:
            self._ticker = asyncio.create_task(self._tick(), name="kefu-floor-refresh")
        try:
            yield sub
        finally:
            self.subs.discard(sub)
            sub.close()

    async def close(self) -> None:
        await self._rounds.close()
        for sub in list(self.subs):
            sub.close()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)

    # --- reads

    async def snapshot(self, viewer: Viewer) -> dict[str, Any]:
        return self._view(await self._read(), viewer)

    async def metrics(
        self,
        viewer: Viewer,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        sla_seconds: float | None = None,
    ) -> dict[str, Any]:
        """The figures over [since, until) (default: today so far), as the viewer may see them."""
        now = self.s.now()
        since = since or day_start(now)
        until = until or now
        sla = self.s.service_level_seconds if sla_seconds is None else sla_seconds
        async with self.hub.store.read() as conn:
            board = await self._figures(conn, since, until, sla)
        return self._metrics_view(board, viewer)

    async def _read(self) -> dict[str, Any]:
        now = self.s.now()
        async with self.hub.store.read() as conn:
            board = await self._figures(conn, day_start(now), now, self.s.service_level_seconds)
            board["now"] = now
            board["agents"] = await self._agents(conn)
            board["queue"] = [
                {
                    "sessionId": w.id,
                    "visitorName": w.name,
                    "since": iso(aware(w.created_at)),
                    "wait": round(_secs(aware(w.created_at), now) or 0.0, 3),
                }
                for w in await self.router._waiting_rows(conn)
            ]
            board["callQueue"] = call_queue(await queued_calls(conn), now)
        for a in board["agents"]:
            a["connected"] = await self.hub.bus.present(agent_key(a["id"]))
        return board

    async def _figures(
        self, conn: AsyncConnection, since: datetime, until: datetime, sla: float
    ) -> dict[str, Any]:
        srows = await conn.execute(
            select(
                sessions.c.created_at, sessions.c.assigned_at, sessions.c.closed_at, sessions.c.status
            ).where(
                or_(
                    (sessions.c.created_at >= since) & (sessions.c.created_at < until),
                    (sessions.c.closed_at >= since) & (sessions.c.closed_at < until),
                )
            )
        )
        crows = await conn.execute(
            select(calls.c.answered_at, calls.c.ended_at).where(
                calls.c.ended_at >= since, calls.c.ended_at < until
            )
        )
        base = figures(list(srows), list(crows), since=since, until=until, sla_seconds=sla)
        before = (
            select(func.max(state_changes.c.num))
            .where(state_changes.c.at < since)
            .group_by(state_changes.c.agent_id)
        )
        changes = await conn.execute(
            select(
                state_changes.c.agent_id,
                state_changes.c.num,
                state_changes.c.new_code,
                state_changes.c.reason,
                state_changes.c.at,
            )
            .where(
                or_(
                    (state_changes.c.at >= since) & (state_changes.c.at < until),
                    state_changes.c.num.in_(before),
                )
            )
            .order_by(state_changes.c.agent_id, state_changes.c.num)
        )
        return {
            "figures": base,
            "reasons": not_ready_by_reason(list(changes), since=since, until=until),
            "labels": {r["code"]: r["label"] for r in await list_reasons(conn)},
        }

    async def _agents(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        open_count = (
            select(func.count())
            .where(sessions.c.agent_id == agents.c.id, sessions.c.status == "open")
            .scalar_subquery()
        )
        last = select(func.max(state_changes.c.num)).group_by(state_changes.c.agent_id).scalar_subquery()
        cause = {
            r.agent_id: r
            for r in await conn.execute(
                select(state_changes.c.agent_id, state_changes.c.reason, state_changes.c.actor).where(
                    state_changes.c.num.in_(last)
                )
            )
        }
        in_calls: dict[int, list[str]] = defaultdict(list)
        for r in await conn.execute(
            select(call_members.c.agent_id, calls.c.id)
            .join(calls, calls.c.id == call_members.c.call_id)
            .where(
                call_members.c.kind == "agent",
                call_members.c.left_at.is_(None),
                calls.c.status != "ended",
            )
        ):
            if r.id not in in_calls[r.agent_id]:
                in_calls[r.agent_id].append(r.id)
        helping = await supervising(conn)  # issue 20: the calls each supervisor helps in
        team_of: dict[int, list[str]] = defaultdict(list)
        for r in await conn.execute(
            select(team_members.c.agent_id, teams.c.name)
            .join(teams, teams.c.id == team_members.c.team_id)
            .order_by(teams.c.name)
        ):
            team_of[r.agent_id].append(r.name)
        out = []
        rows = await conn.execute(
            select(
                agents.c.id,
                agents.c.name,
                agents.c.admin,
                agents.c.supervisor,
                agents.c.disabled,
                agents.c.state,
                agents.c.state_since,
                agents.c.max_sessions,
                open_count.label("open_sessions"),
            ).order_by(agents.c.name)
        )
        for a in rows:
            code = Code(a.state)
            why = cause.get(a.id)
            out.append(
                {
                    "id": a.id,
                    "name": a.name,
                    "role": "admin" if a.admin else "supervisor" if a.supervisor else "agent",
                    "teams": team_of.get(a.id, []),
                    "disabled": bool(a.disabled),
                    "state": code.value,
                    "meaning": CODE_INFO[code].meaning,
                    "stateSince": iso(aware(a.state_since)),
                    "reason": why.reason if why is not None else None,
                    "by": why.actor if why is not None else None,
                    "openSessions": a.open_sessions,
                    "maxSessions": a.max_sessions,
                    "calls": in_calls.get(a.id, []),
                    "supervising": helping.get(a.id, []),
                }
            )
        return out

    # --- views

    @staticmethod
    def _metrics_view(board: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
        by_reason: dict[str, list[float]] = {}
        for agent_id, reasons in board["reasons"].items():
            if not viewer.sees(agent_id):
                continue
            for reason, (count, secs) in reasons.items():
                slot = by_reason.setdefault(reason, [0, 0.0])
                slot[0] += count
                slot[1] += secs
        labels = board["labels"]
        out = dict(board["figures"])
        out["notReady"] = [
            {"reason": r, "label": labels.get(r), "count": int(c), "seconds": round(s, 3)}
            for r, (c, s) in sorted(by_reason.items())
        ]
        return out

    def _view(self, board: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
        mine = [{k: v for k, v in a.items() if k != "id"} for a in board["agents"] if viewer.sees(a["id"])]
        return {
            "now": iso(board["now"]),
            "viewer": {"name": viewer.name, "admin": viewer.admin},
            "agents": mine,
            "queue": board["queue"],
            "callQueue": [c for c in board["callQueue"] if viewer.sees_team(c["team"])],
            "metrics": self._metrics_view(board, viewer),
        }
