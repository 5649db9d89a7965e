"""Frames out of the media layer: JPEG images (snapshot, photo) and RGB pixels
for the window.

A JPEG of a 640x480 frame takes about 2 ms: the async helpers run it in a
worker thread all the same, so a 1080p photo never holds the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from av import VideoFrame
from PIL import Image as PILImage

__all__ = ["Image", "RgbImage", "VideoFrame", "encode_jpeg", "encode_jpeg_async", "to_pil", "to_rgb"]


@dataclass(frozen=True, slots=True)
class Image:
    """A JPEG image: a snapshot (SPEC §4.4) or a photo."""

    jpeg: bytes
    width: int
    height: int

    @property
    def base64(self) -> str:
        return base64.b64encode(self.jpeg).decode("ascii")

    def to_payload(self) -> dict[str, Any]:
        """``{"base64", "width", "height", "mime"}``: the snapshot / takePhoto data."""
        return {"base64": self.base64, "width": self.width, "height": self.height, "mime": "image/jpeg"}


@dataclass(frozen=True, slots=True)
class RgbImage:
    """Packed 8-bit RGB rows, ``stride`` bytes apart: ready for
    ``QImage(data, width, height, stride, QImage.Format.Format_RGB888)``."""

    data: bytes
    width: int
    height: int
    stride: int


def to_pil(frame: VideoFrame) -> PILImage.Image:
    """``frame`` as a Pillow RGB image (PyAV's ``to_image`` is ~10x slower)."""
    rgb = to_rgb(frame)
    return PILImage.frombuffer("RGB", (rgb.width, rgb.height), rgb.data, "raw", "RGB", rgb.stride, 1)


def encode_jpeg(frame: VideoFrame, quality: int = 90) -> Image:
    """``frame`` as a JPEG at its own resolution."""
    out = io.BytesIO()
    to_pil(frame).save(out, format="JPEG", quality=quality)
    return Image(out.getvalue(), frame.width, frame.height)


# Not the loop's default executor: aiortc encodes every video frame there, and
# a snapshot queued behind them waits tens of milliseconds.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kefu-jpeg")


async def encode_jpeg_async(frame: VideoFrame, quality: int = 90) -> Image:
    return await asyncio.get_running_loop().run_in_executor(_POOL, encode_jpeg, frame, quality)


def to_rgb(frame: VideoFrame) -> RgbImage:
    """``frame`` as packed RGB."""
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    return RgbImage(bytes(plane), rgb.width, rgb.height, plane.line_size)
