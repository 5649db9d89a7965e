"""What the plugin tells an SDK, as typed values, and a small emitter.

Every message from the plugin is one of:

- a reply to a request (``id``): :class:`Reply`;
- a push (no ``id``): :class:`PluginEvent`, whose ``kind`` is its ``mark``:
  ``client`` (connection events: ``ssoReady``, ``kefuReady``,
  ``kefuWSClose``, ``kefuWSOpen``, ``quit``), ``initInnerCallBack``
  (``chatCloseCB`` ...), ``event`` (``sessionAssigned``, ``message`` ...) or
  ``state``; a state push also reads as a :class:`StateChange`.

:class:`EventEmitter` calls plain (synchronous) callbacks by name. A callback
that raises is logged and does not stop the others, nor the SDK's loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from kefu.protocol import ApiError, Code, ErrorCode, parse_code
from kefu.protocol.client_session import reply_error

__all__ = [
    "EventEmitter",
    "PluginEvent",
    "Reply",
    "RequestError",
    "StateChange",
    "api_error",
    "call_safely",
]

log = logging.getLogger("kefu.sdk")

Json = dict[str, Any]
Callback = TypeVar("Callback", bound=Callable[..., Any])


class RequestError(ApiError):
    """A request answered with an error: ``code`` and ``msg`` are the wire's
    ``error.code`` / ``error.msg``; ``state`` the code the reply carried,
    ``field`` the offending parameter of a bad request, ``message`` the reply,
    ``detail`` the specific English text when ``msg`` is the catalogue's Chinese one."""

    def __init__(
        self,
        msg: str | None = None,
        *,
        code: ErrorCode | None = None,
        state: str | None = None,
        field: str | None = None,
        message: Json | None = None,
    ) -> None:
        super().__init__(msg, code=code)
        self.state = state
        self.field = field
        self.message = message or {}
        error = self.message.get("error")
        detail = error.get("detail") if isinstance(error, dict) else None
        self.detail: str | None = detail if isinstance(detail, str) else None

    def to_wire(self) -> dict[str, Any]:
        body = super().to_wire()
        if self.detail is not None:
            body["detail"] = self.detail
        return body


def api_error(msg: Json) -> RequestError:
    """The error an error message carries (``error.code``, ``error.msg``)."""
    error = reply_error(msg) if isinstance(msg.get("error"), dict) else None
    state = msg.get("state") if isinstance(msg.get("state"), str) else None
    if error is None:
        return RequestError(
            "the plugin answered an error without details", code=ErrorCode.internal, state=state, message=msg
        )
    text = error.msg if error.known else f"{error.raw_code}: {error.msg}"
    return RequestError(text, code=error.code, state=error.state, field=error.field, message=msg)


@dataclass(frozen=True, slots=True)
class Reply:
    """One message answering a request."""

    mark: str
    sub_mark: str
    state: str | None = None
    payload: Any = None
    data: Any = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_message(cls, msg: Json) -> Reply:
        return cls(
            mark=str(msg.get("mark", "")),
            sub_mark=str(msg.get("subMark", "")),
            state=msg.get("state") if isinstance(msg.get("state"), str) else None,
            payload=msg.get("payload"),
            data=msg.get("data"),
            raw=msg,
        )

    @property
    def is_error(self) -> bool:
        return self.sub_mark == "error"


@dataclass(frozen=True, slots=True)
class PluginEvent:
    """A push from the plugin."""

    kind: str  # the mark: client, initInnerCallBack, event, state
    name: str  # the subMark, or "state" for a state push
    state: str | None = None
    payload: Any = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_message(cls, msg: Json) -> PluginEvent:
        kind = str(msg.get("mark", ""))
        name = "state" if kind == "state" else str(msg.get("subMark", ""))
        state = msg.get("state")
        return cls(kind, name, state if isinstance(state, str) else None, msg.get("payload"), msg)

    def state_change(self) -> StateChange | None:
        """The state change this push is, if it is one with a valid code."""
        if self.kind != "state" or self.state is None:
            return None
        try:
            code = parse_code(self.state)
        except ValueError:
            return None
        p = self.payload if isinstance(self.payload, dict) else {}
        old: Code | None
        try:
            old = parse_code(p["old"]) if p.get("old") is not None else None
        except ValueError:
            old = None
        return StateChange(
            code=code,
            old=old,
            flow=p.get("flow"),
            event=p.get("event"),
            reason=p.get("reason"),
            call_id=p.get("callId"),
            payload=self.payload,
        )


@dataclass(frozen=True, slots=True)
class StateChange:
    """The agent's state changed (SPEC §5): ``code`` is the new 6-digit code."""

    code: Code
    old: Code | None = None
    flow: str | None = None
    event: str | None = None
    reason: str | None = None
    call_id: str | None = None
    payload: Any = None


class EventEmitter:
    """Callbacks by event name: ``em.on("x", fn)``, or ``@em.on("x")`` as a decorator."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    @overload
    def on(self, name: str, callback: Callback) -> Callback: ...

    @overload
    def on(self, name: str, callback: None = None) -> Callable[[Callback], Callback]: ...

    def on(self, name: str, callback: Callback | None = None) -> Callback | Callable[[Callback], Callback]:
        if callback is None:

            def register(fn: Callback) -> Callback:
                self._handlers.setdefault(name, []).append(fn)
                return fn

            return register
        self._handlers.setdefault(name, []).append(callback)
        return callback

    def off(self, name: str, callback: Callable[..., Any]) -> None:
        handlers = self._handlers.get(name, [])
        if callback in handlers:
            handlers.remove(callback)

    def handlers(self, name: str) -> list[Callable[..., Any]]:
        return list(self._handlers.get(name, ()))

    def emit(self, name: str, *args: Any) -> int:
        """Call every callback of ``name``; the number called."""
        handlers = self.handlers(name)
        for callback in handlers:
            call_safely(callback, *args, what=name)
        return len(handlers)


def call_safely(callback: Callable[..., Any], *args: Any, what: str = "callback") -> None:
    """Call a user's callback; log what it raises."""
    try:
        callback(*args)
    except Exception:
        log.exception("the %s callback raised", what)
