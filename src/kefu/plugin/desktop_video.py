"""The desktop window's video: the tiles, their layout, and the view that paints them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

if TYPE_CHECKING:  # kefu.media loads aiortc: the window imports it only with media
    from kefu.media import MediaPeer, MediaSource
    from kefu.media.frames import VideoFrame  # av's, through the only package that imports av
    from kefu.media.tracks import Role

__all__ = ["CallPicture", "Tile", "VideoView", "layout_tiles", "wanted_tiles"]


class CallPicture(Protocol):
    """What the window paints from: the media of the agent's current call, a
    :class:`~kefu.media.MediaHub` (it relays, ``media: "hub"``) or a
    :class:`~kefu.media.SfuMember` (``media: "sfu"``)."""

    @property
    def local(self) -> str: ...

    @property
    def members(self) -> tuple[str, ...]: ...

    @property
    def source(self) -> MediaSource | None: ...

    def peer(self, member: str) -> MediaPeer: ...

    def latest_frame(self, member: str, role: Role = "camera") -> VideoFrame: ...


@dataclass
class Tile:
    """One video on screen: a member's camera or screen."""

    member: str
    role: Role  # "camera" or "screen"
    label: str
    frame: object = None  # the av.VideoFrame last converted (identity: is it new?)
    image: QImage | None = None
    keep: object = None  # the RGB bytes the QImage points into
    frames: int = 0  # frames converted


def layout_tiles(kinds: list[str], width: int, height: int) -> list[QRect]:
    """Where each tile goes in a ``width`` x ``height`` view.

    ``kinds[i]`` is ``"main"`` (the large one: a remote member, or a share),
    ``"self"`` (the agent's own camera) or ``"tile"``. One main and the rest
    small: the main fills the view, the others a strip along the bottom right
    (the agent's self view in a two-party call). No main: a grid of equal tiles.
    """
    n = len(kinds)
    if n == 0 or width <= 0 or height <= 0:
        return []
    if kinds.count("main") == 1:
        rects: list[QRect] = []
        small_w, small_h = max(1, width // 4), max(1, height // 4)
        margin = max(2, width // 100)
        k = 0
        for kind in kinds:
            if kind == "main":
                rects.append(QRect(0, 0, width, height))
            else:
                x = width - margin - (k + 1) * (small_w + margin) + margin
                rects.append(QRect(max(0, x), height - small_h - margin, small_w, small_h))
                k += 1
        return rects
    cols = 1
    while cols * cols < n:
        cols += 1
    rows = (n + cols - 1) // cols
    tw, th = width // cols, height // rows
    return [QRect((i % cols) * tw, (i // cols) * th, tw, th) for i in range(n)]


class VideoView(QWidget):
    """Paints the tiles it is given; never waits for a frame."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tiles: list[Tile] = []
        self.kinds: list[str] = []
        self.idle_text = "no call"
        self.paints = 0
        self.paint_seconds = 0.0
        self.setMinimumSize(1, 1)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def show_tiles(self, tiles: list[Tile], kinds: list[str]) -> None:
        self.tiles, self.kinds = tiles, kinds
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        started = time.perf_counter()
        p = QPainter(self)
        try:
            p.fillRect(self.rect(), QColor(16, 16, 16))
            if not self.tiles:
                p.setPen(QColor(200, 200, 200))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.idle_text)
                return
            for tile, rect in zip(
                self.tiles, layout_tiles(self.kinds, self.width(), self.height()), strict=True
            ):
                p.fillRect(rect, QColor(40, 40, 40))
                if tile.image is not None:
                    size = tile.image.size().scaled(rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
                    target = QRect(0, 0, size.width(), size.height())
                    target.moveCenter(rect.center())
                    p.drawImage(target, tile.image)
                p.setPen(QColor(255, 255, 255))
                p.drawText(
                    rect.adjusted(4, 2, -4, -2),
                    Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                    tile.label,
                )
                p.setPen(QColor(90, 90, 90))
                p.drawRect(rect.adjusted(0, 0, -1, -1))
        finally:
            p.end()
            self.paints += 1
            self.paint_seconds += time.perf_counter() - started


def wanted_tiles(hub: CallPicture) -> tuple[list[tuple[str, Role, str]], list[str]]:
    """(member, role, label) of each tile, and its kind for :func:`layout_tiles`."""
    remotes = list(hub.members)
    shares: list[str] = []
    for member in remotes:
        peer = hub.peer(member)
        for rec in peer.received:
            if rec.label.role == "screen" and rec.latest is not None and rec.label.member not in shares:
                shares.append(rec.label.member)
    wanted: list[tuple[str, Role, str]] = []
    kinds: list[str] = []
    for member in shares[:1]:
        wanted.append((member, "screen", f"{member} — screen"))
        kinds.append("main")
    for member in remotes:
        wanted.append((member, "camera", member))
        kinds.append("main" if not shares and len(remotes) == 1 else "tile")
    wanted.append((hub.local, "camera", f"{hub.local} (you)"))
    kinds.append("self" if kinds.count("main") == 1 else "tile")
    return wanted, kinds
