"""Evidence at rest (issue 17): photos, snapshots and recordings encrypted on disk with the
media key, decrypted only for an authorised download; retention deletes old files, audited."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kefu.server.schema import audit, media_artifacts
from kefu.server.vault import MAGIC
from tests.server.test_media_review import put
from tests.server.test_media_store import in_call, jpeg

KEY = os.urandom(32)
pytestmark = pytest.mark.server_settings(
    ring_timeout=5.0, call_grace=0.2, media_keys=(KEY,), retention_days=30.0
)


def probe_ok(path: Path) -> bool:
    done = subprocess.run(["ffprobe", "-v", "error", str(path)], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.fixture(scope="module")
def webm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("webm") / "call.webm"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5"),
            *("-f", "lavfi", "-i", "sine=frequency=400", "-t", "1", "-c:v", "libvpx", "-c:a", "libopus"),
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out.read_bytes()


async def stored_file(server: Any, artifact_id: str) -> tuple[Path, Any]:
    async with server.services.store.read() as c:
        art = (await c.execute(select(media_artifacts).where(media_artifacts.c.id == artifact_id))).one()
    return Path(server.settings.data_dir) / art.path, art


async def test_recordings_and_snapshots_are_encrypted_on_disk_and_decrypted_for_their_agents(
    server: Any, webm: bytes, tmp_path: Path
) -> None:
    _agent, _v, call_id, token = await in_call(server)
    await server.add_agent("a2")
    other = {"Authorization": f"Bearer {await server.login('a2')}"}
    auth = {"Authorization": f"Bearer {token}"}
    clear = tmp_path / "original.webm"
    clear.write_bytes(webm)
    assert probe_ok(clear)
    async with httpx.AsyncClient(base_url=server.url) as http:
        # the hub mode's recording: in chunks, sealed when final
        half = len(webm) // 2
        assert (await put(http, call_id, token, 0, webm[:half])).status_code == 200
        done = await put(http, call_id, token, half, webm[half:], final="true")
        assert done.status_code == 200, done.text
        art = done.json()
        assert art["sha256"] == hashlib.sha256(webm).hexdigest() and art["size"] == len(webm)
        path, row = await stored_file(server, art["artifactId"])
        assert path.name.endswith(".enc") and row.key_id is not None
        assert path.read_bytes().startswith(MAGIC) and not probe_ok(path)
        assert not path.with_name(f"{call_id}.webm").exists()  # no clear copy left
        got = await http.get(f"/api/calls/{call_id}/recording", headers=auth)
        assert got.status_code == 200 and got.content == webm
        assert got.headers["X-Checksum-SHA256"] == art["sha256"]
        refused = await http.get(f"/api/calls/{call_id}/recording", headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "no_such_media"
        # a snapshot: sealed at once
        shot = jpeg((10, 200, 10))
        r = await http.post("/api/media/snapshot", params={"callId": call_id}, content=shot, headers=auth)
        assert r.status_code == 200, r.text
        path, row = await stored_file(server, r.json()["artifactId"])
        assert path.read_bytes().startswith(MAGIC) and shot not in path.read_bytes()
        got = await http.get(f"/api/media/{r.json()['artifactId']}", headers=auth)
        assert got.content == shot and got.headers["content-type"] == "image/jpeg"
        refused = await http.get(f"/api/media/{r.json()['artifactId']}", headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "no_such_media"


async def test_retention_deletes_old_files_with_an_audit_row(server: Any) -> None:
    _agent, _v, call_id, token = await in_call(server)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post(
            "/api/media/snapshot", params={"callId": call_id}, content=jpeg((1, 2, 3)), headers=auth
        )
        old_id = r.json()["artifactId"]
        old_path, _ = await stored_file(server, old_id)
        media = server.services.media
        server.clock.advance(29 * 86400)
        assert await media.expire() == 0 and old_path.exists()  # not 30 days yet
        auth = {"Authorization": f"Bearer {await server.login('a1')}"}  # the first token expired
        r = await http.post(
            "/api/media/snapshot", params={"callId": call_id}, content=jpeg((4, 5, 6)), headers=auth
        )
        new_id = r.json()["artifactId"]
        server.clock.advance(2 * 86400)
        assert await media.expire() == 1  # the first is 31 days old, the second 2
        auth = {"Authorization": f"Bearer {await server.login('a1')}"}
        assert not old_path.exists() and (await stored_file(server, new_id))[0].exists()
        gone = await http.get(f"/api/media/{old_id}", headers=auth)
        assert gone.status_code == 404 and "retention" in gone.json()["error"]["msg"]
        assert (await http.get(f"/api/media/{new_id}", headers=auth)).status_code == 200
    async with server.services.store.read() as c:
        rows = (await c.execute(select(audit).where(audit.c.action == "expire"))).all()
        deleted = (
            await c.execute(select(media_artifacts.c.deleted_at).where(media_artifacts.c.id == old_id))
        ).scalar()
    assert [(r.object_id, r.object_kind, r.call_id) for r in rows] == [(old_id, "snapshot", call_id)]
    assert deleted is not None
    assert await media.expire() == 0  # once
