"""One ``recording.ready`` per call, however often its final chunk arrives (issue 21)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.server.test_integrations import boss, journal, settled
from tests.server.test_media_store import in_call

pytestmark = pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.2, events_poll=0.05)


async def put_final(
    http: httpx.AsyncClient, call_id: str, token: str, offset: int, data: bytes
) -> httpx.Response:
    return await http.put(
        f"/api/calls/{call_id}/recording",
        params={"offset": offset, "final": True},
        content=data,
        headers={"Authorization": f"Bearer {token}"},
    )


async def ready_events(server: ServerHandle, call_id: str) -> list[dict[str, Any]]:
    await settled(server)
    events = await journal(server, await boss(server))
    return [e for e in events if e["type"] == "recording.ready" and e["data"]["callId"] == call_id]


async def test_a_repeated_final_chunk_is_refused_and_emits_nothing(server: ServerHandle) -> None:
    _agent, _v, call_id, token = await in_call(server)
    async with httpx.AsyncClient(base_url=server.url) as http:
        first = await put_final(http, call_id, token, 0, b"webm-bytes")
        assert first.status_code == 200, first.text
        again = await put_final(http, call_id, token, 0, b"webm-bytes")  # a retry of the same request
        assert again.json()["error"]["code"] == "recording_finished"
        both = await asyncio.gather(*(put_final(http, call_id, token, 10, b"") for _ in range(2)))
        assert [r.json()["error"]["code"] for r in both] == ["recording_finished"] * 2
    ready = await ready_events(server, call_id)
    assert len(ready) == 1 and ready[0]["data"]["sha256"] == first.json()["sha256"]


async def test_a_final_chunk_racing_another_nodes_emits_once(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes each take a final chunk of the call and each reads the recording as not yet
    complete (the other's transaction has not committed): the per-node lock does not help,
    the second commit must find it complete and change nothing. The second node's stale
    read is made here by letting the second request see the recording as it was before."""
    _agent, _v, call_id, token = await in_call(server)
    media = server.services.media
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.put(
            f"/api/calls/{call_id}/recording",
            params={"offset": 0},
            content=b"webm",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        before = await media._recording_art(call_id)  # not complete yet
        assert before is not None and not before.meta["complete"]
        first = await put_final(http, call_id, token, 4, b"-end")
        assert first.status_code == 200, first.text

        async def stale(_call_id: str, _part: int = 1) -> Any:
            return before  # what the other node read before the first final committed

        monkeypatch.setattr(media, "_recording_art", stale)
        second = await put_final(http, call_id, token, 4, b"-end")
        assert second.json()["error"]["code"] == "recording_finished", second.text
    monkeypatch.undo()
    ready = await ready_events(server, call_id)
    assert len(ready) == 1
    stored = await media._recording_art(call_id)
    assert stored.meta["complete"] and stored.sha256 == first.json()["sha256"] and stored.size == 8
