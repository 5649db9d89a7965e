"""What integrators receive: the event catalogue, the webhook signature, the retry schedule.

Pure (no I/O, no clock: times come in as arguments). The server's journal
(:mod:`kefu.server.events`) records one event per change, in the change's
transaction; webhooks (:mod:`kefu.server.webhooks`) and the pull stream
(``GET /api/events``) deliver the same events with the same ids.

Every event is one JSON object, the *envelope*::

    {"id": "<32 hex>", "type": "call.ended", "at": "<ISO 8601 UTC>",
     "stream": "call:<callId>", "seq": 7, "cursor": "1234", "data": {…}}

``stream`` names what the event is about (an agent, a session, a call);
``seq`` counts that stream's events from 1 without gaps, so a receiver sees
order per stream and notices a gap. ``cursor`` is the event's place in the
whole journal (``GET /api/events?after=<cursor>``).

Signature (the scheme Stripe uses): the header
``Kefu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
A receiver recomputes the HMAC over the raw body and refuses a ``t`` older
than :data:`REPLAY_WINDOW` seconds (a replayed request).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

__all__ = [
    "EVENT_INFO",
    "REPLAY_WINDOW",
    "SIGNATURE_HEADER",
    "EventInfo",
    "EventType",
    "StreamKind",
    "backoff",
    "integrations_md",
    "matches",
    "parse_signature",
    "sign",
    "stream_key",
    "verify",
]

SIGNATURE_HEADER = "Kefu-Signature"
#: Seconds a receiver accepts a signed request after its timestamp ``t``.
REPLAY_WINDOW = 300


class StreamKind(enum.StrEnum):
    agent = "agent"  # agent:<name>
    session = "session"  # session:<sessionId>
    call = "call"  # call:<callId>


def stream_key(kind: StreamKind, ident: str | int) -> str:
    return f"{kind.value}:{ident}"


class EventType(enum.StrEnum):
    agent_state_changed = "agent.state_changed"
    session_queued = "session.queued"
    session_assigned = "session.assigned"
    session_closed = "session.closed"
    session_transferred = "session.transferred"
    message_created = "message.created"
    call_ringing = "call.ringing"
    call_connected = "call.connected"
    call_member_joined = "call.member_joined"
    call_member_left = "call.member_left"
    call_ended = "call.ended"
    call_transferred = "call.transferred"
    call_supervisor = "call.supervisor"
    recording_started = "recording.started"
    recording_ready = "recording.ready"
    recording_failed = "recording.failed"
    snapshot_taken = "snapshot.taken"
    photo_taken = "photo.taken"


@dataclass(frozen=True, slots=True)
class EventInfo:
    stream: StreamKind
    meaning: str
    data: tuple[str, ...]  # the keys of ``data``


_MEDIA = ("artifactId", "kind", "callId", "contentType", "size", "sha256", "createdAt", "meta")

EVENT_INFO: dict[EventType, EventInfo] = {
    EventType.agent_state_changed: EventInfo(
        StreamKind.agent,
        "an agent's state changed (SPEC §5): old and new 6-digit code, the flow and event, "
        "the reason code or trigger, the call if any",
        ("agentName", "old", "new", "flow", "event", "reason", "callId"),
    ),
    EventType.session_queued: EventInfo(
        StreamKind.session,
        "a visitor's first message opened a session; it waits in the queue",
        ("sessionId", "visitorName"),
    ),
    EventType.session_assigned: EventInfo(
        StreamKind.session,
        "a waiting session went to an agent (routing, or the agent picked it up)",
        ("sessionId", "visitorName", "agentName"),
    ),
    EventType.session_closed: EventInfo(
        StreamKind.session,
        "a session was closed, by whom (agent, visitor, system) and why",
        ("sessionId", "visitorName", "agentName", "by", "reason"),
    ),
    EventType.session_transferred: EventInfo(
        StreamKind.session,
        "a session left its agent (issue 20): to another agent or back to the head of the queue "
        "(``to`` null, with its ``position``); ``reason`` is transferred (the agent's "
        "transferSession, with its note), agentLoggedOut, agentLost or callTransferred (its call went "
        "to the agent, with the call transfer's note)",
        ("sessionId", "visitorName", "from", "to", "reason", "note", "position"),
    ),
    EventType.message_created: EventInfo(
        StreamKind.session,
        "a message was stored in a session",
        ("sessionId", "messageId", "from", "text", "at"),
    ),
    EventType.call_ringing: EventInfo(
        StreamKind.call,
        "a member of a call is being invited: its invitation rings",
        ("callId", "flow", "kind", "name", "role"),
    ),
    EventType.call_connected: EventInfo(
        StreamKind.call,
        "a call was answered (the first time it connected)",
        ("callId", "flow", "primary", "visitorName"),
    ),
    EventType.call_member_joined: EventInfo(
        StreamKind.call, "a member joined the call", ("callId", "kind", "name", "role")
    ),
    EventType.call_member_left: EventInfo(
        StreamKind.call,
        "a member left the call or its invitation ended without joining; ``outcome`` is "
        "left, refused, busy, timeout, cancelled or failed",
        ("callId", "kind", "name", "role", "outcome", "reason"),
    ),
    EventType.call_ended: EventInfo(
        StreamKind.call, "the call ended: who ended it and why", ("callId", "flow", "endedBy", "reason")
    ),
    EventType.call_transferred: EventInfo(
        StreamKind.call,
        "a transfer of the call ended (issue 20): ``kind`` blind or consult, from the agent to "
        "the agent, the note; ``outcome`` completed (the target has the visitor), refused, "
        "timeout, failed, cancelled, targetLeft (the consulted agent hung up) or ended",
        ("callId", "kind", "from", "to", "note", "outcome", "visitorName"),
    ),
    EventType.call_supervisor: EventInfo(
        StreamKind.call,
        "a supervisor joined a call, changed mode or left it (issue 20): ``mode`` is monitor, "
        "whisper, barge or null (it left, ``reason`` says why); ``old`` the mode before (null: "
        "it joined)",
        ("callId", "supervisor", "mode", "old", "reason"),
    ),
    EventType.recording_started: EventInfo(
        StreamKind.call,
        "the media server writes the call's first media (SFU mode): the recording has begun",
        ("callId", "startedAt", "member"),
    ),
    EventType.recording_failed: EventInfo(
        StreamKind.call,
        "the call's recording could not be made or stored; ``reason`` says why",
        ("callId", "reason"),
    ),
    EventType.recording_ready: EventInfo(
        StreamKind.call, "the call's recording is complete and stored (with its SHA-256)", _MEDIA
    ),
    EventType.snapshot_taken: EventInfo(
        StreamKind.call, "an agent's plugin stored a snapshot of the visitor's video", _MEDIA
    ),
    EventType.photo_taken: EventInfo(
        StreamKind.call, "a visitor's photo (takePhoto) was stored", (*_MEDIA, "requestId")
    ),
}


def matches(wanted: list[str] | tuple[str, ...], event_type: str) -> bool:
    """Does a webhook that asked for ``wanted`` (types, ``"*"``, or ``"call.*"``) get this type?"""
    for w in wanted:
        if w == "*" or w == event_type or (w.endswith(".*") and event_type.startswith(w[:-1])):
            return True
    return False


def sign(secret: str, body: bytes, t: int) -> str:
    """The ``Kefu-Signature`` header of ``body`` sent at unix time ``t``."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def parse_signature(header: str) -> tuple[int, list[str]]:
    """``(t, [v1 signatures])``; ``ValueError`` when the header is malformed."""
    t: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            t = int(value)
        elif key == "v1":
            sigs.append(value)
    if t is None or not sigs:
        raise ValueError("a signature needs t= and v1=")
    return t, sigs


