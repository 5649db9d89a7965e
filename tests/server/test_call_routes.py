"""The agent's call APIs as the server routes them (server/call_agent_api.py, D39): pure, no server."""

from __future__ import annotations

from kefu.protocol.agent_api import AGENT_API
from kefu.protocol.plugin_api import CALL_MARKS
from kefu.server.call_agent_api import CALL_ROUTES

#: The marks the agent's connection hands to the calls besides the call APIs (server/connection.py).
MEDIA_MARKS = {"signal", "inviteShare", "takePhoto", "mediaFailed"}


def test_every_call_mark_has_a_route_and_nothing_else_does() -> None:
    assert set(CALL_ROUTES) == set(CALL_MARKS) | MEDIA_MARKS


def test_each_route_takes_the_model_the_agent_api_decodes() -> None:
    wrong = {
        mark: (route.params.__name__, AGENT_API.marks[mark].__name__)
        for mark, route in CALL_ROUTES.items()
        if AGENT_API.marks[mark] is not route.params
    }
    assert wrong == {}
