"""The wire envelope shared by every socket of kefu (DESIGN §4).

Theory of operation
-------------------
Every message on every kefu WebSocket (SDK ⇄ plugin, plugin ⇄ server,
visitor ⇄ server) is one JSON object, the envelope::

    request   {"v":1,"id":"r17","mark":"callbackToVisitor","params":{...}}
    reply     {"v":1,"id":"r17","mark":"callbackToVisitor","subMark":"inviteSuccess",
               "state":"003001","payload":{...}}
    error     {"v":1,"id":"r17","mark":"...","subMark":"error","state":"002004",
               "error":{"code":"SDK_11","msg":"..."}}
    event     {"v":1,"mark":"initInnerCallBack","subMark":"chatCloseCB","payload":{...}}
    state     {"v":1,"mark":"state","state":"006011","payload":{...}}

Server pushes also carry ``seq``, the per-connection sequence number a
reconnecting client resumes from.

Decoding is strict and happens at one edge, :func:`decode_request`: the text
is parsed by :func:`loads_strict` (no duplicate keys, no NaN or Infinity,
integers within int64, nesting at most :data:`MAX_DEPTH`, at most
:data:`MAX_MESSAGE_BYTES`), the envelope is validated, and the ``params``
are validated against the model that an :class:`Api` registers for the
mark, with no type coercion. Every failure is a
:class:`~kefu.protocol.errors.ProtocolError` carrying a catalogue code, the
request id and the mark when they could be read, so the adapter can answer
it on the same connection.

Ordinary input is decided in C (D77): the depth by counting brackets, a lone
surrogate looked for only in text that can hold one, one JSON decoder made
once; the slower checks run only when those cannot decide, with the same
errors for the same inputs (tests/protocol/test_wire_paths.py). :func:`encode`
uses one C encoder made once (D79).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ErrorCode, ProtocolError
from .messages import PROTOCOL_VERSION, error_json, event_json, reply_json, request_json, state_json

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "Api",
    "NoParams",
    "Params",
    "Request",
    "decode_request",
    "encode",
    "error_message",
    "event_message",
    "loads_strict",
    "reply_message",
    "request_message",
    "state_message",
]

MAX_MESSAGE_BYTES = 64 * 1024
MAX_DEPTH = 32
_INT64 = 2**63
_ID_MAX = 64


class Params(BaseModel):
    """Base of every params model: frozen, strict (no coercion), no extra keys."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, strict=True, extra="forbid")


class NoParams(Params):
    """An API that takes no parameters (``params`` may be absent, ``{}`` or ``null``)."""


class Request(NamedTuple):
    """A decoded, validated request. A tuple, not a frozen dataclass: one is made
    per frame, and a frozen dataclass costs ~1 µs more to make (D77, as D37)."""

    id: str
    mark: str
    params: Params
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Api:
    """A set of marks a peer accepts, each with its params model."""

    name: str
    marks: Mapping[str, type[Params]] = field(default_factory=dict)

    def __contains__(self, mark: object) -> bool:
        return mark in self.marks


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not a JSON number", code=ErrorCode.bad_json)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; as many keys as pairs: no duplicate
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    for k, _ in pairs:  # the first duplicate, named in the error
        if k in seen:
            raise ProtocolError(f"duplicate key {k!r}", code=ErrorCode.bad_json, field=k)
        seen.add(k)
    raise AssertionError("unreachable")  # pragma: no cover


def _parse_int(text: str) -> int:
    if len(text) > 20:
        raise ProtocolError("integer out of range", code=ErrorCode.bad_json)
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise ProtocolError("integer out of range", code=ErrorCode.bad_json)
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ProtocolError("number out of range", code=ErrorCode.bad_json)
    return value


