"""The network part of issue 16 on the server: TURN credentials handed to the
plugin and the visitors (coturn's ``use-auth-secret`` scheme), and
``mediaFailed`` ending a call with ``media_unreachable``. Real sockets on
loopback; the TURN check against a real coturn is in tests/netns."""

from __future__ import annotations

import base64
import logging
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from kefu.server.turn import TurnIssuer, turn_credential

from .test_calls import call_event, state, visitor

SECRET = "s3cret-turn-shared"
TURN = ("turn:127.0.0.1:3478?transport=udp",)

pytestmark = pytest.mark.server_settings(
    ring_timeout=5.0, call_grace=0.2, turn_urls=TURN, turn_secret=SECRET, turn_ttl=600.0
)


def openssl_hmac(secret: str, text: str) -> str:
    """The credential computed by another implementation (OpenSSL's HMAC)."""
    out = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", secret, "-binary"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(out).decode()


def test_the_credential_is_coturns_hmac_sha1_of_the_username() -> None:
    assert turn_credential(SECRET, "1700000000:agent-1") == openssl_hmac(SECRET, "1700000000:agent-1")
    assert turn_credential(SECRET, "1700000000:agent-1") != turn_credential(SECRET, "1700000001:agent-1")


def test_issuer_lifetime_renewal_and_bad_options() -> None:
    issuer = TurnIssuer((*TURN, "stun:127.0.0.1:3478"), SECRET, ttl=900.0)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    payload = issuer.payload("visitor-7", now)
    turn, stun = payload["iceServers"]
    assert turn["urls"] == list(TURN) and stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["username"] == f"{int(now.timestamp()) + 900}:visitor-7"
    assert turn["credential"] == openssl_hmac(SECRET, turn["username"])
    assert payload["iceRenewIn"] == 600.0  # 2/3 of the TTL
    assert SECRET not in repr(issuer)
    assert TurnIssuer(()).payload("agent-1", now) == {"iceServers": []}  # none by default
    with pytest.raises(ValueError, match="secret"):
        TurnIssuer(TURN, None)
    with pytest.raises(ValueError, match="TURN URL"):
        TurnIssuer(("http://x",), SECRET)
    with pytest.raises(ValueError, match="TTL"):
        TurnIssuer(TURN, SECRET, ttl=5)


async def test_agent_and_visitor_get_fresh_turn_credentials(server: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    agent = await server.agent("a1")
    payload = agent.auth["payload"]
    assert payload["iceRenewIn"] == 400.0
    (entry,) = payload["iceServers"]
    expiry, who = entry["username"].split(":")
    assert who == f"agent-{(await server.services.auth.check(agent.token)).id}" and entry["urls"] == list(
        TURN
    )
    assert abs(int(expiry) - (server.settings.now().timestamp() + 600)) < 5
    assert entry["credential"] == openssl_hmac(SECRET, entry["username"])
    # asking again later (the plugin does at iceRenewIn): a credential that lives from now
    server.clock.advance(300)
    again = (await agent.call("iceServers"))["payload"]["iceServers"][0]
    assert int(again["username"].split(":")[0]) >= int(expiry) + 299
    # the visitor: in its hello reply, and again on request
    v = await server.visitor("v1")
    (hello,) = v.ice_servers
    assert hello.username is not None and hello.username.endswith(f":visitor-{v.visitor_id}")
    assert hello.credential == openssl_hmac(SECRET, hello.username)
    fresh = (await v.link.call("iceServers"))["payload"]["iceServers"][0]
    assert fresh["credential"] == openssl_hmac(SECRET, fresh["username"])
    # no secret, no credential in any log line
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text and entry["credential"] not in text and fresh["credential"] not in text


@pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.2)
async def test_no_turn_configured_no_ice_servers(server: Any) -> None:
    agent = await server.agent("a1")
    assert agent.auth["payload"]["iceServers"] == [] and "iceRenewIn" not in agent.auth["payload"]
    v = await server.visitor("v1")
    assert v.ice_servers == ()


