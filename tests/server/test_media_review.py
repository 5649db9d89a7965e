"""Issue 15 (the bank's security review): recordings are evidence, photos answer
the agent's requests, every read and write of media is audited."""

from __future__ import annotations

import hashlib
import tracemalloc
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kefu.server.schema import audit
from tests.server.test_media_store import in_call, jpeg

pytestmark = pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.2)

GiB = 1024**3


async def put(http: httpx.AsyncClient, call_id: str, token: str, offset: int, data: bytes, **kw: Any) -> Any:
    params: dict[str, Any] = {"offset": offset, **kw}
    return await http.put(
        f"/api/calls/{call_id}/recording",
        params=params,
        content=data,
        headers={"Authorization": f"Bearer {token}"},
    )


async def audit_rows(server: Any) -> list[Any]:
    async with server.services.store.read() as c:
        return list((await c.execute(select(audit).order_by(audit.c.num))).all())


async def test_a_finished_recording_never_changes_and_every_access_is_audited(server: Any) -> None:
    _agent, _v, call_id, token = await in_call(server)
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await put(http, call_id, token, 0, b"evidence")).status_code == 200
        done = await put(http, call_id, token, 8, b"", final="true")
        assert done.status_code == 200 and done.json()["sha256"] == hashlib.sha256(b"evidence").hexdigest()
        for offset, data in ((0, b"forgery!"), (8, b"more"), (8, b"")):
            again = await put(http, call_id, token, offset, data, final="true")
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "recording_finished"
        got = await http.get(f"/api/calls/{call_id}/recording", headers={"Authorization": f"Bearer {token}"})
        assert got.content == b"evidence"
        assert got.headers["x-checksum-sha256"] == hashlib.sha256(b"evidence").hexdigest()
    rows = await audit_rows(server)
    assert [(r.actor, r.action, r.object_kind) for r in rows] == [
        ("agent:a1", "write", "recording"),
        ("agent:a1", "finish", "recording"),
        ("agent:a1", "refused", "recording"),
        ("agent:a1", "refused", "recording"),
        ("agent:a1", "refused", "recording"),
        ("agent:a1", "read", "recording"),
    ]
    assert {r.address for r in rows} == {"127.0.0.1"} and {r.call_id for r in rows} == {call_id}
    assert rows[0].object_id == rows[-1].object_id == done.json()["artifactId"]


@pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.2, max_recording_bytes=3000)
async def test_a_recording_grows_without_holes_and_within_its_cap(server: Any) -> None:
    _agent, _v, call_id, token = await in_call(server)
    path = server.settings.data_dir / "media" / "recording" / f"{call_id}.webm"
    async with httpx.AsyncClient(base_url=server.url) as http:
        far = await put(http, call_id, token, 4 * GiB, b"x")
        assert far.status_code == 400 and far.json()["error"]["code"] == "invalid_field"
        assert "next chunk starts at offset 0" in far.json()["error"]["msg"]
        assert not path.exists() or path.stat().st_size == 0
        assert (await put(http, call_id, token, 0, b"A" * 1000)).status_code == 200
        hole = await put(http, call_id, token, 1001, b"B")
        assert hole.status_code == 400 and "offset 1000" in hole.json()["error"]["msg"]
        # a chunk sent again (its answer was lost) and the muxer's header rewrite stay allowed
        assert (await put(http, call_id, token, 0, b"H" * 1000)).status_code == 200
        assert (await put(http, call_id, token, 1000, b"B" * 1000)).status_code == 200
        big = await put(http, call_id, token, 2000, b"C" * 1001)
        assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
        assert "3000" in big.json()["error"]["msg"]
        assert path.stat().st_size == 2000
        ok = await put(http, call_id, token, 2000, b"C" * 1000, final="true")
        assert ok.status_code == 200 and ok.json()["size"] == 3000
        assert ok.json()["sha256"] == hashlib.sha256(b"H" * 1000 + b"B" * 1000 + b"C" * 1000).hexdigest()