def _depth_ok(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return True  # in C: the depth never passes the brackets there are (D77)
    return _depth_walk(text)


def _depth_walk(text: str) -> bool:
    """The depth; brackets inside strings do not count. Between strings, the
    brackets are counted in C and walked one by one only when they could pass
    the limit; a string is skipped in C to its closing quote (the first one
    after an even run of backslashes)."""
    depth = 0
    i = 0
    find = text.find
    while True:
        q = find('"', i)
        seg = text[i:] if q < 0 else text[i:q]  # outside strings
        opens = seg.count("[") + seg.count("{")
        if depth + opens <= MAX_DEPTH:
            depth += opens - seg.count("]") - seg.count("}")
        else:
            for ch in seg:
                if ch in "[{":
                    depth += 1
                    if depth > MAX_DEPTH:
                        return False
                elif ch in "]}":
                    depth -= 1
        if q < 0:
            return True
        i = q + 1
        while True:  # inside a string
            j = find('"', i)
            if j < 0:
                return True  # not closed: the rest is the string's
            k = j
            while text[k - 1] == "\\":  # stops at the opening quote at the latest
                k -= 1
            i = j + 1
            if (j - k) % 2 == 0:
                break


# one decoder for every call: json.loads with hooks builds one per call (~2 µs, D77)
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs,
    parse_constant=_reject_constant,
    parse_int=_parse_int,
    parse_float=_parse_float,
)
_scan_once: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]

# the escape of a surrogate (\ud800-\udfff): a lone one is only possible where one appears
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _decode(text: str) -> Any:
    """``json.loads(text, **hooks)``, the same value or error, ~1 µs less."""
    if text[:1] == "{":  # an object with no white space around it: the scanner alone
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            pass  # bad JSON: the error from decode below
        else:
            if end == len(text):
                return value
    if text.startswith("\ufeff"):  # what json.loads refuses before decoding
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def _parse(data: str | bytes) -> tuple[Any, bool]:
    """:func:`loads_strict`'s value, and whether its strings may hold a lone
    surrogate (``False`` decided in C: clean UTF-8 text and no surrogate escape)."""
    if isinstance(data, bytes):
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError(code=ErrorCode.too_large)
        try:
            data = data.decode("utf-8")  # strict: no surrogate gets through
        except UnicodeDecodeError:
            raise ProtocolError("not UTF-8", code=ErrorCode.bad_json) from None
        raw_surrogate = False
    else:
        try:
            size = len(data.encode("utf-8"))
            raw_surrogate = False
        except UnicodeEncodeError:
            size = len(data.encode("utf-8", "surrogatepass"))
            raw_surrogate = True
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError(code=ErrorCode.too_large)
    if not _depth_ok(data):
        raise ProtocolError(f"nested deeper than {MAX_DEPTH}", code=ErrorCode.bad_json)
    try:
        value = _decode(data)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc.msg}", code=ErrorCode.bad_json) from None
    maybe = raw_surrogate or ("\\u" in data and _SURROGATE_ESCAPE.search(data) is not None)
    return value, maybe


def loads_strict(data: str | bytes) -> Any:
    """Parse JSON the strict way (see the module's docstring)."""
    return _parse(data)[0]


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


_ENVELOPE_KEYS = frozenset({"v", "id", "mark", "params"})


def decode_request(data: str | bytes, api: Api) -> Request:
    """Decode one request for ``api``; raise :class:`ProtocolError` on anything wrong."""
    obj, maybe_surrogate = _parse(data)
    if not isinstance(obj, dict):
        raise ProtocolError("a request is a JSON object", code=ErrorCode.bad_request)
    if maybe_surrogate and _has_lone_surrogate(obj):
        raise ProtocolError("text with a lone surrogate", code=ErrorCode.bad_json)
    return request_of(obj, api)


def request_of(obj: dict[str, Any], api: Api) -> Request:
    """The request in a parsed JSON object (the envelope's checks and the params' model);
    raise :class:`ProtocolError` on anything wrong."""
    rid = obj.get("id")
    mark = obj.get("mark")
    try:
        if "id" not in obj:
            raise ProtocolError("a request needs an id", code=ErrorCode.missing_field, field="id")
        if not isinstance(rid, str) or not 0 < len(rid) <= _ID_MAX:
            raise ProtocolError(
                f"id is a string of 1 to {_ID_MAX} characters",
                code=ErrorCode.invalid_field,
                field="id",
            )
        v = obj.get("v")
        if "v" not in obj:
            raise ProtocolError("a request needs v", code=ErrorCode.missing_field, field="v")
        if type(v) is not int or v != PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version {v!r} is not supported; this peer speaks {PROTOCOL_VERSION}",
                code=ErrorCode.unsupported_version,
                field="v",
            )
        if "mark" not in obj:
            raise ProtocolError("a request needs a mark", code=ErrorCode.missing_field, field="mark")
        if not isinstance(mark, str):
            raise ProtocolError("mark is a string", code=ErrorCode.invalid_field, field="mark")
        if not obj.keys() <= _ENVELOPE_KEYS:
            name = sorted(set(obj) - _ENVELOPE_KEYS)[0]
            raise ProtocolError(f"unknown field {name!r}", code=ErrorCode.invalid_field, field=name)
        model = api.marks.get(mark)
        if model is None:
            raise ProtocolError(
                "unknown API (the mark is not echoed); docs/protocol.md lists them",
                code=ErrorCode.unknown_mark,
                field="mark",
            )
        raw_params = obj.get("params")
        if raw_params is None:
            raw_params = {}
        if not isinstance(raw_params, dict):
            raise ProtocolError("params is an object", code=ErrorCode.invalid_field, field="params")
        try:
            params = model.model_validate(raw_params)
        except ValidationError as exc:
            raise _from_validation(exc) from None
    except ProtocolError as exc:
        exc.request_id = rid if isinstance(rid, str) and 0 < len(rid) <= _ID_MAX else None
        exc.mark = mark if isinstance(mark, str) and mark in api.marks else None
        raise
    return Request(id=rid, mark=mark, params=params, v=v)