async def connected_call(server: Any, *visitors: str) -> tuple[Any, list[Any], str]:
    """a1 calls out to the first visitor (accepted), then invites the others (accepted)."""
    agent = await server.agent("a1", ready=True)
    links = [await visitor(server, name) for name in visitors]
    reply = await agent.call("callbackToVisitor", {"visitorName": visitors[0]})
    call_id = reply["payload"]["callId"]
    await call_event(links[0], "invited")
    await links[0].call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(agent, "003001")
    await state(agent, "006011")
    for name, link in zip(visitors[1:], links[1:], strict=True):
        await agent.call("videoInviteVisitor", {"visitorName": name})
        await call_event(link, "invited")
        await link.call("answerCall", {"callId": call_id, "answer": "accept"})
        await state(agent, "007001")
        await state(agent, "008001")
    return agent, links, call_id


async def test_the_hub_reports_a_member_unreachable_the_call_ends(server: Any) -> None:
    agent, (v1,), call_id = await connected_call(server, "v1")
    reply = await agent.call(
        "mediaFailed",
        {"callId": call_id, "member": {"kind": "visitor", "name": "v1"}, "reason": "ice failed"},
    )
    assert reply["payload"] == {"callId": call_id, "member": {"kind": "visitor", "name": "v1"}}
    ended = await call_event(v1, "ended")
    assert ended == {
        "callId": call_id,
        "what": "ended",
        "by": "system",
        "reason": "media_unreachable",
        "media": "hub",
    }
    msg = await state(agent, "005003")  # callbackToVisitor connected, the visitor is gone
    assert msg["payload"]["reason"] == "media_unreachable"
    record = await server.services.calls.get_call(call_id)
    assert record["endReason"] == "media_unreachable" and record["endedBy"] == "system"
    assert {m["name"]: m["reason"] for m in record["members"]}["v1"] == "media_unreachable"
    # a second report (the visitor's own, late) changes nothing, and the links stay
    late = await v1.request("mediaFailed", {"callId": call_id})
    assert late["error"]["code"] == "forbidden"  # it is not in the call any more
    assert (await v1.call("ping"))["subMark"] == "pong"


async def test_in_a_three_party_call_the_unreachable_visitor_leaves(server: Any) -> None:
    agent, (v1, v2), call_id = await connected_call(server, "v1", "v2")
    await v2.call("mediaFailed", {"callId": call_id, "reason": "not connected within 1 s"})
    assert (await call_event(v2, "ended"))["reason"] == "media_unreachable"
    assert (await call_event(v1, "memberLeft")) == {
        "callId": call_id,
        "what": "memberLeft",
        "kind": "visitor",
        "name": "v2",
        "media": "hub",
    }
    msg = await state(agent, "006005")  # the third visitor left; the call goes on with v1
    assert msg["payload"]["reason"] == "media_unreachable"
    record = await server.services.calls.get_call(call_id)
    assert record["endReason"] is None
    await agent.call("videoDisconnect")
    assert (await call_event(v1, "ended"))["reason"] == "hangup"


async def test_bad_media_failed_reports_are_refused_and_change_nothing(server: Any) -> None:
    agent, (v1,), call_id = await connected_call(server, "v1")
    stranger = await visitor(server, "v9")
    cases = [
        (stranger, {"callId": call_id}, "no_such_call"),  # not in this call
        (v1, {"callId": call_id, "member": {"kind": "agent", "name": "a1"}}, "forbidden"),  # not the hub
        (v1, {"callId": "nope"}, "no_such_call"),
        (v1, {"callId": call_id, "member": {"kind": "robot", "name": "x"}}, "invalid_field"),
        (v1, {"callId": call_id, "reason": "x" * 200}, "invalid_field"),
    ]
    for link, params, code in cases:
        reply = await link.request("mediaFailed", params)
        assert reply["error"]["code"] == code, (params, reply)
    bad = await agent.request("mediaFailed", {"callId": call_id, "member": {"kind": "visitor", "name": "v9"}})
    assert bad["error"]["code"] == "invalid_state"
    record = await server.services.calls.get_call(call_id)
    assert (
        record["endReason"] is None and {m["name"]: m["status"] for m in record["members"]}["v1"] == "joined"
    )
    assert (await v1.call("ping"))["subMark"] == "pong"
