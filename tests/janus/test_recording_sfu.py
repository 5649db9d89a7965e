"""The SFU mode's compliance recording, made on the server from Janus's ``.mjr`` files
(kefu.server.recording), with a real call through Janus in the namespace (``dc``)."""

from __future__ import annotations

import array
import asyncio
import hashlib
import json
import math
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from av import AudioFrame, VideoFrame
from PIL import ImageStat
from sqlalchemy import select

from kefu.media import colour_for
from kefu.media.pattern import sample_box
from kefu.server import Services
from kefu.server.schema import journal
from kefu.server.vault import MAGIC
from kefu.visitor import CallUpdate, MediaStatus
from tests.e2e.callkit import AgentSide, payload_of
from tests.e2e.test_call_media import near
from tests.plugin.harness import LIMIT

from .test_calls_sfu import Scene, frame_of, scene, sfu_of

pytestmark = pytest.mark.media
__all__ = ["scene"]

CALL_SECONDS = 5.0


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    probed: dict[str, Any] = json.loads(out.stdout)
    return probed


def probe_ok(path: Path) -> bool:
    done = subprocess.run(["ffprobe", "-v", "error", str(path)], capture_output=True, timeout=30)
    return done.returncode == 0


def frame_at(path: Path, seconds: float) -> VideoFrame:
    with av.open(str(path)) as box:
        for frame in box.decode(video=0):
            assert isinstance(frame, VideoFrame)
            if frame.time is not None and frame.time >= seconds:
                return frame
    raise AssertionError(f"no video frame at {seconds} s")