def _from_validation(exc: ValidationError) -> ProtocolError:
    err = exc.errors()[0]
    path = "params." + ".".join(str(p) for p in err["loc"]) if err["loc"] else "params"
    if err["type"] == "missing":
        return ProtocolError(f"{path} is required", code=ErrorCode.missing_field, field=path)
    if err["type"] == "extra_forbidden":
        return ProtocolError(f"unknown field {path}", code=ErrorCode.invalid_field, field=path)
    return ProtocolError(f"{path}: {err['msg']}", code=ErrorCode.invalid_field, field=path)


# --- building messages: shorthands of the typed models (kefu.protocol.messages).

Json = dict[str, Any]


def request_message(mark: str, params: Any = None, *, rid: str) -> Json:
    """A request: ``{"v":1,"id":"r17","mark":"...","params":{...}}`` (no ``params`` when None)."""
    return request_json(mark, params, rid)


def reply_message(
    mark: str,
    sub_mark: str,
    payload: Any = None,
    *,
    rid: str | None = None,
    state: str | None = None,
    seq: int | None = None,
    data: Any = None,
) -> Json:
    """A reply or progress message for request ``rid`` (``subMark`` = the v1204 callback)."""
    return reply_json(mark, sub_mark, payload, rid, state, seq, data)


def error_message(
    mark: str | None,
    code: ErrorCode,
    msg: str | None = None,
    *,
    rid: str | None = None,
    state: str | None = None,
    field_name: str | None = None,
    seq: int | None = None,
    retry_after: float | None = None,
) -> Json:
    """An error in the spec's form: ``{..., "subMark": "error", "error": {code, msg}}``."""
    return error_json(mark, code, msg, rid, state, field_name, retry_after, seq)


def event_message(
    sub_mark: str, payload: Any = None, *, mark: str = "initInnerCallBack", seq: int | None = None
) -> Json:
    """A pushed event (SPEC §3.2 callbacks are ``mark: initInnerCallBack``)."""
    return event_json(sub_mark, payload, mark, seq)


def state_message(state: str, payload: Any = None, *, seq: int | None = None) -> Json:
    """A state-change push: ``{"v":1,"mark":"state","state":"006011",...}``."""
    return state_json(state, payload, seq)


def protocol_error_message(exc: ProtocolError) -> Json:
    """The answer to a request that failed to decode."""
    return error_message(exc.mark, exc.code, exc.msg, rid=exc.request_id, field_name=exc.field)


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


# json.dumps with options builds an encoder per call (~2.5 µs of 6, D79): one, made once.
# No circular check (a circular message is a bug: RecursionError rather than ValueError);
# the C encoder's check would keep a stale mark after a failed call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_c_encoder = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, False)
)


def encode(msg: Mapping[str, Any]) -> str:
    """Encode a message as compact JSON text (UTF-8 kept, not escaped; NaN and
    Infinity refused): ``json.dumps(msg, ensure_ascii=False, separators=(",", ":"),
    allow_nan=False)``, in C when the interpreter has it."""
    if _c_encoder is None:  # pragma: no cover (CPython has it)
        return _ENCODER.encode(msg)
    return "".join(_c_encoder(msg, 0))


# re-exported for adapters
__all__ += ["Json", "protocol_error_message", "request_of"]
