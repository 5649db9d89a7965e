"""The SFU mode's compliance recording: Janus's ``.mjr`` files of a call made into one file.

Theory of operation
-------------------
A room created with ``record: true`` makes Janus write one ``.mjr`` file per
publisher track into ``--janus-recordings``, named
``videoroom-<room>-user-<feed>-<µs>-<audio|video>-<mindex>.mjr`` (Janus 1.x,
multistream). Each file starts with ``MJR00002``, a 2-byte big-endian length
and a JSON header whose ``u`` is the wall-clock time (µs) of its first packet:
that is each track's place on the call's timeline.

When the call ends (its room destroyed, so Janus has closed the files; or
Janus died, so the files hold what it received), :class:`Composer` turns each
track into a playable file with ``janus-pp-rec`` (VP8 → WebM, Opus → Opus),
then one ``ffmpeg`` run makes the call's file: every video track scaled into a
tile of the same size and put side by side (``hstack``), each delayed by its
start offset (``tpad``, black before the member's first frame), and every audio
track delayed by its offset (``adelay``) and mixed (``amix``, not normalised:
each voice keeps its level). The result is a WebM (VP8 + Opus), the format of
the hub mode's recordings. Time zero is the first packet of any track.

The work runs in subprocesses (never on the event loop), at most
``recording_workers`` calls at a time, each step bounded by
``recording_timeout``. What can be decided without running anything (names,
headers, the ffmpeg command) are pure functions, tested without media.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Composer",
    "RecordingError",
    "Track",
    "compose_command",
    "parse_mjr_header",
    "parse_mjr_name",
    "remove_room_files",
    "tracks_of_room",
]

log = logging.getLogger("kefu.server.recording")

MJR_MAGIC = b"MJR00002"
_NAME = re.compile(r"^videoroom-(\d+)-user-(\d+)-(\d+)-(audio|video|data)-(\d+)\.mjr$")
#: janus-pp-rec's target per codec of the room (the rooms are VP8 + Opus, docs/media.md §4b)
_TARGET = {"vp8": "webm", "vp9": "webm", "opus": "opus", "h264": "mp4"}


class RecordingError(Exception):
    """The call's recording could not be made (the reason is shown to the agent)."""


@dataclass(frozen=True, slots=True)
class Track:
    """One publisher track's ``.mjr`` file and where it starts on the wall clock."""

    path: Path
    feed: int  # Janus's publisher id in the room
    kind: str  # audio | video
    mindex: int
    codec: str
    first_us: int  # wall-clock µs of its first packet
    member: str = ""  # "kind:name" of the publisher, when known


def parse_mjr_name(name: str) -> tuple[int, int, str, int] | None:
    """``(room, feed, kind, mindex)`` of a VideoRoom recording's file name, else None."""
    m = _NAME.match(name)
    if m is None:
        return None
    return int(m[1]), int(m[2]), m[4], int(m[5])


def parse_mjr_header(head: bytes) -> dict[str, object] | None:
    """The JSON header of an ``.mjr`` file from its first bytes; None when no packet was
    written (Janus writes the header with the first packet) or the file is not a recording."""
    if len(head) < 10 or not head.startswith(MJR_MAGIC):
        return None
    size = int.from_bytes(head[8:10], "big")
    if len(head) < 10 + size:
        return None
    try:
        info = json.loads(head[10 : 10 + size])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def tracks_of_room(folder: Path, room: int, members: dict[int, str] | None = None) -> list[Track]:
    """The recorded tracks of ``room`` in ``folder`` that hold media (blocking: run in a thread)."""
    found: list[Track] = []
    for path in sorted(folder.glob(f"videoroom-{room}-user-*.mjr")):
        parsed = parse_mjr_name(path.name)
        if parsed is None or parsed[0] != room or parsed[2] == "data":
            continue
        with open(path, "rb") as f:
            info = parse_mjr_header(f.read(1024))
        if info is None:
            log.info("recording %s holds no media: skipped", path.name)
            continue
        codec, first = str(info.get("c", "")), info.get("u")
        if codec not in _TARGET or not isinstance(first, int):
            log.warning("recording %s: codec %r is not one we convert: skipped", path.name, codec)
            continue
        _room, feed, kind, mindex = parsed
        member = (members or {}).get(feed, f"feed:{feed}")
        found.append(Track(path, feed, kind, mindex, codec, first, member))
    return found


def remove_room_files(folder: Path, room: int) -> int:
    """Delete the room's ``.mjr`` files (blocking): the call's recording holds them now."""
    gone = 0
    for path in folder.glob(f"videoroom-{room}-user-*.mjr"):
        parsed = parse_mjr_name(path.name)
        if parsed is not None and parsed[0] == room:
            path.unlink(missing_ok=True)
            gone += 1
    return gone


