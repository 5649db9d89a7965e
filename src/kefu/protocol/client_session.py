"""The client's side of a kefu socket, without I/O: requests and their answers, pushes in order.

Theory of operation
-------------------
The pattern is websockets' sans-I/O ``protocol.py``: this object never
touches a socket or a clock. An adapter (:mod:`kefu.sdk.transport`,
:mod:`kefu.plugin.link`, :mod:`kefu.visitor.link`, the bench and test
clients) owns the socket and the timers and feeds what happens in:

- :meth:`ClientSession.request` registers a request (a fresh id, or the
  caller's), with an optional deadline, and returns the text to send; a
  request that could not be sent is taken back with :meth:`ClientSession.forget`;
- :meth:`ClientSession.receive` takes one frame and says what it is:

  - :class:`Answer`: a message with the id of an open request. Whether it is
    that request's last one is the session's ``final(mark, subMark)`` rule
    (the plugin answers a call API many times, :func:`kefu.protocol.plugin_api.is_final`;
    the server answers each request once, :func:`every_answer_is_final`). A
    final answer closes the request.
  - :class:`Push`: a message without an id. One with a ``seq`` at or below the
    last seen is a duplicate (a replay overlapping a live push) and comes back
    as :class:`Dropped`; one past a gap is a :class:`Push` with ``gap`` set.
    :attr:`ClientSession.last_seq` is what a reconnect resumes from.
  - :class:`Stray`: a message with an id no open request has (answered
    already, timed out, or sent raw by a test);
  - :class:`Dropped`: not JSON, not an object, or a duplicate push.

- :meth:`ClientSession.expire` takes the time now and returns the requests
  whose deadline passed before their first answer (they are closed);
  :meth:`ClientSession.fail_all` closes every open request (the socket
  broke). :func:`error_for` is the error message the adapter hands to each.

An error reply becomes an exception in one place, :func:`reply_error`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from .errors import ApiError, ErrorCode, ProtocolError
from .wire import Json, encode, error_message, loads_strict, request_message

__all__ = [
    "Answer",
    "ClientSession",
    "Dropped",
    "Pending",
    "Push",
    "ReplyError",
    "Stray",
    "error_for",
    "every_answer_is_final",
    "reply_error",
]

T = TypeVar("T")

#: ``final(mark, subMark)``: whether an answer with that ``subMark`` is a request's last.
Final = Callable[[str, str | None], bool]


def every_answer_is_final(mark: str, sub_mark: str | None) -> bool:
    """The server's rule: it answers each request once (docs/calls.md)."""
    return True


@dataclass(eq=False)
class Pending(Generic[T]):
    """An open request. ``tag`` is the adapter's own (a handler, a future)."""

    rid: str
    mark: str
    tag: T
    deadline: float | None = None
    answered: bool = False


# What a frame is: tuples, made once per frame (a frozen dataclass costs ~1 µs more, D37).


class Answer(NamedTuple, Generic[T]):
    pending: Pending[T]
    msg: Json
    final: bool


class Push(NamedTuple):
    msg: Json
    seq: int | None = None
    gap: bool = False  # one or more pushes before this one were not seen


class Stray(NamedTuple):
    msg: Json
    rid: str


class Dropped(NamedTuple):
    why: str
    seq: int | None = None


Received = Answer[T] | Push | Stray | Dropped


