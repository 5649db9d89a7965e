"""A member's own media: camera and microphone, stills, a screen to share.

:func:`open_source` makes a :class:`MediaSource` from the settings' ``source``:

* ``pattern`` — the synthetic camera (:mod:`kefu.media.pattern`) in the
  member's colour with a frame counter, and a tone; the default when there is
  no device. Stills are painted at ``photo_width`` x ``photo_height``.
* ``device:/dev/videoN`` — a v4l2 camera through PyAV, opened at the photo
  size and scaled to the video size once, here; the microphone from
  ``audio_input`` (``alsa:…``, ``pulse:…``, ``oss:…``) or else a tone.
  Stills are the camera's latest frame at the size it was opened at.
* ``file:<path>`` — a media file, looped, at its own pace; its audio if it
  has some, else a tone. Stills at the file's resolution.

The same code serves the plugin (the agent's camera) and the Python visitor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from av import VideoFrame

from .errors import MediaError, NoFrameError
from .frames import Image, encode_jpeg_async
from .pattern import PatternPainter, colour_for, tone_for
from .settings import MediaSettings
from .tracks import LabelledTrack, NormalisedVideoTrack, PatternVideoTrack, ToneAudioTrack, track_label

__all__ = ["MediaSource", "open_source"]

log = logging.getLogger(__name__)


class MediaSource:
    """Camera (``video``, ``yuv420p`` at the video size) and microphone
    (``audio``) of one member, read by one consumer each (the hub's or the
    peer's :class:`~aiortc.contrib.media.MediaRelay`)."""

    def __init__(
        self,
        member: str,
        settings: MediaSettings,
        video: MediaStreamTrack,
        audio: MediaStreamTrack,
        still: Callable[[], VideoFrame | None],
        *,
        players: tuple[MediaPlayer, ...] = (),
    ) -> None:
        self.member = member
        self.settings = settings
        self.video = video
        self.audio = audio
        self._still = still
        self._players = players
        self._screens: list[PatternVideoTrack] = []

    @property
    def latest_frame(self) -> VideoFrame | None:
        """The last frame the camera yielded (the self view)."""
        frame = getattr(self.video, "latest", None)
        return frame if isinstance(frame, VideoFrame) else None

    async def capture_still(self) -> Image:
        """takePhoto (SPEC §4.4): a JPEG of the camera at its full resolution."""
        frame = self._still()
        if frame is None:
            raise NoFrameError("the camera has not produced a frame yet; try again in a moment")
        return await encode_jpeg_async(frame, self.settings.jpeg_quality)

    def screen_track(self) -> PatternVideoTrack:
        """A synthetic screen to share (inviteShare), light grey with a window
        and lines of text, unlike any camera pattern."""
        s = self.settings
        painter = PatternPainter(s.video_width, s.video_height, colour_for(self.member), "screen")
        track = PatternVideoTrack(painter, s.fps, track_id=track_label(self.member, "screen"))
        self._screens.append(track)
        return track

    def stop(self) -> None:
        """Stop every track (and with them any device or file reader)."""
        for track in (self.video, self.audio, *self._screens):
            track.stop()
        for player in self._players:
            for t in (player.audio, player.video):
                if t is not None:
                    t.stop()


def open_source(
    settings: MediaSettings, member: str, *, rgb: tuple[int, int, int] | None = None
) -> MediaSource:
    """The camera and microphone ``settings.source`` names, for ``member``."""
    spec = settings.source_spec
    colour = rgb if rgb is not None else colour_for(member)
    if spec.kind == "pattern":
        return _pattern_source(settings, member, colour)
    assert spec.path is not None
    if spec.kind == "device":
        if settings.audio_input is not None:  # before touching any device
            _check_input(settings.audio_input.partition(":")[0], "microphone")
        size = f"{settings.photo_width}x{settings.photo_height}"
        options = {"video_size": size, "framerate": str(settings.fps), **settings.input_options}
        camera = _player(spec.path, "v4l2", options, what="camera")
        if camera.video is None:
            raise MediaError(f"{spec.path} gave no video; is it a camera (v4l2)?")
        players = [camera]
        audio: MediaStreamTrack
        if settings.audio_input is not None:
            fmt, _, device = settings.audio_input.partition(":")
            mic = _player(device or "default", fmt, {}, what="microphone")
            if mic.audio is None:
                raise MediaError(f"{settings.audio_input} gave no audio")
            players.append(mic)
            audio = LabelledTrack(mic.audio, track_label(member, "mic"))
        else:
            audio = ToneAudioTrack(track_id=track_label(member, "mic"))
        video = NormalisedVideoTrack(
            camera.video, settings.video_width, settings.video_height, track_id=track_label(member, "camera")
        )
        return MediaSource(
            member, settings, video, audio, lambda: video.latest_native, players=tuple(players)
        )
    # a file, looped
    player = _player(spec.path, None, dict(settings.input_options), what="media file", loop=True)
    if player.video is None:
        raise MediaError(f"{spec.path} has no video stream")
    video = NormalisedVideoTrack(
        player.video, settings.video_width, settings.video_height, track_id=track_label(member, "camera")
    )
    if player.audio is not None:
        audio = LabelledTrack(player.audio, track_label(member, "mic"))
    else:
        audio = ToneAudioTrack(track_id=track_label(member, "mic"))
    return MediaSource(member, settings, video, audio, lambda: video.latest_native, players=(player,))


def _pattern_source(settings: MediaSettings, member: str, rgb: tuple[int, int, int]) -> MediaSource:
    painter = PatternPainter(settings.video_width, settings.video_height, rgb)
    video = PatternVideoTrack(painter, settings.fps, track_id=track_label(member, "camera"))
    audio = ToneAudioTrack(tone_for(member), track_id=track_label(member, "mic"))
    photo = PatternPainter(settings.photo_width, settings.photo_height, rgb)

    def still() -> VideoFrame:
        return photo.paint(max(0, video.counter))

    return MediaSource(member, settings, video, audio, still)


def _check_input(fmt: str, what: str) -> None:
    if not any(fmt in name.split(",") for name in av.formats_available):
        raise MediaError(
            f"this PyAV build has no {fmt!r} input for the {what}; "
            "use alsa:<device> (alsa:pulse reaches PulseAudio through its ALSA plugin)"
        )


def _player(
    path: str, fmt: str | None, options: dict[str, str], *, what: str, loop: bool = False
) -> MediaPlayer:
    if fmt is not None:
        _check_input(fmt, what)
    try:
        return MediaPlayer(path, format=fmt, options=options, loop=loop)
    except (OSError, av.FFmpegError) as exc:
        raise MediaError(f"cannot open the {what} {path!r}: {exc}; check the path and permissions") from exc