def tile_rgb(frame: VideoFrame, tile: int, tiles: int) -> tuple[int, int, int]:
    """The pattern's colour (:func:`kefu.media.sample_box`) in ``tile`` (0-based) of a side-by-side frame."""
    img = frame.to_image()
    w, h = img.size
    x0 = w * tile // tiles
    left, top, right, bottom = sample_box(w // tiles, h)
    patch = img.crop((x0 + left, top, x0 + right, bottom))
    r, g, b = (round(c) for c in ImageStat.Stat(patch).mean[:3])
    return r, g, b


def audio_rms(path: Path, start: float, end: float) -> float:
    samples = array.array("h")
    to_pcm = av.AudioResampler(format="s16", layout="mono", rate=48000)
    with av.open(str(path)) as box:
        for frame in box.decode(audio=0):
            assert isinstance(frame, AudioFrame)
            if frame.time is not None and start <= frame.time < end:
                for pcm in to_pcm.resample(frame):
                    samples.frombytes(bytes(pcm.planes[0])[: pcm.samples * 2])
    assert samples, f"no audio between {start} and {end} s"
    return math.sqrt(sum(x * x for x in samples) / len(samples))


async def journal_types(scene: Scene, call_id: str) -> list[str]:
    async with scene.server.services.store.read() as c:
        rows = await c.execute(
            select(journal.c.type).where(journal.c.stream == f"call:{call_id}").order_by(journal.c.num)
        )
        return [r.type for r in rows]


async def recording_push(agent: AgentSide, status: str) -> dict[str, Any]:
    _, msg = await agent.inner.find(lambda e: e[0] == "recording" and payload_of(e[1])["status"] == status)
    payload: dict[str, Any] = payload_of(msg)
    return payload


async def test_a_two_party_call_through_janus_is_recorded_on_the_server(scene: Scene, tmp_path: Path) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    accepted = await c.callback("acceptSuccess", "006011")
    call_id = accepted["payload"]["callId"]
    await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    # the recording starts when the first media reaches Janus: a push to the agent, in the record
    started = await recording_push(a1, "recording")
    assert started["callId"] == call_id and started["member"] in ("agent:a1", "visitor:v1")
    assert isinstance(v.media, object)
    await frame_of(sfu_of(a1), "v1")
    await asyncio.sleep(CALL_SECONDS)  # the call's length: an input of the test, not a wait for an event
    await a1.call("videoDisconnect").callback("success", "005004")
    sfu = scene.server.services.calls.sfu
    assert sfu is not None
    await sfu.aclose_pending()  # the room destroyed and the recording made
    ready = await recording_push(a1, "ready")
    token = a1.plugin.api_token
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=scene.server.url) as http:
        record = (await http.get(f"/api/calls/{call_id}", headers=auth)).json()
        got = await http.get(f"/api/calls/{call_id}/recording", headers=auth)
    assert got.status_code == 200, got.text
    assert record["recording"]["status"] == "ready"
    assert record["recording"]["artifactId"] == ready["artifactId"]
    assert got.headers["X-Checksum-SHA256"] == ready["sha256"]
    path = tmp_path / "call.webm"
    path.write_bytes(got.content)
    assert hashlib.sha256(got.content).hexdigest() == ready["sha256"]
    # at rest: sealed with the media key (not a media file), the clear .mjr tracks removed
    sealed = list(scene.server.settings.data_dir.glob("media/recording/*"))
    assert [p.name for p in sealed] == [f"{call_id}.sfu.webm.enc"]
    assert sealed[0].read_bytes().startswith(MAGIC) and not probe_ok(sealed[0]) and probe_ok(path)
    assert not list(scene.dc.janus.recordings.glob("*.mjr"))
    probed = ffprobe(path)
    kinds = sorted(s["codec_type"] for s in probed["streams"])
    assert kinds == ["audio", "video"], probed["streams"]
    video = next(s for s in probed["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (640, 240)  # two members side by side
    # as long as the call: from answered to ended (the media starts a little after the answer)
    answered = datetime.fromisoformat(record["answeredAt"])
    ended = datetime.fromisoformat(record["endedAt"])
    call_length = (ended - answered).total_seconds()
    duration = float(probed["format"]["duration"])
    assert abs(duration - call_length) < 0.5, (duration, call_length)
    # both members' video, each in its tile (agent:a1 first, visitor:v1 second), mid-call
    middle = frame_at(path, duration / 2)
    assert near(tile_rgb(middle, 0, 2), colour_for("a1")), tile_rgb(middle, 0, 2)
    assert near(tile_rgb(middle, 1, 2), colour_for("v1")), tile_rgb(middle, 1, 2)
    # both members' audio tracks went into the mix, which is not silent mid-call
    art = next(
        a
        for a in (await _media(scene, call_id, auth))
        if a["kind"] == "recording" and a["artifactId"] == ready["artifactId"]
    )
    tracks = {(t["member"], t["kind"]) for t in art["meta"]["tracks"]}
    types = await journal_types(scene, call_id)
    assert types.count("recording.started") == 1 and types.count("recording.ready") == 1
    assert types.index("recording.started") < types.index("call.ended") < types.index("recording.ready")
    assert tracks == {
        ("agent:a1", "audio"),
        ("agent:a1", "video"),
        ("visitor:v1", "audio"),
        ("visitor:v1", "video"),
    }
    assert audio_rms(path, duration / 2 - 0.5, duration / 2 + 0.5) > 500


async def _media(scene: Scene, call_id: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=scene.server.url) as http:
        listed: list[dict[str, Any]] = (await http.get(f"/api/calls/{call_id}/media", headers=auth)).json()
    return listed


async def test_a_recording_that_cannot_be_made_is_a_failure_in_the_record_and_pushed(
    scene: Scene,
) -> None:
    a1 = await scene.agent("a1")
    await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    accepted = await c.callback("acceptSuccess", "006011")
    call_id = accepted["payload"]["callId"]
    await recording_push(a1, "recording")
    await frame_of(sfu_of(a1), "v1")
    # the media server's files are lost (a full or broken disk): nothing is left to make the recording of
    room = (await scene.server.services.calls.sfu.room_of(call_id)).number  # type: ignore[union-attr]
    for mjr in scene.dc.janus.recordings.glob(f"videoroom-{room}-*.mjr"):
        mjr.unlink()
    await a1.call("videoDisconnect").callback("success", "005004")
    await scene.server.services.calls.sfu.aclose_pending()  # type: ignore[union-attr]
    failed = await recording_push(a1, "failed")
    assert failed["callId"] == call_id and "no media" in failed["reason"]
    auth = {"Authorization": f"Bearer {a1.plugin.api_token}"}
    async with httpx.AsyncClient(base_url=scene.server.url) as http:
        record = (await http.get(f"/api/calls/{call_id}", headers=auth)).json()
        got = await http.get(f"/api/calls/{call_id}/recording", headers=auth)
    assert record["recording"]["status"] == "failed" and record["recording"]["reason"] == failed["reason"]
    assert got.status_code == 404 and got.json()["error"]["code"] == "no_such_media"
    types = await journal_types(scene, call_id)
    assert "recording.failed" in types and "recording.ready" not in types
    assert not any(scene.server.settings.data_dir.glob("media/recording/*"))


async def lost_record(services: Services, call_id: str, members: tuple[str, ...]) -> dict[str, Any]:
    """The call's record once its room is closed: ended by the system with
    ``media_server_lost``, for the call and each of ``members``."""
    sfu = services.calls.sfu
    assert sfu is not None
    await sfu.aclose_pending()
    record = await services.calls.get_call(call_id)
    assert record is not None
    assert (record["status"], record["endedBy"], record["endReason"]) == (
        "ended",
        "system",
        "media_server_lost",
    )
    assert {m["name"]: m["reason"] for m in record["members"]} == dict.fromkeys(members, "media_server_lost")
    return record


async def test_janus_killed_mid_call_ends_it_for_everyone_and_keeps_what_was_recorded(
    scene: Scene, tmp_path: Path
) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    accepted = await c.callback("acceptSuccess", "006011")
    call_id = accepted["payload"]["callId"]
    await recording_push(a1, "recording")
    await frame_of(sfu_of(a1), "v1")
    await frame_of(v.media, "a1")  # type: ignore[arg-type]
    await asyncio.sleep(2.0)  # media through Janus for a while: an input of the test
    scene.dc.janus.kill()  # SIGKILL: a crash
    killed = datetime.now(UTC)
    # every member told at once, with the reason
    left = await a1.state("005004")
    assert (left["reason"], left["callId"]) == ("media_server_lost", call_id)
    ended = await v.wait_for(CallUpdate, lambda e: e.what == "ended", within=LIMIT)
    assert (ended.call_id, ended.by, ended.reason) == (call_id, "system", "media_server_lost")
    await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
    # the record: ended by the system for that reason; the recording of what Janus received kept
    record = await lost_record(scene.server.services, call_id, ("a1", "v1"))
    ready = await recording_push(a1, "ready")
    assert record["recording"]["status"] == "ready"
    auth = {"Authorization": f"Bearer {a1.plugin.api_token}"}
    async with httpx.AsyncClient(base_url=scene.server.url) as http:
        got = await http.get(f"/api/calls/{call_id}/recording", headers=auth)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == ready["sha256"]
    path = tmp_path / "lost.webm"
    path.write_bytes(got.content)
    duration = float(ffprobe(path)["format"]["duration"])
    answered = datetime.fromisoformat(record["answeredAt"])
    assert abs(duration - (killed - answered).total_seconds()) < 0.5, (duration, killed - answered)
    middle = frame_at(path, duration / 2)
    assert near(tile_rgb(middle, 0, 2), colour_for("a1")) and near(tile_rgb(middle, 1, 2), colour_for("v1"))


async def test_a_server_restarted_mid_call_ends_the_calls_its_previous_run_drove(scene: Scene) -> None:
    """The handles of a call were in the previous run's Janus session, which nobody drives
    now: the new run ends the call with ``media_server_lost`` at its start and makes the
    recording of what Janus received (D48)."""
    a1 = await scene.agent("a1")
    await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
    await recording_push(a1, "recording")
    await frame_of(sfu_of(a1), "v1")
    await scene.server.restart()
    record = await lost_record(scene.server.services, call_id, ("a1", "v1"))
    assert await scene.server.services.calls.sfu.room_of(call_id) is None  # type: ignore[union-attr]
    assert record["recording"]["status"] == "ready", record["recording"]