@dataclass
class ClientSession(Generic[T]):
    """See the module's docstring. ``prefix`` starts each request id."""

    prefix: str = "r"
    final: Final = every_answer_is_final
    #: Whether pushes carry the server's ``seq`` (the plugin's pushes to an SDK do not count them).
    ordered: bool = True
    last_seq: int = 0
    duplicates: int = 0
    gaps: int = 0
    _open: dict[str, Pending[T]] = field(default_factory=dict)
    _next: int = 0

    # --- requests

    def new_id(self) -> str:
        """A fresh request id, for a caller that must know it before it sends."""
        self._next += 1
        return f"{self.prefix}{self._next}"

    def request(
        self,
        mark: str,
        params: Json | None,
        tag: T,
        *,
        rid: str | None = None,
        deadline: float | None = None,
    ) -> tuple[str, str]:
        """Open a request; return its id and the text to send."""
        rid = rid if rid is not None else self.new_id()
        self._open[rid] = Pending(rid, mark, tag, deadline)
        return rid, encode(request_message(mark, params, rid=rid))

    def forget(self, rid: str) -> Pending[T] | None:
        """Close a request without an answer (it could not be sent)."""
        return self._open.pop(rid, None)

    def pending(self) -> Iterator[Pending[T]]:
        return iter(list(self._open.values()))

    def __len__(self) -> int:
        return len(self._open)

    def expire(self, now: float) -> list[Pending[T]]:
        """The requests whose deadline is at or before ``now`` with no answer yet (closed now)."""
        late = [
            p for p in self._open.values() if not p.answered and p.deadline is not None and p.deadline <= now
        ]
        for p in late:
            del self._open[p.rid]
        return late

    def next_deadline(self) -> float | None:
        """The earliest deadline of a request not answered yet (for the adapter's one timer)."""
        times = [p.deadline for p in self._open.values() if not p.answered and p.deadline is not None]
        return min(times, default=None)

    def fail_all(self) -> list[Pending[T]]:
        """Close every open request (the socket broke, the client closed)."""
        out, self._open = list(self._open.values()), {}
        return out

    # --- receiving

    def receive(self, data: str | bytes) -> Received[T]:
        """What one frame from the peer is (see the module's docstring)."""
        try:
            msg = loads_strict(data)
        except ProtocolError as exc:
            return Dropped(f"not JSON: {exc.msg}")
        if not isinstance(msg, dict):
            return Dropped("not an object")
        return self.receive_message(msg)

    def receive_message(self, msg: Json) -> Received[T]:
        """:meth:`receive` for a message decoded already."""
        rid = msg.get("id")
        if isinstance(rid, str):
            pending = self._open.get(rid)
            if pending is None:
                return Stray(msg, rid)
            pending.answered = True
            sub_mark = msg.get("subMark")
            final = self.final(pending.mark, sub_mark if isinstance(sub_mark, str) else None)
            if final:
                del self._open[rid]
            return Answer(pending, msg, final)
        seq = msg.get("seq")
        if not self.ordered or not isinstance(seq, int) or isinstance(seq, bool):
            return Push(msg)
        if seq <= self.last_seq:
            self.duplicates += 1
            return Dropped(f"push seq {seq} seen already (last {self.last_seq})", seq)
        gap = seq != self.last_seq + 1
        if gap:
            self.gaps += 1
        self.last_seq = seq
        return Push(msg, seq, gap)

    def resume_from(self, server_seq: object, *, follow_back: bool) -> bool:
        """An ``auth``/``hello`` reply's ``lastSeq``: move up to it (history is not
        replayed), and down to it when ``follow_back`` (the server's store went
        back). Returns whether it went back."""
        if not isinstance(server_seq, int) or isinstance(server_seq, bool):
            return False
        if server_seq > self.last_seq and not follow_back:
            self.last_seq = server_seq
        elif server_seq < self.last_seq and follow_back:
            self.last_seq = server_seq
            return True
        return False


def error_for(pending: Pending[Any], code: ErrorCode, msg: str | None = None) -> Json:
    """The error message an adapter hands to a request it closes (timeout, socket down)."""
    return error_message(pending.mark, code, msg, rid=pending.rid)


@dataclass(frozen=True, slots=True)
class ReplyError:
    """What an error reply says, read once for every adapter's exception."""

    code: ErrorCode
    msg: str | None
    raw_code: object  # as sent (``code``, or the spec's ``type``: SPEC §4.4)
    known: bool  # ``raw_code`` is one of ours (else ``code`` is the default)
    field: str | None = None
    state: str | None = None

    def exception(self) -> ApiError:
        return ApiError(self.msg, code=self.code)


def reply_error(reply: Json, *, default: ErrorCode = ErrorCode.internal) -> ReplyError | None:
    """The error an error reply carries (None for any other reply). A code this
    side does not know becomes ``default``; the spec's ``error.type`` counts as
    the code (SPEC §4.4, ``snapShotDisabled``)."""
    error = reply.get("error")
    if reply.get("subMark") != "error" and not isinstance(error, dict):
        return None
    body = error if isinstance(error, dict) else {}
    raw = body.get("code", body.get("type"))
    try:
        code, known = ErrorCode(raw), True
    except ValueError:
        code, known = default, False
    msg, field_name, state = body.get("msg"), body.get("field"), reply.get("state")
    return ReplyError(
        code,
        msg if isinstance(msg, str) else None,
        raw,
        known,
        field_name if isinstance(field_name, str) else None,
        state if isinstance(state, str) else None,
    )
