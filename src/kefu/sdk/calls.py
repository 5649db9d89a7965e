"""The call the agent is in, as an SDK knows it (``currentCall``, docs/sdk.md).

The plugin tells it whenever an SDK arrives or asks: the ``hello`` reply,
``kefuReady`` (a page reloaded mid-call is greeted with it) and the
``getState`` reply carry ``currentCall`` — the call the agent is in (or rings
in), ``{callId, flow, phase, primary, members: [{kind, name, role, status}],
share}``, or None. Between those, the server's ``call`` events move it (a
member joins or leaves, the call ends). :class:`CallTracker` follows both
with the plugin's own mirror (:class:`kefu.protocol.mirror.CallMirror`), so the
SDK and the plugin agree on which call is current.
"""

from __future__ import annotations

from typing import Any

from kefu.protocol.mirror import CallMirror

__all__ = ["CallTracker"]

Json = dict[str, Any]


class CallTracker:
    """``currentCall`` of one SDK connection (see the module's docstring)."""

    def __init__(self) -> None:
        self._mirror = CallMirror()
        #: The call now (replaced whole at each change: another thread may read it).
        self.current: Json | None = None

    def _changed(self) -> None:
        self.current = self._mirror.current_json()

    def told(self, payload: object) -> None:
        """A payload of the plugin's (hello, ``kefuReady``, ``getState``): the agent and its call."""
        if not isinstance(payload, dict):
            return
        agent = payload.get("agent")
        if isinstance(agent, dict) and isinstance(agent.get("name"), str):
            self._mirror.me = agent["name"]
        if "currentCall" in payload:
            self._mirror.seed(payload["currentCall"])
        self._changed()

    def on_call(self, payload: object) -> None:
        """A ``call`` event of the server's."""
        if isinstance(payload, dict):
            self._mirror.update(payload)
            self._changed()

    def logged_out(self) -> None:
        self._mirror.clear()
        self._mirror.me = None
        self._changed()
