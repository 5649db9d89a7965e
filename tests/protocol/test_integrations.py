"""The pure part of integrations: signatures, the replay window, type matching, backoff, docs."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path

from kefu.protocol.integrations import (
    EVENT_INFO,
    REPLAY_WINDOW,
    EventType,
    backoff,
    integrations_md,
    matches,
    parse_signature,
    sign,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_signature_is_stripes_scheme() -> None:
    body = b'{"id":"e1","type":"call.ended"}'
    header = sign("s3cret", body, 1_700_000_000)
    t, (v1,) = parse_signature(header)
    assert t == 1_700_000_000
    assert v1 == hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify("s3cret", body, header, now=1_700_000_000 + REPLAY_WINDOW)
    assert not verify("s3cret", body, header, now=1_700_000_000 + REPLAY_WINDOW + 1)  # a replay
    assert not verify("other", body, header, now=1_700_000_000)
    assert not verify("s3cret", body + b" ", header, now=1_700_000_000)
    assert not verify("s3cret", body, "garbage", now=1_700_000_000)
    assert not verify("s3cret", body, "t=1700000000", now=1_700_000_000)


def test_the_verification_snippet_in_the_docs_works() -> None:
    text = integrations_md()
    snippet = re.search(r"```python\n(.*?)```", text, re.S)
    assert snippet is not None
    scope: dict[str, object] = {}
    exec(snippet.group(1), scope)
    check = scope["verify"]
    body = b'{"id":"x"}'
    now = int(time.time())
    assert check("k" * 16, body, sign("k" * 16, body, now)) is True  # type: ignore[operator]
    assert check("k" * 16, body, sign("k" * 16, body, now - 3600)) is False  # type: ignore[operator]
    assert check("j" * 16, body, sign("k" * 16, body, now)) is False  # type: ignore[operator]


def test_what_a_webhook_asks_for() -> None:
    assert matches(["*"], "call.ended")
    assert matches(["call.*"], "call.member_joined") and not matches(["call.*"], "session.closed")
    assert matches(["session.closed", "message.created"], "message.created")
    assert not matches(["session.closed"], "session.queued")


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff(10_000, 1.0, 3600.0) == 3600.0


def test_every_event_type_is_in_the_catalogue_and_the_docs() -> None:
    text = integrations_md()
    for t in EventType:
        assert t in EVENT_INFO
        assert f"`{t.value}`" in text
