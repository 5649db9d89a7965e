"""What the session layer costs per message (issue 19, docs/decisions.md D37).

``python -m bench.session_layer [--n 200000]`` times, in one process and one
run, each path the session layer replaced against a copy of the code it
replaced (the same-run baseline):

- building a reply: ``wire.reply_message`` (now a typed ``Reply`` and
  ``to_json``) against the dict builder it was;
- a frame on the server: ``ServerSession.receive`` (token bucket, size,
  decode, first-message policy) against the inline fixed-window check and
  ``decode_request`` that ``server/connection.py`` had;
- a reply on a client: ``ClientSession.request`` + ``receive`` against a
  dict of pending ids and ``loads_strict``.

Prints µs per message for both and the ratio. CPU only, no sockets.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

from kefu.protocol.agent_api import AGENT_API
from kefu.protocol.client_session import ClientSession
from kefu.protocol.server_session import Limits, ServerSession
from kefu.protocol.wire import decode_request, encode, loads_strict, reply_message

Json = dict[str, Any]


# --- the baselines: the code as it was before the session layer


def _old_base(mark: str, rid: str | None, seq: int | None) -> Json:
    msg: Json = {"v": 1}
    if rid is not None:
        msg["id"] = rid
    if seq is not None:
        msg["seq"] = seq
    msg["mark"] = mark
    return msg


def old_reply_message(
    mark: str,
    sub_mark: str,
    payload: Any = None,
    *,
    rid: str | None = None,
    state: str | None = None,
    seq: int | None = None,
    data: Any = None,
) -> Json:
    """``wire.reply_message`` as it was (a copy)."""
    msg = _old_base(mark, rid, seq)
    msg["subMark"] = sub_mark
    if state is not None:
        msg["state"] = state
    if payload is not None:
        msg["payload"] = payload
    if data is not None:
        msg["data"] = data
    return msg


class OldServerFrame:
    """``server/connection.py``'s ``_rate`` and ``_frame`` before (fixed window, then decode)."""

    def __init__(self) -> None:
        self.window_start = 0.0
        self.count = 0
        self.strikes = 0

    def frame(self, text: str, now: float) -> object:
        if now - self.window_start >= 1.0:
            self.window_start, self.count, self.strikes = now, 0, 0
        self.count += 1
        if self.count > 10**9:
            return None
        if len(text) > 64 * 1024 // 4 and len(text.encode("utf-8", "surrogatepass")) > 64 * 1024:
            return None
        return decode_request(text, AGENT_API)


ROUNDS = 20


def per_message(
    n: int, before: Callable[[int], object], after: Callable[[int], object]
) -> tuple[float, float]:
    """µs of CPU (this thread's) per call of each: the best of :data:`ROUNDS` short
    rounds of ``n / ROUNDS`` calls taken in turn. The machine is shared:
    alternating short rounds and CPU time keep other load off the figures."""
    best = [float("inf"), float("inf")]
    per_round = max(1, n // ROUNDS)
    for _ in range(ROUNDS):
        for k, fn in enumerate((before, after)):
            t0 = time.thread_time()
            for i in range(per_round):
                fn(i)
            best[k] = min(best[k], time.thread_time() - t0)
    return best[0] / per_round * 1e6, best[1] / per_round * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=200_000)
    n = ap.parse_args(argv).n
    payload = {"sessionId": "s1", "text": "hello", "seq": 3}

    rows: list[tuple[str, tuple[float, float]]] = []
    rows.append(
        (
            "build a reply",
            per_message(
                n,
                lambda i: old_reply_message("sendMessage", "success", payload, rid="r1"),
                lambda i: reply_message("sendMessage", "success", payload, rid="r1"),
            ),
        )
    )

    frame = encode({"v": 1, "id": "r1", "mark": "sendMessage", "params": {"session_id": "s", "text": "hi"}})
    old = OldServerFrame()
    new = ServerSession(AGENT_API, Limits(rate=10**9, window=1.0, strikes=20, max_bytes=64 * 1024))
    new.authenticated = True
    rows.append(
        (
            "server: one frame in",
            per_message(n, lambda i: old.frame(frame, i * 1e-6), lambda i: new.receive(frame, i * 1e-6)),
        )
    )

    answer = encode(reply_message("getState", "success", {"since": "x"}, rid="r1", state="002000"))
    pending: dict[str, object] = {}

    def old_client(i: int) -> None:
        pending["r1"] = i
        encode({"v": 1, "id": "r1", "mark": "getState"})
        msg = loads_strict(answer)
        pending.pop(msg["id"], None)

    session: ClientSession[int] = ClientSession()

    def new_client(i: int) -> None:
        session.request("getState", None, i, rid="r1")
        session.receive(answer)

    rows.append(("client: request + its reply", per_message(n, old_client, new_client)))

    print(
        f"session layer cost, {n} messages in {ROUNDS} rounds (best, CPU time), {platform.python_version()}, {platform.machine()}"
    )
    print(f"{'path':32} {'before µs':>10} {'after µs':>10} {'ratio':>7}")
    for name, (before, after) in rows:
        print(f"{name:32} {before:10.2f} {after:10.2f} {after / before:7.2f}")


if __name__ == "__main__":
    main()
