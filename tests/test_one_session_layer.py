"""Session logic is written once, in ``kefu.protocol`` (issue 19, item 1).

The adapters (SDK transport, the plugin's link and control connection, the
visitor's link, the server's sockets) sit on
:mod:`kefu.protocol.client_session` and :mod:`kefu.protocol.server_session`;
messages are built by :mod:`kefu.protocol.messages`; close codes are
:class:`kefu.protocol.close.CloseCode`. These checks read ``src/kefu`` (the
syntax tree, not the text) and fail when one of them is written again
elsewhere: a close code as a number, an envelope as a dict literal
(``{"v": 1, …}``), a client reading ``seq`` or matching replies by ``id``
itself, an error code decoded from the wire outside the protocol, a rate
limiter of its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import kefu

KEFU = Path(kefu.__file__).resolve().parent
#: The clients of a kefu socket: they must not redo the client session's work.
CLIENT_PACKAGES = ("sdk", "plugin", "visitor")
CLOSE_NUMBERS = frozenset({1000, 1001, 1003, 1007, 1008, 1009, 1011, 4001, 4003})


def modules(*packages: str) -> Iterator[tuple[str, ast.Module]]:
    roots = [KEFU / p for p in packages] if packages else [KEFU]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(KEFU).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def outside_protocol(rel: str) -> bool:
    return not rel.startswith("protocol/")


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def close_numbers(tree: ast.Module) -> list[int]:
    """Close codes written as numbers: ``x.close(1008)``, ``CLOSE_X = 4001``, ``code == 1009``."""
    found: list[int] = []

    def numbers(node: ast.expr) -> list[int]:
        return [
            n.value
            for n in ast.walk(node)
            if isinstance(n, ast.Constant) and type(n.value) is int and n.value in CLOSE_NUMBERS
        ]

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) == "close" and node.args:
            found += numbers(node.args[0])
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any("close" in _name(t).lower() for t in targets) and node.value is not None:
                found += numbers(node.value)
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any("code" in _name(s).lower() for s in sides):
                found += [n for s in sides for n in numbers(s)]
    return found


def envelopes(tree: ast.Module) -> int:
    """Dict literals with ``"v": <a number>``: a message built by hand."""
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for k, val in zip(node.keys, node.values, strict=True)
        if isinstance(k, ast.Constant) and k.value == "v" and isinstance(val, ast.Constant)
    )


def reads_key(tree: ast.Module, key: str) -> bool:
    """``m.get("seq")`` or ``m["seq"]`` (a read, not a store)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and _name(node.func) == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == key
        ):
            return True
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value == key
        ):
            return True
    return False


def decodes_error_codes(tree: ast.Module) -> bool:
    """``ErrorCode(<something read>)``: an error code decoded from the wire."""
    return any(
        isinstance(node, ast.Call)
        and _name(node.func) == "ErrorCode"
        and node.args
        and not isinstance(node.args[0], ast.Constant)
        for node in ast.walk(tree)
    )


# --- the checks


def test_close_codes_are_one_enum() -> None:
    offenders = {
        rel: nums for rel, tree in modules() if rel != "protocol/close.py" and (nums := close_numbers(tree))
    }
    assert offenders == {}, "use kefu.protocol.close.CloseCode"


def test_messages_are_built_by_the_protocol() -> None:
    found = {(rel, n) for rel, tree in modules() if rel != "protocol/messages.py" and (n := envelopes(tree))}
    assert found == set(), "build messages with kefu.protocol.messages (or wire's shorthands)"


def test_clients_leave_seq_and_reply_matching_to_the_session() -> None:
    seq = {rel for rel, tree in modules(*CLIENT_PACKAGES) if reads_key(tree, "seq")}
    ids = {rel for rel, tree in modules(*CLIENT_PACKAGES) if reads_key(tree, "id")}
    assert seq == set(), "a client's seq dedup and gaps are kefu.protocol.client_session's"
    assert ids == set(), "a client's reply matching is kefu.protocol.client_session's"


def test_error_replies_become_exceptions_in_one_place() -> None:
    found = {rel for rel, tree in modules() if outside_protocol(rel) and decodes_error_codes(tree)}
    assert found == set(), "read error replies with kefu.protocol.client_session.reply_error"


def test_one_rate_limiter() -> None:
    found = {
        (rel, node.name)
        for rel, tree in modules()
        if outside_protocol(rel)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and ("ratelimit" in node.name.lower() or "bucket" in node.name.lower())
    }
    assert found == set(), "the rate limit is kefu.protocol.server_session's token bucket"


# --- the checks see what they look for


def _tree(src: str) -> ast.Module:
    return ast.parse(src)


def test_the_checks_find_what_they_forbid() -> None:
    found = close_numbers(_tree("ws.close(1008)\nCLOSE_X = 4001\nif code == 1009: pass"))
    assert sorted(found) == [1008, 1009, 4001]
    assert close_numbers(_tree("ms = t * 1000\nws.close(CloseCode.policy)")) == []
    assert envelopes(_tree('m = {"v": 1, "mark": "x"}\nn = {"mark": "x"}\no = {"v": m["v"]}')) == 1
    assert reads_key(_tree('s = msg.get("seq")'), "seq") and reads_key(_tree('s = msg["seq"]'), "seq")
    assert not reads_key(_tree('msg["seq"] = 1'), "seq")
    assert decodes_error_codes(_tree('ErrorCode(err.get("code"))'))
    assert not decodes_error_codes(_tree('ErrorCode("timeout")'))
