"""The pure parts of the SFU mode's recording (kefu.server.recording): Janus's file names and
headers, and the ffmpeg command that composes a call's tracks. The media itself is tested in
tests/janus/test_recording_sfu.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.server.recording import (
    Input,
    RecordingError,
    compose_command,
    parse_mjr_header,
    parse_mjr_name,
    tracks_of_room,
)


def mjr(info: dict[str, object]) -> bytes:
    text = json.dumps(info).encode()
    return b"MJR00002" + len(text).to_bytes(2, "big") + text + b"MEET\x00\x00"


def test_file_names_of_the_videoroom() -> None:
    name = "videoroom-1342609479724204-user-6544738028375534-1796513623660205-video-0.mjr"
    assert parse_mjr_name(name) == (1342609479724204, 6544738028375534, "video", 0)
    assert parse_mjr_name("videoroom-1-user-2-3-audio-1.mjr") == (1, 2, "audio", 1)
    for bad in ("videoroom-1-user-2-3-audio-1.mjr.tmp", "../videoroom-1-user-2-3-audio-1.mjr", "x.mjr"):
        assert parse_mjr_name(bad) is None


def test_headers_give_codec_and_first_packet() -> None:
    info = {"t": "v", "c": "vp8", "s": 1, "u": 1796513623768079}
    assert parse_mjr_header(mjr(info)) == info
    assert parse_mjr_header(b"MJR00002") is None  # no packet written: no header yet
    assert parse_mjr_header(b"MJR00002\x00\x40{") is None  # cut short
    assert parse_mjr_header(b"MJR00002\x00\x01[") is None
    assert parse_mjr_header(b"RIFF....") is None


def test_tracks_of_a_room_skip_empty_files_and_other_rooms(tmp_path: Path) -> None:
    (tmp_path / "videoroom-7-user-11-100-video-0.mjr").write_bytes(mjr({"t": "v", "c": "vp8", "u": 500}))
    (tmp_path / "videoroom-7-user-11-100-audio-1.mjr").write_bytes(mjr({"t": "a", "c": "opus", "u": 400}))
    (tmp_path / "videoroom-7-user-12-100-video-0.mjr").write_bytes(b"MJR00002")  # nothing written
    (tmp_path / "videoroom-77-user-13-100-video-0.mjr").write_bytes(mjr({"t": "v", "c": "vp8", "u": 1}))
    (tmp_path / "videoroom-7-user-14-100-video-0.mjr").write_bytes(mjr({"t": "v", "c": "av1", "u": 1}))
    tracks = tracks_of_room(tmp_path, 7, {11: "agent:a1"})
    assert [(t.feed, t.kind, t.codec, t.first_us, t.member) for t in tracks] == [
        (11, "audio", "opus", 400, "agent:a1"),
        (11, "video", "vp8", 500, "agent:a1"),
    ]


def test_the_composition_puts_videos_side_by_side_and_mixes_audio_at_their_offsets() -> None:
    inputs = [
        Input(Path("a.webm"), "video", 0.0, "agent:a1"),
        Input(Path("a.opus"), "audio", 0.0, "agent:a1"),
        Input(Path("v.webm"), "video", 0.25, "visitor:v1"),
        Input(Path("v.opus"), "audio", 0.3, "visitor:v1"),
    ]
    cmd = compose_command(inputs, Path("out.webm"), tile=(320, 240), fps=15)
    graph = cmd[cmd.index("-filter_complex") + 1]
    assert "[0:v]" in graph and "[2:v]" in graph and "tpad=start_duration=0.250" in graph
    assert "adelay=delays=300:all=1" in graph
    assert "[v0][v1]hstack=inputs=2[vout]" in graph
    assert "[a0][a1]amix=inputs=2:duration=longest:normalize=0[aout]" in graph
    assert cmd[-1] == "out.webm" and cmd[cmd.index("-f") + 1] == "webm"
    alone = compose_command(inputs[1:2], Path("o.webm"), tile=(320, 240), fps=15)
    assert "[a0]anull[aout]" in alone[alone.index("-filter_complex") + 1] and "-c:v" not in alone
    with pytest.raises(RecordingError):
        compose_command([], Path("o.webm"), tile=(320, 240), fps=15)
