"""Events of the media layer and the small emitter that delivers them.

Callbacks are synchronous; one that raises is logged and the others still
run (STYLE §10). Each event is a frozen dataclass; :meth:`to_payload` gives
the camelCase dict the plugin puts in its push message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Emitter",
    "MediaEvent",
    "NegotiationNeeded",
    "StreamOffline",
    "StreamOnline",
    "TrackAdded",
    "TrackRemoved",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamOffline:
    """visitorStreamOffline (SPEC §2, v1216): no video frame from ``member``
    for ``offline_for`` seconds (more than the threshold). Once per outage."""

    call_id: str
    member: str
    offline_for: float

    def to_payload(self) -> dict[str, Any]:
        return {"callId": self.call_id, "member": self.member, "offlineMs": round(self.offline_for * 1000)}


@dataclass(frozen=True, slots=True)
class StreamOnline:
    """An addition: ``member``'s video is back after an outage of ``offline_for`` seconds."""

    call_id: str
    member: str
    offline_for: float

    def to_payload(self) -> dict[str, Any]:
        return {"callId": self.call_id, "member": self.member, "offlineMs": round(self.offline_for * 1000)}


@dataclass(frozen=True, slots=True)
class TrackAdded:
    """A remote ``member``'s ``role`` track arrived on the peer connection to ``peer``."""

    peer: str
    member: str
    role: str
    kind: str


@dataclass(frozen=True, slots=True)
class TrackRemoved:
    """``member`` stopped sending its ``role`` track (e.g. the screen share closed)."""

    peer: str
    member: str
    role: str
    kind: str


@dataclass(frozen=True, slots=True)
class NegotiationNeeded:
    """The peer connection to ``peer`` changed: send it a new offer
    (:meth:`~kefu.media.peer.MediaPeer.create_offer`)."""

    peer: str


MediaEvent = StreamOffline | StreamOnline | TrackAdded | TrackRemoved | NegotiationNeeded
Listener = Callable[[MediaEvent], None]


class Emitter:
    """Listeners of :data:`MediaEvent`s."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: MediaEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("media event listener failed on %r", event)