async def test_the_final_checksum_streams_the_file(server: Any) -> None:
    """24 MiB of recording: closing it does not read the file into memory (it did: 4 GiB → 2 GB RSS)."""
    _agent, _v, call_id, token = await in_call(server)
    block = bytes(range(256)) * 32768  # 8 MiB
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for i in range(3):
            assert (await put(http, call_id, token, i * len(block), block)).status_code == 200
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            done = await put(http, call_id, token, 3 * len(block), b"", final="true")
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert done.status_code == 200 and done.json()["sha256"] == hashlib.sha256(block * 3).hexdigest()
    assert peak < 4 * 1024 * 1024, f"closing the recording took {peak} bytes of memory"


# --- photos answer the agent's open requests


async def post_photo(http: httpx.AsyncClient, v: Any, call_id: str, request_id: str, data: bytes) -> Any:
    return await http.post(
        "/api/visitor/photo",
        params={"callId": call_id, "requestId": request_id},
        content=data,
        headers={"X-Visitor-Name": "v1", "X-Visitor-Key": v.visitor_key},
    )


async def test_a_photo_nobody_asked_for_is_refused(server: Any) -> None:
    agent, v, call_id, _token = await in_call(server)
    async with httpx.AsyncClient(base_url=server.url) as http:
        odd = await http.post(
            "/api/visitor/photo",
            params={"callId": call_id, "requestId": "0" * 32},
            content=b"x",
            headers={"X-Visitor-Name": "v%001", "X-Visitor-Name-Encoding": "percent", "X-Visitor-Key": "k"},
        )
        assert odd.status_code == 401 and odd.json()["error"]["code"] == "unauthenticated", odd.text
        r = await post_photo(http, v, call_id, "0" * 32, jpeg((1, 2, 3)))
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_such_request", r.text
        bad = await v.request("photoAnswer", {"callId": call_id, "requestId": "0" * 32, "answer": "refuse"})
        assert bad["error"]["code"] == "no_such_request", bad
        # a real request is answered once: a second photo, or an answer after it, is refused
        request_id = (await agent.call("takePhoto"))["payload"]["requestId"]
        assert (await v.next_event("photoRequest"))["payload"]["requestId"] == request_id
        ok = await post_photo(http, v, call_id, request_id, jpeg((9, 9, 9)))
        assert ok.status_code == 200, ok.text
        again = await post_photo(http, v, call_id, request_id, jpeg((9, 9, 9)))
        assert again.status_code == 404 and again.json()["error"]["code"] == "no_such_request"
        late = await v.request("photoAnswer", {"callId": call_id, "requestId": request_id, "answer": "error"})
        assert late["error"]["code"] == "no_such_request", late
        # an answer instead of a photo, once
        second = (await agent.call("takePhoto"))["payload"]["requestId"]
        no = await v.request("photoAnswer", {"callId": call_id, "requestId": second, "answer": "refuse"})
        assert no["subMark"] == "success", no
        again = await post_photo(http, v, call_id, second, jpeg((9, 9, 9)))
        assert again.status_code == 404
    pushed = [await agent.next_event("photo"), await agent.next_event("photo")]
    assert pushed[0]["payload"]["requestId"] == request_id and "artifactId" in pushed[0]["payload"]
    assert pushed[1]["payload"]["error"]["code"] == "photo_refused"
    writes = [(r.actor, r.action, r.object_kind, r.address) for r in await audit_rows(server)]
    assert writes == [("visitor:v1", "write", "photo", "127.0.0.1")]


@pytest.mark.server_settings(
    ring_timeout=5.0, call_grace=0.2, max_image_bytes=4000, photo_max_open=2, photo_request_ttl=30.0
)
async def test_photo_requests_are_bounded_in_size_number_and_time(server: Any) -> None:
    agent, v, call_id, _token = await in_call(server)
    first = (await agent.call("takePhoto"))["payload"]["requestId"]
    await agent.call("takePhoto")
    third = await agent.request("takePhoto")
    assert third["error"]["code"] == "rate_limited", third
    big = jpeg((200, 100, 50), (400, 300)) + b"\0" * 4000
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await post_photo(http, v, call_id, first, big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert (await post_photo(http, v, call_id, first, jpeg((1, 1, 1)))).status_code == 200
        assert (await agent.request("takePhoto"))["subMark"] == "success"  # one answered: room again
        server.clock.advance(31)  # the open ones expired
        stale = (await agent.call("takePhoto"))["payload"]["requestId"]
        server.clock.advance(31)
        r = await post_photo(http, v, call_id, stale, jpeg((1, 1, 1)))
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_such_request"
