"""The synthetic test pattern: a camera of one colour, a screen, a frame counter.

Painted straight into ``yuv420p`` planes (the format every encoder of a
:class:`~aiortc.contrib.media.MediaRelay` shares, so nothing is converted
later) without numpy: a background is computed once per size and copied per
frame, and only the counter is drawn on it.

The counter is drawn twice: as decimal seven-segment digits for a person,
and as a strip of :data:`COUNTER_BITS` black / white squares (most
significant bit first) that :func:`read_counter` reads back from a received
frame; squares of a few dozen pixels survive VP8 at any sane bit rate.
:func:`sample_rgb` gives the mean colour of a region below the counter, where
a camera pattern is one flat colour and a screen is light grey.
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from av import AudioFrame, VideoFrame
from PIL import ImageStat

from .frames import to_pil

__all__ = [
    "COLOURS",
    "COUNTER_BITS",
    "SCREEN_RGB",
    "TONES",
    "PatternPainter",
    "colour_for",
    "read_counter",
    "rgb_to_yuv",
    "sample_box",
    "sample_rgb",
    "tone_for",
    "tone_of",
]

COUNTER_BITS = 20
#: Camera pattern colours, distinct enough to tell members apart on a screen.
COLOURS: tuple[tuple[int, int, int], ...] = (
    (30, 90, 200),  # blue
    (40, 170, 60),  # green
    (200, 60, 50),  # red
    (200, 150, 30),  # amber
    (140, 60, 170),  # purple
    (30, 160, 170),  # teal
)
#: The background of the synthetic screen share.
SCREEN_RGB = (236, 236, 236)
_SCREEN_BAR = (40, 60, 110)
_SCREEN_TEXT = (150, 150, 150)
_WHITE = 235  # video-range Y
_BLACK = 16

Style = Literal["camera", "screen"]


def colour_for(name: str) -> tuple[int, int, int]:
    """A stable pattern colour for a member name."""
    return COLOURS[sum(name.encode()) % len(COLOURS)]


#: Test tone frequencies (Hz), one per colour: who is heard is checked by pitch.
TONES: tuple[int, ...] = (300, 450, 600, 750, 900, 1050)


def tone_for(name: str) -> int:
    """A stable tone frequency for a member name (the same index as its colour)."""
    return TONES[sum(name.encode()) % len(TONES)]


def tone_of(frames: Sequence[AudioFrame]) -> float:
    """The frequency (Hz) of the tone in ``frames`` (after any codec), from the zero
    crossings of their first channel: 0.0 for silence."""
    samples: list[int] = []
    rate = 0
    for frame in frames:
        if frame.format.name not in ("s16", "s16p"):
            raise ValueError(f"tone_of reads s16 audio, not {frame.format.name}")
        # packed: the channels interleaved in plane 0; planar: plane 0 is the first channel
        step = 1 if frame.format.is_planar else len(frame.layout.channels)
        pcm = array.array("h", bytes(frame.planes[0]))[: frame.samples * step]
        samples.extend(pcm[::step])
        rate = frame.sample_rate
    if not samples or rate <= 0 or max(abs(x) for x in samples) < 300:
        return 0.0
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings * rate / (2 * len(samples))


def rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 video range, as libswscale converts by default."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


@dataclass(frozen=True, slots=True)
class _Layout:
    width: int
    height: int
    cell: int  # side of a counter square, even

    @classmethod
    def of(cls, width: int, height: int) -> _Layout:
        cell = max(4, min(width // (COUNTER_BITS + 4), height // 10)) // 2 * 2
        return cls(width, height, cell)

    def bit_origin(self, i: int) -> tuple[int, int]:
        return 2 * self.cell + i * self.cell, self.cell


#: a region of the counter: ("bit" or "digit", x0, y0, x1, y1)
_Box = tuple[str, int, int, int, int]
#: a region's rows: (offset, bytes) of the Y plane; (offset, U bytes, V bytes) of the chroma
_Rows = tuple[list[tuple[int, bytes]], list[tuple[int, bytes, bytes]]]


def _even(x: float) -> int:
    return int(x) // 2 * 2


def sample_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The region (left, top, right, bottom) :func:`sample_rgb` averages."""
    return _even(width * 0.3), _even(height * 0.6), _even(width * 0.7), _even(height * 0.85)


