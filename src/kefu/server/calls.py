"""Call orchestration (SPEC §4.3, §5; the contract is docs/calls.md): the façade.

:class:`CallService` is what the connections, the REST API and the services
hold; each part lives in a module of its own:

- :mod:`~kefu.server.call_engine`: run one operation on a call, apply and save
  its effects, the ringing timers and their sweep (the theory of operation);
- :mod:`~kefu.server.call_agent_api`: the agent's call APIs, a table from mark
  to a handler that gets its params typed;
- :mod:`~kefu.server.call_visitor_api`: the visitor's side (ask, answer, join,
  hang up, the share and photo answers);
- :mod:`~kefu.server.call_signals`: signalling between members or to the SFU,
  ``mediaFailed``;
- :mod:`~kefu.server.call_presence`: connections and media that come and go
  (the call grace);
- :mod:`~kefu.server.call_queries`: the SQL look-ups;
- :mod:`~kefu.server.call_records`: the records of the REST API.
"""

from __future__ import annotations

from kefu.protocol.call import MediaMode
from kefu.protocol.plugin_api import CALL_MARKS

from .agents import AgentService
from .call_agent_api import AgentCallApi, Replier
from .call_engine import CallEngine
from .call_presence import CallPresence
from .call_records import CallRecords
from .call_signals import CallSignals
from .call_visitor_api import VisitorCallApi
from .hub import Hub
from .settings import Settings
from .sfu import Sfu

__all__ = ["CALL_MARKS", "CallService", "Replier"]


class CallService:
    def __init__(self, push_hub: Hub, settings: Settings, agents: AgentService) -> None:
        self.engine = CallEngine(push_hub, settings, agents)
        self.signals = CallSignals(self.engine)
        self.agent_api = AgentCallApi(self.engine, self.signals)
        self.visitor_api = VisitorCallApi(self.engine, self.signals)
        self.presence = CallPresence(self.engine)
        self.records = CallRecords(push_hub.store)
        self.supervision = self.engine.supervision  # issue 20: a supervisor in a call
        # the agent's side
        self.handle = self.agent_api.handle
        # the visitor's side
        self.request_video = self.visitor_api.request_video
        self.answer = self.visitor_api.answer
        self.join = self.visitor_api.join
        self.hangup_visitor = self.visitor_api.hangup
        self.visitor_signal = self.visitor_api.signal
        self.visitor_media_failed = self.visitor_api.media_failed
        self.share_answer = self.visitor_api.share_answer
        self.photo_answer = self.visitor_api.photo_answer
        # the media server's signals (SFU mode)
        self.push_signal = self.signals.push_signal
        # connections and media that come and go
        self.member_gone = self.presence.member_gone
        self.member_back = self.presence.member_back
        self.media_back = self.presence.media_back
        self.media_server_lost = self.presence.media_server_lost
        # timers on several nodes
        self.sweep = self.engine.sweep
        # the records (REST)
        self.list_calls = self.records.list_calls
        self.get_call = self.records.get_call
        self.involves_agent = self.engine.queries.involves_agent

    @property
    def sfu(self) -> Sfu | None:
        """The SFU mode's media server client: set by ``Services`` when ``--janus`` is given."""
        return self.engine.sfu

    @sfu.setter
    def sfu(self, sfu: Sfu | None) -> None:
        self.engine.sfu = sfu

    @property
    def media_mode(self) -> MediaMode:
        return self.engine.media_mode

    async def start(self) -> None:
        """Rebuild the ringing timers of calls in progress."""
        await self.engine.start()

    async def close(self) -> None:
        """Stop the ringing timers and the members' graces on shutdown, those at work too."""
        await self.engine.close()
        await self.presence.close()
