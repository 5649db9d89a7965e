"""The server's client of Janus against a real Janus: rooms, secrets, failure."""

from __future__ import annotations

import pytest

from kefu.protocol import ErrorCode
from kefu.server.janus import JanusClient, MediaServerError

from .kit import Janus


async def test_a_room_per_call_is_created_listed_and_destroyed(janus: Janus) -> None:
    client = JanusClient(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key)
    try:
        room = await client.create_room("call-1", record_dir=str(janus.recordings))
        assert await client.room_exists(room.number)
        assert await client.participants(room) == []
        await client.destroy_room(room)
        assert not await client.room_exists(room.number)
    finally:
        await client.aclose()


async def test_secrets_are_required(janus: Janus) -> None:
    """Without the API secret Janus answers nothing; without the admin key no room is made."""
    no_secret = JanusClient(janus.url, admin_key=janus.admin_key)
    no_key = JanusClient(janus.url, api_secret=janus.api_secret)
    try:
        with pytest.raises(MediaServerError):
            await no_secret.create_room("c")
        with pytest.raises(MediaServerError) as exc:
            await no_key.create_room("c")
        assert exc.value.code is ErrorCode.media_server_unavailable
    finally:
        await no_secret.aclose()
        await no_key.aclose()


async def test_a_room_is_destroyed_only_with_its_secret(janus: Janus) -> None:
    client = JanusClient(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key)
    try:
        room = await client.create_room("call-2")
        real = room.secret
        room.secret = "guessed"
        with pytest.raises(MediaServerError):
            await client.destroy_room(room)
        assert await client.room_exists(room.number)
        room.secret = real
        await client.destroy_room(room)
    finally:
        await client.aclose()


async def test_janus_down_is_a_clear_error_and_a_restart_is_used_again(janus: Janus) -> None:
    client = JanusClient(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key, timeout=1.0)
    try:
        await client.create_room("before")
        janus.kill()
        with pytest.raises(MediaServerError) as exc:
            await client.create_room("while-down")
        assert exc.value.code is ErrorCode.media_server_unavailable
        assert "does not answer" in str(exc.value)
        await janus.start()  # same port, same secrets; the old session is gone
        room = await client.create_room("after")
        assert await client.room_exists(room.number)
    finally:
        await client.aclose()