@dataclass(frozen=True, slots=True)
class Input:
    """A converted track, ready for the composition: its file and its offset in seconds."""

    path: Path
    kind: str
    offset: float
    member: str


def compose_command(
    inputs: Sequence[Input], out: Path, *, tile: tuple[int, int], fps: int, ffmpeg: str = "ffmpeg"
) -> list[str]:
    """The ffmpeg command that makes the call's file from its converted tracks.

    Video: each track at ``fps``, scaled into a ``tile`` (aspect kept, padded),
    delayed by its offset with black frames, then the tiles side by side.
    Audio: each track delayed by its offset, then mixed without normalisation."""
    if not inputs:
        raise RecordingError("no track to compose")
    w, h = tile
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    graph: list[str] = []
    videos: list[str] = []
    audios: list[str] = []
    for n, i in enumerate(inputs):
        args += ["-i", str(i.path)]
        if i.kind == "video":
            label = f"v{len(videos)}"
            graph.append(
                f"[{n}:v]setpts=PTS-STARTPTS,fps={fps},"
                f"scale={w}:{h}:force_original_aspect_ratio=decrease,"
                f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,"
                f"tpad=start_duration={i.offset:.3f}:color=black[{label}]"
            )
            videos.append(label)
        else:
            label = f"a{len(audios)}"
            delay = round(i.offset * 1000)
            graph.append(f"[{n}:a]aresample=48000,asetpts=PTS-STARTPTS,adelay=delays={delay}:all=1[{label}]")
            audios.append(label)
    outs: list[str] = []
    if videos:
        joined = "".join(f"[{v}]" for v in videos)
        graph.append(
            f"{joined}hstack=inputs={len(videos)}[vout]" if len(videos) > 1 else f"{joined}null[vout]"
        )
        outs += ["-map", "[vout]", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]
        outs += ["-b:v", f"{max(300, w * h * len(videos) // 200)}k", "-g", str(fps * 2)]
    if audios:
        joined = "".join(f"[{a}]" for a in audios)
        graph.append(
            f"{joined}amix=inputs={len(audios)}:duration=longest:normalize=0[aout]"
            if len(audios) > 1
            else f"{joined}anull[aout]"
        )
        outs += ["-map", "[aout]", "-c:a", "libopus", "-b:a", "64k"]
    return [*args, "-filter_complex", ";".join(graph), *outs, "-f", "webm", str(out)]


def _has_content(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


@dataclass
class Composer:
    """Runs the post-processing, at most ``workers`` calls at a time."""

    workers: int = 2
    timeout: float = 600.0
    tile: tuple[int, int] = (640, 480)
    fps: int = 15
    pp_rec: str = field(default_factory=lambda: shutil.which("janus-pp-rec") or "janus-pp-rec")
    ffmpeg: str = field(default_factory=lambda: shutil.which("ffmpeg") or "ffmpeg")

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(max(1, self.workers))

    async def _run(self, args: list[str], what: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise RecordingError(f"{what}: cannot run {args[0]} ({exc.strerror})") from None
        try:
            _out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RecordingError(f"{what}: not done within {self.timeout:g} s") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RecordingError(f"{what} failed ({proc.returncode}): {tail[0][:200]}")

    async def compose(self, tracks: Sequence[Track], out: Path, work: Path) -> list[dict[str, object]]:
        """Make ``out`` from ``tracks`` (converted in ``work``, removed after); what went in."""
        if not tracks:
            raise RecordingError("the media server recorded no media for this call")
        async with self._slots:
            await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
            try:
                zero = min(t.first_us for t in tracks)
                inputs: list[Input] = []
                for t in sorted(tracks, key=lambda t: (t.member, t.first_us, t.mindex)):
                    dest = work / f"{t.path.stem}.{_TARGET[t.codec]}"
                    await self._run(
                        [self.pp_rec, "-d", "2", str(t.path), str(dest)], f"janus-pp-rec {t.path.name}"
                    )
                    if not await asyncio.to_thread(_has_content, dest):
                        log.warning("recording %s converted to nothing: skipped", t.path.name)
                        continue
                    inputs.append(Input(dest, t.kind, (t.first_us - zero) / 1e6, t.member))
                if not inputs:
                    raise RecordingError("no recorded track could be converted")
                tmp = out.with_suffix(".part")
                cmd = compose_command(inputs, tmp, tile=self.tile, fps=self.fps, ffmpeg=self.ffmpeg)
                await self._run(cmd, "ffmpeg (composition)")
                await asyncio.to_thread(tmp.replace, out)
            finally:
                await asyncio.to_thread(shutil.rmtree, work, True)
        return [{"member": i.member, "kind": i.kind, "offset": round(i.offset, 3)} for i in inputs]
