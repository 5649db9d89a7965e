"""The server's services, wired together, independent of FastAPI.

``Services.open(settings)`` opens the database (migrating it), and makes the
hub, login, the agent state authority, routing, sessions and calls. The web
app holds one; tests and the demo can drive it directly too.

With ``Settings.redis_url`` the node is one of several (PostgreSQL only): the
hub's bus is a :class:`~kefu.server.redisbus.RedisBus`, and a sweeper fires,
every ``sweep_interval``, the timers (ringing, after-call work) that are due
whichever node set them, so a node that dies loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from .agents import AgentService
from .auth import Auth
from .calls import CallService
from .events import Journal
from .floor import Floor
from .hub import Bus, Hub
from .logins import LoginWatch
from .media import Media
from .redisbus import RedisBus
from .routing import Router
from .sessions import Sessions
from .settings import Settings
from .sfu import Sfu
from .store import Store
from .transfers import Transfers
from .turn import TurnIssuer
from .webhooks import Webhooks

__all__ = ["Services"]

log = logging.getLogger("kefu.server.services")


@dataclass
class Services:
    settings: Settings
    store: Store
    hub: Hub
    auth: Auth
    agents: AgentService
    router: Router
    sessions: Sessions
    calls: CallService
    media: Media
    turn: TurnIssuer
    logins: LoginWatch
    journal: Journal
    webhooks: Webhooks
    floor: Floor
    transfers: Transfers
    sweeper: asyncio.Task[None] | None = field(default=None)
    retention: asyncio.Task[None] | None = field(default=None)

    @classmethod
    async def open(cls, settings: Settings, *, bus: Bus | None = None) -> Services:
        if settings.redis_url and settings.is_sqlite:
            raise ValueError("several nodes (--redis) share a PostgreSQL database: give --db postgresql://…")
        turn = TurnIssuer(settings.turn_urls, settings.turn_secret, settings.turn_ttl)
        store = Store(settings)
        await store.open()
        if bus is None and settings.redis_url:
            redis_bus = RedisBus(
                settings.redis_url,
                node_id=settings.node_id,
                prefix=settings.redis_prefix,
                presence_ttl=settings.presence_ttl,
            )
            try:
                await redis_bus.start()
            except BaseException:
                await redis_bus.close()
                await store.close()
                raise
            bus = redis_bus
        hub = Hub(store, settings, bus)
        agents = AgentService(hub, settings)
        router = Router(hub, settings)
        agents.listeners.append(router.on_agent_change)
        journal = Journal(hub, settings)
        floor = Floor(hub, settings, router)
        agents.listeners.append(floor.on_agent_change)
        router.notifier.listeners.append(floor.changed)
        sessions = Sessions(hub, settings, router)
        transfers = Transfers(hub, settings, router, sessions)
        agents.listeners.append(transfers.on_agent_change)
        services = cls(
            settings=settings,
            store=store,
            hub=hub,
            auth=Auth(store, settings),
            agents=agents,
            router=router,
            sessions=sessions,
            calls=CallService(hub, settings, agents),
            media=Media(hub, settings),
            turn=turn,
            logins=LoginWatch(store, settings),
            journal=journal,
            webhooks=Webhooks(hub, settings, journal),
            floor=floor,
            transfers=transfers,
        )
        services.calls.engine.session_follows = transfers.follow_call  # issue 20
        agents.listeners.append(services.calls.agent_api.transfers.on_agent_change)  # D50: call queue
        services.calls.engine.queue_listeners.append(floor.changed)  # D54: the floor shows it
        services.calls.supervision.listeners.append(floor.changed)  # issue 20: who helps in which call
        if settings.janus_url:
            services.calls.sfu = Sfu(settings, store, services.calls.push_signal, services.media)
            services.calls.sfu.end_call = services.calls.media_server_lost
            if isinstance(bus, RedisBus):  # a node gone: the calls whose rooms it drove end (D48)
                bus.on_node_gone = services.calls.sfu.node_gone
            await services.calls.sfu.start()  # several nodes: the channel of its calls' rooms
        await agents.start()
        await services.calls.start()
        if services.calls.sfu is not None:
            await services.calls.sfu.end_orphans()  # a previous run's rooms (D48)
        await transfers.start()
        services.logins.start()
        await journal.start()
        await services.webhooks.start()
        if settings.redis_url:
            services.sweeper = asyncio.create_task(services._sweep(), name="kefu-sweeper")
        if settings.retention_days is not None:
            services.retention = asyncio.create_task(services._expire(), name="kefu-retention")
        return services

    async def _expire(self) -> None:
        """Media past ``retention_days``: deleted every ``retention_interval`` (on every node: each
        file once, its row marked)."""
        while True:
            try:
                await self.media.expire()
            except Exception:
                log.exception(
                    "the retention sweep failed; trying again in %.0f s", self.settings.retention_interval
                )
            await asyncio.sleep(self.settings.retention_interval)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self.calls.sweep()
                await self.agents.sweep()
            except Exception:
                log.exception(
                    "sweeping due timers failed; trying again in %.1f s", self.settings.sweep_interval
                )

    async def close(self) -> None:
        for task in (self.sweeper, self.retention):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # what makes changes first (its tasks cancelled and awaited, each service's own),
        # then what reports them, then the bus and the store: no task outlives the store
        await self.logins.close()
        await self.transfers.close()
        await self.calls.close()
        if self.calls.sfu is not None:
            await self.calls.sfu.aclose()
        await self.agents.close()
        await self.router.close()
        await self.floor.close()
        await self.webhooks.close()
        await self.journal.close()
        await self.sessions.close()
        await self.hub.close()
        await self.hub.bus.close()
        await self.store.close()
