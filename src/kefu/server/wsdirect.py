"""A text frame written now, without the ASGI ``send`` coroutines (issue 18, D78).

Theory of operation
-------------------
Under uvicorn's sans-I/O WebSocket protocol (the one :mod:`kefu.server.runner`
serves with), ``await ws.send_text(t)`` goes through Starlette's state checks
and uvicorn's ``send``: it waits until the transport is writable, frames the
text with the ``websockets`` protocol object and writes the bytes to the
transport, never waiting otherwise. :meth:`DirectSend.text` does the same
writing synchronously when nothing would wait: the socket is accepted, open
on both layers (no close sent, not disconnected) and writable. Otherwise it
writes nothing and returns ``False``, and the caller awaits ``ws.send_text``
as before, which waits for the transport or raises the error the outbox
handles. So an :class:`~kefu.server.outbox.Outbox` sends a reply or a push
to an idle connection in the caller's task: no task, no coroutine chain.

Any other server (a test client, another uvicorn protocol) has no direct
sender (:meth:`DirectSend.of` is ``None``) and always takes the ASGI path.
"""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketState
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

__all__ = ["DirectSend"]


class DirectSend:
    """Writes text frames on one accepted uvicorn sans-I/O WebSocket."""

    __slots__ = ("proto", "ws")

    def __init__(self, ws: WebSocket, proto: WebSocketsSansIOProtocol) -> None:
        self.ws = ws
        self.proto = proto

    @classmethod
    def of(cls, ws: WebSocket) -> DirectSend | None:
        """The direct sender of ``ws``, if uvicorn's sans-I/O protocol serves it."""
        proto = getattr(getattr(ws, "_send", None), "__self__", None)
        if isinstance(proto, WebSocketsSansIOProtocol):
            return cls(ws, proto)
        return None

    def text(self, text: str) -> bool:
        """Write one text frame now; ``False`` (nothing written) when the ASGI
        path must be taken: it would wait for the transport, or raise."""
        p = self.proto
        if (
            self.ws.application_state is not WebSocketState.CONNECTED
            or p.disconnected
            or p.close_sent
            or not p.handshake_complete
            or p.initial_response is not None
            or not p.writable.is_set()
        ):
            return False
        try:
            p.conn.send_text(text.encode())
        except InvalidState:
            return False  # closing: the ASGI path raises what the outbox handles
        p.transport.write(b"".join(p.conn.data_to_send()))
        return True
