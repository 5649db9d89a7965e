"""What decoding a request costs (issue 18, docs/decisions.md D77).

``python -m bench.decoder [--n 50000] [--rounds 5]`` times, in one process
and one run, :func:`kefu.protocol.wire.decode_request` against
:func:`old_decode_request`, a copy of the decoder before D77 (the same-run
baseline; tests/protocol/test_wire_paths.py checks that both give the same
result or the same error), and ``json.loads`` alone for scale. The two
alternate round by round on each input: a visitor's ``sendMessage`` (ASCII,
Chinese, Chinese escaped ``\\uXXXX`` as Python's ``json.dumps`` writes it),
an agent's ``sendMessage`` and a 4 KiB text with brackets in it. Prints
µs per request (the best round) and the ratio. Then :func:`kefu.protocol.wire.encode`
(D79) against ``json.dumps`` with the same options (:func:`old_encode`) on a
reply and a push. CPU only, no sockets.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

from kefu.protocol.agent_api import AGENT_API
from kefu.protocol.errors import ErrorCode, ProtocolError
from kefu.protocol.visitor_api import VISITOR_API
from kefu.protocol.wire import (
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    Api,
    Request,
    _has_lone_surrogate,
    _parse_float,
    _parse_int,
    _reject_constant,
    decode_request,
    encode,
    event_message,
    reply_message,
    request_of,
)

# --- the baseline: the decoder as it was before D77 (a copy)


def _old_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, val in pairs:
        if k in out:
            raise ProtocolError(f"duplicate key {k!r}", code=ErrorCode.bad_json, field=k)
        out[k] = val
    return out


def old_depth_ok(text: str) -> bool:
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def old_loads_strict(data: str | bytes) -> Any:
    if isinstance(data, bytes):
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtocolError(code=ErrorCode.too_large)
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("not UTF-8", code=ErrorCode.bad_json) from None
    if len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise ProtocolError(code=ErrorCode.too_large)
    if not old_depth_ok(data):
        raise ProtocolError(f"nested deeper than {MAX_DEPTH}", code=ErrorCode.bad_json)
    try:
        return json.loads(
            data,
            object_pairs_hook=_old_pairs,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc.msg}", code=ErrorCode.bad_json) from None


def old_decode_request(data: str | bytes, api: Api) -> Request:
    """``decode_request`` before D77: the old parsing, the surrogate walk on every request, then the
    envelope's checks (:func:`kefu.protocol.wire.request_of`, unchanged by D77)."""
    obj = old_loads_strict(data)
    if not isinstance(obj, dict):
        raise ProtocolError("a request is a JSON object", code=ErrorCode.bad_request)
    if _has_lone_surrogate(obj):
        raise ProtocolError("text with a lone surrogate", code=ErrorCode.bad_json)
    return request_of(obj, api)


def old_encode(msg: Any) -> str:
    """``wire.encode`` before D79: an encoder built per call."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# --- the inputs


def _text(params: dict[str, Any], mark: str = "sendMessage", *, ascii_only: bool = False) -> str:
    msg = {"v": 1, "id": "r12345", "mark": mark, "params": params}
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=ascii_only)


CASES: list[tuple[str, str, Api]] = [
    (
        "visitor, ASCII",
        _text({"text": "hello there, how are you doing today 12", "clientMsgId": "c-000123-abcdef"}),
        VISITOR_API,
    ),
    ("visitor, Chinese", _text({"text": "您好，我想查询一下信用卡账单", "clientMsgId": "c-1"}), VISITOR_API),
    (
        "visitor, Chinese as \\uXXXX",
        _text({"text": "您好，我想查询一下信用卡账单", "clientMsgId": "c-1"}, ascii_only=True),
        VISITOR_API,
    ),
    (
        "agent",
        _text({"session_id": "s-42", "text": "Your card is on its way.", "clientMsgId": "a-9"}),
        AGENT_API,
    ),
    ("visitor, 4 KiB, brackets", _text({"text": "[x] {y} " * 512, "clientMsgId": "c-2"}), VISITOR_API),
]


_MESSAGE = {"msgId": 123456, "sessionId": "s-abcdef", "seq": 17, "at": "2026-12-06T11:40:00.123456+00:00"}
ENCODE_CASES: list[tuple[str, Any]] = [
    ("reply to sendMessage", reply_message("sendMessage", "success", _MESSAGE, rid="r12345")),
    (
        "push of a message",
        event_message(
            "message", {**_MESSAGE, "from": "visitor", "text": "您好，我想查询一下信用卡账单"}, seq=42
        ),
    ),
]


def _per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, {args.rounds} rounds of {args.n} calls, best round")
    print(f"{'request':28s} {'bytes':>6s} {'json.loads':>10s} {'old µs':>8s} {'new µs':>8s} {'new/old':>8s}")
    for name, text, api in CASES:
        old = old_decode_request(text, api)
        new = decode_request(text, api)
        assert (old.id, old.mark, old.params, old.v) == tuple(new), name
        n = args.n if len(text) < 1000 else max(1, args.n // 20)
        best_old = best_new = best_json = float("inf")
        for _ in range(args.rounds):  # alternating, the same run
            best_old = min(best_old, _per_call(lambda t=text, a=api: old_decode_request(t, a), n))
            best_new = min(best_new, _per_call(lambda t=text, a=api: decode_request(t, a), n))
            best_json = min(best_json, _per_call(lambda t=text: json.loads(t), n))
        size = len(text.encode())
        print(
            f"{name:28s} {size:6d} {best_json:10.2f} {best_old:8.2f} {best_new:8.2f} "
            f"{best_new / best_old:8.2f}"
        )

    print(f"{'message':28s} {'bytes':>6s} {'':>10s} {'old µs':>8s} {'new µs':>8s} {'new/old':>8s}")
    for name, msg in ENCODE_CASES:
        assert encode(msg) == old_encode(msg), name
        best_old = best_new = float("inf")
        for _ in range(args.rounds):  # alternating, the same run
            best_old = min(best_old, _per_call(lambda m=msg: old_encode(m), args.n))
            best_new = min(best_new, _per_call(lambda m=msg: encode(m), args.n))
        size = len(encode(msg).encode())
        print(f"{name:28s} {size:6d} {'':>10s} {best_old:8.2f} {best_new:8.2f} {best_new / best_old:8.2f}")


if __name__ == "__main__":
    main()
