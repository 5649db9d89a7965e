"""The kefu server (DESIGN §1): accounts and login, the agent and visitor
sockets, IM sessions with a queue and routing, the agents' authoritative
state, storage (SQLite or PostgreSQL) and the REST API.

Layers: :mod:`~kefu.server.settings` (every option), :mod:`~kefu.server.store`
and :mod:`~kefu.server.schema` (database, migrations), :mod:`~kefu.server.hub`
(seq'd pushes, the bus), :mod:`~kefu.server.auth` and
:mod:`~kefu.server.accounts` (login, tokens), :mod:`~kefu.server.agents` (the
one state setter), :mod:`~kefu.server.routing` and
:mod:`~kefu.server.sessions` (queue, IM), :mod:`~kefu.server.calls` (the call
issue's place), then the adapters :mod:`~kefu.server.connection` (with
:mod:`~kefu.server.agent_connection` and :mod:`~kefu.server.visitor_connection`),
:mod:`~kefu.server.api`, :mod:`~kefu.server.app`, :mod:`~kefu.server.runner`
and :mod:`~kefu.server.cli`.
"""

from .app import create_app
from .runner import ServerRunner
from .services import Services
from .settings import Settings

__all__ = ["ServerRunner", "Services", "Settings", "create_app"]
