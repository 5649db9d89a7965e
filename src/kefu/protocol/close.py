"""The WebSocket close codes kefu sends, as one enum (RFC 6455 §7.4, and
kefu's own in the 4000–4999 range the RFC leaves to applications).

Every socket of kefu closes with one of these; nothing else in ``src/`` writes
a close code as a number (``tests/test_layers.py`` checks it). The meaning of
each is in :data:`CLOSE_MEANINGS`, apart from the enum, as websockets does
for its own codes.
"""

from __future__ import annotations

import enum

__all__ = ["CLOSE_MEANINGS", "CloseCode"]


class CloseCode(enum.IntEnum):
    normal = 1000
    going_away = 1001
    policy = 1008
    too_big = 1009
    internal = 1011
    #: kefu: a newer connection of the same agent or visitor took over.
    replaced = 4001
    #: kefu: the login behind an agent's socket ended (expired, revoked, account disabled).
    login_ended = 4003


CLOSE_MEANINGS: dict[CloseCode, str] = {
    CloseCode.normal: "closed on purpose (logout, quit, the end of a test)",
    CloseCode.going_away: "the server or the plugin is shutting down",
    CloseCode.policy: (
        "the peer broke a rule: no first message in time, refused token, a flood past "
        "the rate limit's strikes, a reader too slow for its queue"
    ),
    CloseCode.too_big: "messages over the size limit, repeatedly (or a frame over the socket's limit)",
    CloseCode.internal: "the connection's sender failed (e.g. the database while filling a gap)",
    CloseCode.replaced: "a newer connection of the same agent or visitor took over; do not reconnect",
    CloseCode.login_ended: "the login ended (token expired or revoked, account disabled); log in again",
}