def verify(secret: str, body: bytes, header: str, now: float, window: float = REPLAY_WINDOW) -> bool:
    """Is ``header`` a valid signature of ``body``, made within ``window`` seconds of ``now``?"""
    try:
        t, sigs = parse_signature(header)
    except ValueError:
        return False
    if abs(now - t) > window:
        return False
    expected = sign(secret, body, t).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, s) for s in sigs)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry ``attempt`` (1, 2, …): ``base · 2^(attempt-1)``, at most ``cap``."""
    return min(cap, base * 2.0 ** min(attempt - 1, 60))


_HEADER = "<!-- generated by `kefu docs` from src/kefu/protocol; do not edit by hand -->\n"


def integrations_md() -> str:
    """``docs/integrations.md``: the event catalogue, delivery and how to verify a signature."""
    out = [_HEADER, "# Integrations: webhooks and the event stream\n"]
    out.append(
        "Every change an integrator may care about is recorded as an **event** in the same "
        "database transaction as the change itself, and delivered twice over: pushed to "
        "registered **webhooks**, and pulled from the **event stream** "
        "(`GET /api/events`, or live as Server-Sent Events at `GET /api/events/stream`). "
        "Both carry the same events with the same ids. Admins only.\n"
    )
    out.append("## The envelope\n")
    out.append(
        "```json\n"
        '{"id": "9f1c…", "type": "call.ended", "at": "2026-01-05T09:30:00+00:00",\n'
        ' "stream": "call:4be1…", "seq": 7, "cursor": "1234", "data": {…}}\n'
        "```\n\n"
        "- `id`: unique (32 hex digits); a receiver that saw it already ignores it "
        "(delivery is at least once).\n"
        "- `stream` and `seq`: what the event is about (`agent:<name>`, `session:<id>`, "
        "`call:<id>`) and its number in that stream, from 1, without gaps: events of one "
        "stream are delivered in this order.\n"
        "- `cursor`: the event's place in the whole journal; `GET /api/events?after=<cursor>` "
        "gives exactly the events after it.\n"
    )
    out.append("## Event types\n")
    out.append("| type | stream | meaning | `data` keys |\n| --- | --- | --- | --- |")
    for et, info in EVENT_INFO.items():
        keys = ", ".join(f"`{k}`" for k in info.data)
        out.append(f"| `{et.value}` | `{info.stream.value}:…` | {info.meaning} | {keys} |")
    out.append("\n## Webhooks\n")
    out.append(
        '- `POST /api/webhooks` `{"url", "events": ["*" | type | "call.*"…], "secret"}` '
        "registers an endpoint (admin); the answer has its `id`, never the secret again.\n"
        "- `GET /api/webhooks`, `GET /api/webhooks/{id}`, `DELETE /api/webhooks/{id}`.\n"
        "- `GET /api/webhooks/{id}/deliveries?status=`: every delivery with its attempts, "
        "last HTTP status or error, next attempt and time delivered.\n\n"
        "Each event is `POST`ed as the envelope above (`Content-Type: application/json`) with "
        "the headers `Kefu-Event-Id`, `Kefu-Event-Type` and `Kefu-Signature`. Any 2xx answer "
        "is success; anything else, or no answer within the timeout, is retried with "
        "exponential backoff (1 s, 2 s, 4 s … at most 1 h apart) for 24 h, then the delivery "
        "is marked `failed`. An endpoint receives its events one at a time, in journal order, "
        "so the order per call and per session holds; a slow or dead endpoint delays only "
        "itself. Deliveries are stored: a restart resumes them.\n"
    )
    out.append("## Verifying a signature\n")
    out.append(
        f'`{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` '
        "(the scheme Stripe uses). Compute the HMAC over the raw body bytes as received, "
        "compare in constant time, and refuse a timestamp more than "
        f"{REPLAY_WINDOW} seconds from your clock: a captured request replayed later fails. "
        "Then ignore an event id you processed already.\n"
    )
    out.append(
        "```python\n"
        "import hashlib, hmac, time\n\n"
        "def verify(secret: str, body: bytes, header: str, window: int = 300) -> bool:\n"
        '    parts = dict(p.split("=", 1) for p in header.split(","))\n'
        '    t = int(parts["t"])\n'
        "    if abs(time.time() - t) > window:\n"
        "        return False  # too old: a replay\n"
        '    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()\n'
        '    return hmac.compare_digest(mac, parts["v1"])\n'
        "```\n\n"
        "`kefu.protocol.integrations.verify(secret, body, header, now)` does the same.\n"
    )
    out.append("## The event stream\n")
    out.append(
        '- `GET /api/events?after=<cursor>&limit=<n>` → `{"events": [envelope…], "cursor"}`; '
        "pass the answer's `cursor` as the next `after` (no `after`: from the beginning).\n"
        "- `GET /api/events/stream?after=<cursor>`: Server-Sent Events, one `event: <type>` with "
        "`id: <cursor>` and `data: <envelope>` per event; on reconnect the browser's "
        "`Last-Event-ID` (the last cursor seen) resumes exactly after it. A comment line "
        "keeps an idle stream open.\n"
    )
    return "\n".join(out)
