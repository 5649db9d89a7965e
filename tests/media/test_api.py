"""The media layer's surface: settings, track labels, the public names, and
the rule that only kefu.media imports aiortc or av (DESIGN §2)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import kefu
import kefu.media
from kefu.media import Label, MediaError, MediaSettings, parse_source, parse_track_label, track_label
from kefu.media.settings import SourceSpec


def test_settings_defaults_are_the_embedded_default() -> None:
    s = MediaSettings()
    assert s.ice_servers == () and s.host_addresses == ("127.0.0.1",)
    assert (s.video_width, s.video_height, s.fps) == (640, 480, 30)
    assert s.source_spec == SourceSpec("pattern") and not s.record
    assert s.offline_threshold == 3.0 and s.check_interval == pytest.approx(0.3)  # SPEC §2, v1216


@pytest.mark.parametrize(
    "bad",
    [
        {"video_width": 641},
        {"video_height": 8},
        {"photo_width": 0},
        {"fps": 0},
        {"fps": 120},
        {"offline_threshold": 0},
        {"close_timeout": -1},
        {"watchdog_interval": 0},
        {"record_chunk_seconds": 0},
        {"jpeg_quality": 100},
        {"audio_input": "dsound:mic"},
        {"source": "device:"},
    ],
)
def test_settings_refuse_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(MediaError):
        MediaSettings(**bad)  # type: ignore[arg-type]


def test_sources_parse() -> None:
    assert parse_source("pattern") == SourceSpec("pattern")
    assert parse_source("device:/dev/video0") == SourceSpec("device", "/dev/video0")
    assert MediaSettings(audio_input="alsa:default").audio_input == "alsa:default"


@pytest.mark.parametrize("member", ["v1", "agent_7", "访客-1", "a b/c", "x" * 40])
def test_track_labels_round_trip(member: str) -> None:
    for role in ("camera", "mic", "screen"):
        label = track_label(member, role)  # type: ignore[arg-type]
        assert len(label) <= 64 and all(33 <= ord(ch) < 127 for ch in label)  # an SDP msid token
        assert parse_track_label(label) == Label(member, role)  # type: ignore[arg-type]


def test_track_labels_refuse_and_ignore() -> None:
    with pytest.raises(MediaError):
        track_label("x" * 70, "camera")
    with pytest.raises(MediaError):
        track_label("v1", "speaker")  # type: ignore[arg-type]
    for other in (None, "", "3f1c-uuid", "kefu.camera.", "kefu.tv.v1", "kefu.camera.~!!!", "kefu.camera.a.b"):
        assert parse_track_label(other) is None


def test_public_names_are_complete() -> None:
    for name in kefu.media.__all__:
        assert getattr(kefu.media, name) is not None
    assert sorted(kefu.media.__all__) == kefu.media.__all__
    for info in pkgutil.iter_modules(kefu.media.__path__):
        module = importlib.import_module(f"kefu.media.{info.name}")
        assert hasattr(module, "__all__"), f"kefu.media.{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name)


def test_only_kefu_media_imports_aiortc_or_av() -> None:
    root = Path(kefu.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.is_relative_to(root / "media"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(root)}: {n}"
                for n in names
                if n.split(".")[0] in ("aiortc", "av", "aioice")
            ]
    assert offenders == []
