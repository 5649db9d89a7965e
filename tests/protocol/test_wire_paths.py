"""The decoder's fast paths (D77) decide nothing the slow checks would decide
otherwise: on adversarial input, :func:`decode_request` and :func:`loads_strict`
give the same value or the same error (code, message, field, id, mark) as the
decoder before D77 (kept in bench/decoder.py, the benchmark's baseline)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from bench.decoder import CASES, old_decode_request, old_depth_ok, old_loads_strict
from hypothesis import given, settings
from hypothesis import strategies as st

from kefu.protocol import ErrorCode, ProtocolError, decode_request, encode, loads_strict
from kefu.protocol.visitor_api import VISITOR_API
from kefu.protocol.wire import MAX_DEPTH, MAX_MESSAGE_BYTES, _depth_ok, _depth_walk

SETTINGS = settings(max_examples=250, deadline=None, derandomize=True)

# the characters that steer JSON, depth, escapes, numbers, constants and UTF-8
ALPHABET = '{}[]":,\\ /u dD8Ab0f9eE+-.1nultrsNIaIy\ud800\udc00\udfff\ufeff\xe9你👋'
# and pieces that are rare as random characters: escapes (surrogates high and low,
# in both cases), numbers past int64 or float, the constants JSON has not
TOKENS = [*ALPHABET, *(f"\\u{h}" for h in ("d83d", "dc4b", "DFFF", "dE00", "d7ff", "e000", "00e9"))]
TOKENS += ['\\"', "\\\\", "1e999", "-1E400", "-0", "9" * 19, "-" + "9" * 20, "NaN", "-Infinity"]


def outcome(fn: Callable[[Any], Any], data: str | bytes) -> tuple[Any, ...]:
    try:
        value = fn(data)
    except ProtocolError as exc:
        return ("error", exc.code, exc.msg, exc.field, exc.request_id, exc.mark)
    return ("ok", repr(value))


def old_request(data: str | bytes) -> Any:
    r = old_decode_request(data, VISITOR_API)
    return (r.id, r.mark, r.params, r.v)


def new_request(data: str | bytes) -> Any:
    return tuple(decode_request(data, VISITOR_API))


def same(data: str | bytes) -> None:
    assert outcome(new_request, data) == outcome(old_request, data)
    assert outcome(loads_strict, data) == outcome(old_loads_strict, data)
    if isinstance(data, str):
        assert _depth_ok(data) == old_depth_ok(data)
        assert _depth_walk(data) == old_depth_ok(data)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_any_text(text: str) -> None:
    same(text)
    same(text.encode("utf-8", "surrogatepass"))  # a surrogate here is not UTF-8


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.lists(st.sampled_from(TOKENS), max_size=6).map("".join),
)
KEYS = st.sampled_from(["text", "clientMsgId", "a", "[", "\\", '"', "\ud800", "v"])


def _object(pairs: list[tuple[str, str]]) -> str:  # duplicate keys stay in the text
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


# a JSON string as written by hand: escapes kept as they are (a lone surrogate too)
RAW_STRING = st.lists(st.sampled_from([t for t in TOKENS if t not in ('"', "\\")]), max_size=6).map(
    lambda xs: '"' + "".join(xs) + '"'
)


def _json(ascii_only: bool) -> st.SearchStrategy[str]:
    dump = st.one_of(st.builds(lambda v: json.dumps(v, ensure_ascii=ascii_only), SCALARS), RAW_STRING)
    return st.recursive(
        dump,
        lambda inner: st.one_of(
            st.builds(lambda xs: "[" + ",".join(xs) + "]", st.lists(inner, max_size=3)),
            st.builds(_object, st.lists(st.tuples(KEYS, inner), max_size=3)),
        ),
        max_leaves=12,
    )


@SETTINGS
@given(st.booleans(), st.data())
def test_envelopes(ascii_only: bool, data: st.DataObject) -> None:
    params = data.draw(_json(ascii_only))
    rid = data.draw(st.sampled_from(['"r1"', '"\\ud800"', '""', "1", '"r1","id":"r2"']))
    mark = data.draw(st.sampled_from(['"sendMessage"', '"ping"', '"nope"', "[]"]))
    text = f'{{"v":1,"id":{rid},"mark":{mark},"params":{params}}}'
    pad = data.draw(st.sampled_from(["", " ", "\n", "\ufeff"]))
    same(pad + text)
    same(text + pad)


@SETTINGS
@given(st.integers(min_value=MAX_DEPTH - 2, max_value=MAX_DEPTH + 2), st.data())
def test_depth_around_the_limit(depth: int, data: st.DataObject) -> None:
    """Brackets in strings (escaped quotes, backslashes) around the limit: the
    walk over the characters that matter counts what the old loop counted."""
    noise = st.text(alphabet='[{"\\a]}', max_size=6)
    parts = [
        data.draw(st.sampled_from(["[", '{"k":'])) + json.dumps(data.draw(noise)) + "," for _ in range(depth)
    ]
    inner = "".join(parts) + "0"
    closing = "".join("]" if p.startswith("[") else "}" for p in reversed(parts))
    text = inner + closing
    raw = text + data.draw(noise)  # and not always valid JSON
    for t in (text, raw, '{"v":1,"id":"r","mark":"sendMessage","params":{"text":' + text + "}}"):
        same(t)


@pytest.mark.parametrize("name,text", [(n, t) for n, t, _ in CASES])
def test_the_benchmarks_inputs(name: str, text: str) -> None:
    same(text)


def test_size_limit_counts_utf8_bytes_and_lone_surrogates() -> None:
    for text in ("é" * (MAX_MESSAGE_BYTES // 2 + 1), "\ud800" * (MAX_MESSAGE_BYTES // 3 + 1)):
        same(json.dumps(text, ensure_ascii=False))
        with pytest.raises(ProtocolError) as info:
            loads_strict(json.dumps(text, ensure_ascii=False))
        assert info.value.code is ErrorCode.too_large


def test_a_surrogate_pair_escaped_is_text_and_a_lone_one_is_not() -> None:
    ok = '{"v":1,"id":"r","mark":"sendMessage","params":{"text":"\\ud83d\\udc4b"}}'
    assert decode_request(ok, VISITOR_API).params.text == "👋"  # type: ignore[attr-defined]
    for lone in ("\\ud83d", "\\udc4b", "\\uDC4B", "\\ud83dx", "\\udfff", "\\uDE00"):
        with pytest.raises(ProtocolError) as info:
            decode_request(ok.replace("\\ud83d\\udc4b", lone), VISITOR_API)
        assert info.value.code is ErrorCode.bad_json


@pytest.mark.parametrize(
    "text",
    [
        "]" * 10 + "[" * 40,  # below zero first: the old loop let it climb back
        "[" * 33 + "]" * 33,
        "[" * 32 + '"' + "[" * 40 + '"' + "]" * 32,
        "[" * 32 + '"\\\\"' + "[" + "]" * 33,  # an even run: the quote closes
        "[" * 32 + '"\\\\\\"' + "[" + "]" * 33,  # an odd run: it does not
        "[" * 32 + '"' + "\\" * 1001 + '"[' + "]" * 33,
        '"' + "[" * 40,  # a string not closed
        "[" * 32 + "\\" + '"[' + "]",  # a backslash outside a string is nothing
        '{"a":"[[[[' + "[" * 40 + '"}',
    ],
)
def test_depth_by_hand(text: str) -> None:
    same(text)


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),  # NaN and Infinity too: refused the same way
        st.text(alphabet=ALPHABET, max_size=12),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(alphabet=ALPHABET, max_size=4), inner, max_size=4),
    ),
    max_leaves=20,
)


def _encoded(fn: Callable[[Any], str], value: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(value))
    except (ValueError, TypeError) as exc:
        return ("error", type(exc), str(exc))


@SETTINGS
@given(JSON_VALUES)
def test_encode_is_json_dumps_with_the_wires_options(value: Any) -> None:
    """D79: the encoder made once writes what ``json.dumps`` wrote, or fails alike."""

    def old(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    assert _encoded(encode, value) == _encoded(old, value)
