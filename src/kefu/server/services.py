"""The server's services, wired together, independent of FastAPI.

``Services.open(settings)`` opens the database (migrating it), and makes the
hub, login, the agent state authority, routing, sessions and calls. The web
app holds one; tests and the demo can drive it directly too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .agents import AgentService
from .auth import Auth
from .calls import CallService
from .hub import Bus, Hub
from .media import Media
from .routing import Router
from .sessions import Sessions
from .settings import Settings
from .store import Store

__all__ = ["Services"]


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

    @classmethod
    async def open(cls, settings: Settings, *, bus: Bus | None = None) -> Services:
        store = Store(settings)
        await store.open()
        hub = Hub(store, settings, bus)
        agents = AgentService(hub, settings)
        router = Router(hub, settings)
        agents.listeners.append(router.on_agent_change)
        services = cls(
            settings=settings,
            store=store,
            hub=hub,
            auth=Auth(store, settings),
            agents=agents,
            router=router,
            sessions=Sessions(hub, settings, router),
            calls=CallService(hub, settings, agents),
            media=Media(hub, settings),
        )
        await agents.start()
        await services.calls.start()
        return services

    async def close(self) -> None:
        await self.calls.close()
        await self.router.close()
        await self.agents.close()
        await self.store.close()
