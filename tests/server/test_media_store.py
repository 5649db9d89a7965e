"""Photos, snapshots and recordings stored by the server, and who may read them."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.server.test_calls import state, visitor

pytestmark = pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.2)


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


async def in_call(server: Any) -> tuple[Any, Any, str, str]:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(agent, "003001")
    await state(agent, "006011")
    return agent, v, call_id, await server.login("a1")


async def test_a_visitor_photo_reaches_the_agent_and_is_stored(server: Any) -> None:
    agent, v, call_id, token = await in_call(server)
    request_id = (await agent.call("takePhoto"))["payload"]["requestId"]
    await v.next_event("photoRequest")
    photo = jpeg((200, 30, 30), (1280, 720))
    params = {"callId": call_id, "requestId": request_id}
    async with httpx.AsyncClient(base_url=server.url) as http:
        bad = await http.post(
            "/api/visitor/photo",
            params=params,
            content=photo,
            headers={"X-Visitor-Name": "v1", "X-Visitor-Key": "x"},
        )
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"
        ok = await http.post(
            "/api/visitor/photo",
            params=params,
            content=photo,
            headers={"X-Visitor-Name": "v1", "X-Visitor-Key": v.visitor_key},
        )
        assert ok.status_code == 200, ok.text
        pushed = (await agent.next_event("photo"))["payload"]
        assert pushed["requestId"] == request_id and pushed["artifactId"] == ok.json()["artifactId"]
        assert pushed["meta"]["width"] == 1280 and pushed["sha256"] == hashlib.sha256(photo).hexdigest()
        got = await http.get(
            f"/api/media/{pushed['artifactId']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert got.content == photo and got.headers["content-type"] == "image/jpeg"


async def test_snapshots_and_recordings_only_for_the_calls_agents(server: Any) -> None:
    _agent, _v, call_id, token = await in_call(server)
    await server.add_agent("a2")
    other = await server.login("a2")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        shot = jpeg((10, 200, 10))
        r = await http.post("/api/media/snapshot", params={"callId": call_id}, content=shot, headers=auth)
        assert r.status_code == 200, r.text
        art = r.json()
        assert art["kind"] == "snapshot" and art["sha256"] == hashlib.sha256(shot).hexdigest()
        assert art["meta"]["width"] == 64
        r = await http.post(
            "/api/media/snapshot", params={"callId": call_id}, content=b"not a jpeg", headers=auth
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_field"
        # the recording arrives in chunks, the header rewritten at the end
        body = b"A" * 1000 + b"B" * 1000
        for off in (0, 1000):
            r = await http.put(
                f"/api/calls/{call_id}/recording",
                params={"offset": off},
                content=body[off : off + 1000],
                headers=auth,
            )
            assert r.status_code == 200, r.text
        r = await http.put(
            f"/api/calls/{call_id}/recording",
            params={"offset": 0, "final": "true"},
            content=b"HEAD",
            headers=auth,
        )
        final = b"HEAD" + body[4:]
        assert r.json()["sha256"] == hashlib.sha256(final).hexdigest() and r.json()["size"] == 2000
        r = await http.get(f"/api/calls/{call_id}/recording", headers=auth)
        assert r.status_code == 200 and r.content == final
        # another agent may not even learn that it exists
        r = await http.get(f"/api/calls/{call_id}/recording", headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_such_media"
        r = await http.get(f"/api/media/{art['artifactId']}", headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 404
        r = await http.get(f"/api/media/{art['artifactId']}", headers=auth)
        assert r.content == shot
        listed = (await http.get(f"/api/calls/{call_id}/media", headers=auth)).json()
        assert {a["kind"] for a in listed} == {"snapshot", "recording"}