class _Planes:
    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.y = bytearray(width * height)
        self.u = bytearray((width // 2) * (height // 2))
        self.v = bytearray((width // 2) * (height // 2))

    def fill(self, x0: int, y0: int, x1: int, y1: int, yuv: tuple[int, int, int]) -> None:
        """Fill the rectangle [x0, x1) x [y0, y1) (even corners) with one colour."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x0 >= x1 or y0 >= y1:
            return
        w, cw = self.width, self.width // 2
        row = bytes([yuv[0]]) * (x1 - x0)
        for yy in range(y0, y1):
            self.y[yy * w + x0 : yy * w + x1] = row
        urow = bytes([yuv[1]]) * ((x1 - x0) // 2)
        vrow = bytes([yuv[2]]) * ((x1 - x0) // 2)
        for yy in range(y0 // 2, y1 // 2):
            self.u[yy * cw + x0 // 2 : yy * cw + x1 // 2] = urow
            self.v[yy * cw + x0 // 2 : yy * cw + x1 // 2] = vrow

    def cut(self, x0: int, y0: int, x1: int, y1: int) -> _Rows:
        """The rectangle [x0, x1) x [y0, y1) (even corners) as slices of each plane."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        w, cw = self.width, self.width // 2
        luma = [(r * w + x0, bytes(self.y[r * w + x0 : r * w + x1])) for r in range(y0, y1)]
        chroma = [(r * cw + x0 // 2, r * cw + x1 // 2) for r in range(y0 // 2, y1 // 2)]
        return luma, [(a, bytes(self.u[a:b]), bytes(self.v[a:b])) for a, b in chroma]

    def put(self, rows: _Rows) -> None:
        """Put slices :meth:`cut` gave (of a plane of the same size) back where they were."""
        y, u, v = self.y, self.u, self.v
        for at, data in rows[0]:
            y[at : at + len(data)] = data
        for at, du, dv in rows[1]:
            u[at : at + len(du)] = du
            v[at : at + len(dv)] = dv

    def copy(self) -> _Planes:
        other = _Planes.__new__(_Planes)
        other.width, other.height = self.width, self.height
        other.y, other.u, other.v = bytearray(self.y), bytearray(self.u), bytearray(self.v)
        return other

    def to_frame(self) -> VideoFrame:
        frame = VideoFrame(self.width, self.height, "yuv420p")
        for plane, data, w in zip(
            frame.planes,
            (self.y, self.u, self.v),
            (self.width, self.width // 2, self.width // 2),
            strict=True,
        ):
            if plane.line_size == w:
                plane.update(bytes(data))
            else:  # rows padded to the plane's alignment
                pad = bytes(plane.line_size - w)
                rows = (bytes(data[i : i + w]) + pad for i in range(0, len(data), w))
                plane.update(b"".join(rows))
        return frame


# Seven segments: (x0, y0, x1, y1) in a 4 x 7 grid of "strokes".
_SEGMENTS = {
    "a": (0, 0, 4, 1),
    "b": (3, 0, 4, 4),
    "c": (3, 3, 4, 7),
    "d": (0, 6, 4, 7),
    "e": (0, 3, 1, 7),
    "f": (0, 0, 1, 4),
    "g": (0, 3, 4, 4),
}
_DIGITS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


class PatternPainter:
    """Paints frames of one pattern (camera colour or screen) at one size."""

    def __init__(self, width: int, height: int, rgb: tuple[int, int, int], style: Style = "camera") -> None:
        if width % 2 or height % 2:
            raise ValueError("pattern size must be even")
        self.width, self.height, self.rgb, self.style = width, height, rgb, style
        self._layout = _Layout.of(width, height)
        self._background = self._paint_background()
        self._stroke = max(2, self._layout.cell // 2 // 2 * 2)  # a digit's segment width
        self._planes = self._background.copy()  # the last frame painted, drawn over by the next
        self._last: int | None = None  # the counter on ``_planes``; None: the background alone
        self._glyphs: dict[tuple[_Box, str], _Rows] = {}

    def _paint_background(self) -> _Planes:
        w, h = self.width, self.height
        p = _Planes(w, h)
        if self.style == "camera":
            p.fill(0, 0, w, h, rgb_to_yuv(self.rgb))
        else:
            p.fill(0, 0, w, h, rgb_to_yuv(SCREEN_RGB))
            p.fill(0, _even(h * 0.42), w, _even(h * 0.48), rgb_to_yuv(_SCREEN_BAR))
            text = rgb_to_yuv(_SCREEN_TEXT)
            line = max(2, _even(h * 0.02))
            y = _even(h * 0.55)
            while y < h * 0.95:
                p.fill(_even(w * 0.1), y, _even(w * 0.7), y + line, text)
                y += max(4, _even(h * 0.08))
        # the counter's panel: black, so white squares and digits stand out
        c = self._layout.cell
        p.fill(c, c // 2, 2 * c + COUNTER_BITS * c + c, 7 * c + c // 2, (_BLACK, 128, 128))
        return p

    def paint(self, counter: int) -> VideoFrame:
        """A frame showing ``counter`` (not negative).

        Drawn over the previous frame: only the squares and digits that differ from
        the last counter painted are put again, each as the rows of its box painted
        once on the background (cached), so the pixels are those of the counter
        painted on a fresh background, for a few row copies a frame."""
        if counter < 0:
            raise ValueError("a pattern's counter is not negative")
        last = self._last
        for i in range(COUNTER_BITS):
            bit = counter >> (COUNTER_BITS - 1 - i) & 1
            if last is None or bit != last >> (COUNTER_BITS - 1 - i) & 1:
                self._put(self._bit_box(i), "1" if bit else "")
        digits, before = str(counter), "" if last is None else str(last)
        for k in range(max(len(digits), len(before))):
            ch = digits[k] if k < len(digits) else ""
            if k >= len(before) or before[k] != ch:
                self._put(self._digit_box(k), ch)
        self._last = counter
        return self._planes.to_frame()

    def _bit_box(self, i: int) -> _Box:
        x, y = self._layout.bit_origin(i)
        c = self._layout.cell
        return ("bit", x, y, x + c, y + c)

    def _digit_box(self, k: int) -> _Box:
        """The region of the ``k``-th digit: the 4 x 7 strokes its segments can cover."""
        c, s = self._layout.cell, self._stroke
        x = 2 * c + k * 6 * s
        return ("digit", x, 3 * c, x + 4 * s, 3 * c + 7 * s)

    def _put(self, box: _Box, glyph: str) -> None:
        """Put ``glyph`` ("" for none; "1" for a white square; a decimal digit) in ``box``."""
        rows = self._glyphs.get((box, glyph))
        if rows is None:
            kind, x0, y0, x1, y1 = box
            scratch = self._background.copy()
            if kind == "bit" and glyph:
                scratch.fill(x0, y0, x1, y1, (_WHITE, 128, 128))
            elif kind == "digit" and glyph:
                s = self._stroke
                for seg in _DIGITS[int(glyph)]:
                    sx0, sy0, sx1, sy1 = _SEGMENTS[seg]
                    scratch.fill(x0 + sx0 * s, y0 + sy0 * s, x0 + sx1 * s, y0 + sy1 * s, (_WHITE, 128, 128))
            rows = self._glyphs[(box, glyph)] = scratch.cut(x0, y0, x1, y1)
        self._planes.put(rows)


def read_counter(frame: VideoFrame) -> int:
    """The counter a :class:`PatternPainter` drew on ``frame`` (after any codec)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    layout = _Layout.of(frame.width, frame.height)
    plane = frame.planes[0]
    data = memoryview(plane).cast("B")
    stride = plane.line_size
    half = layout.cell // 2
    value = 0
    for i in range(COUNTER_BITS):
        x, y = layout.bit_origin(i)
        cx, cy = x + half, y + half
        luma = (data[cy * stride + cx] + data[cy * stride + cx - 1] + data[(cy - 1) * stride + cx]) / 3
        value = value << 1 | (luma > 128)
    return value


def sample_rgb(frame: VideoFrame) -> tuple[int, int, int]:
    """The mean RGB colour of :func:`sample_box` in ``frame``."""
    image = to_pil(frame).crop(sample_box(frame.width, frame.height))
    r, g, b = (round(x) for x in ImageStat.Stat(image).mean[:3])
    return r, g, b
