"""The plugin's desktop window (SPEC §3.1 ``videoBarVisible``, §4.1), with PySide6.

Theory of operation
-------------------
The window draws the plugin; it keeps no state of its own that the plugin
does not have. :class:`Desktop` binds one :class:`~kefu.plugin.app.Plugin`
to one :class:`DesktopWindow`:

- **Geometry.** The plugin's :class:`~kefu.plugin.window.Window` model is the
  truth: ``setWindowSize``/``minimize``/``restore``/``startup``/``quit`` change
  the model (as in headless mode) and the model's listener applies the change
  to the Qt window. What the person does by hand (resize, minimise) is written
  back into the model, so ``getWindow`` tells the page what is on screen.
- **What is shown.** The agent's name, the state code and its meaning, and the
  number of sessions in progress, refreshed on every message the SDKs are told
  (``Plugin.observers``); the sessions count is asked with ``sessionCount``
  through the same request path as an SDK's.
- **Video.** During a call the call's media (``media()``, by default the plugin's
  ``call_media``, set while a call has media: a :class:`CallPicture`) gives each member's latest
  frame. A refresh task pulls the latest frame of each tile ``fps`` times a
  second, converts only frames it has not seen (``MediaHub.latest_rgb``'s
  packed RGB straight into a ``QImage``, no copy), and asks Qt to repaint.
  Nothing waits for a paint: frames that arrive between two refreshes are
  dropped, a slow paint coalesces repaints, and signalling never waits.
  Layout: one remote member large with the agent small on top; three or more
  members as tiles; a screen share large, the cameras as a strip.
- **Control bar** (shown when ``videoBarVisible``): hang up, snapshot, photo and
  ask-for-share run the SDK's own marks (``videoDisconnect``, ``snapshot``,
  ``takePhoto``, ``inviteShare``) through :meth:`Plugin.handle`, so the server,
  the state codes and every SDK's callbacks are exactly those of the API. The
  outcome is told to the SDKs as a ``client``/``windowAction`` event. Mute and
  camera pause and resume the hub's local tracks (no SDK API has them).
- **Closing by hand** asks first when a call is in progress, hangs up
  (``videoDisconnect``), then quits the plugin (``client``/``quit`` to the SDKs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QMessageBox,
)

from kefu.protocol import CODE_INFO, Request, TopState, decode_request, parse_code
from kefu.protocol.client_session import Answer, ClientSession
from kefu.protocol.codes import top_state
from kefu.protocol.errors import ErrorCode
from kefu.protocol.machine import IN_CALL
from kefu.protocol.plugin_api import PLUGIN_API, is_final
from kefu.protocol.wire import Json, error_message

from .app import Plugin, client_event
from .desktop_video import CallPicture, Tile, VideoView, layout_tiles, wanted_tiles
from .desktop_window import BAR_ACTIONS, DesktopWindow
from .window import Window, WindowState

if TYPE_CHECKING:
    pass

__all__ = ["BAR_ACTIONS", "CALL_STATES", "Desktop", "DesktopWindow", "Tile", "VideoView", "layout_tiles"]

log = logging.getLogger("kefu.plugin.desktop")

#: Top-level states in which a call is in progress (closing by hand asks first): the
#: machine's in-call states but ringing (an incoming call not picked up has nothing to hang up).
CALL_STATES = IN_CALL - {TopState.ringing}


def state_text(code: str) -> str:
    """``"002000 idle / ready (闲)"``: a code and its meaning."""
    try:
        info = CODE_INFO[parse_code(code)]
    except (ValueError, KeyError):
        return code
    return f"{code} {info.meaning} ({info.meaning_zh})"


# --------------------------------------------------------------------- the binding


@dataclass
class _Outcome:
    """The answers to one request of the window."""

    mark: str
    messages: list[Json] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _WindowConnection:
    """The window as a client of :meth:`Plugin.handle`: the answers to its own
    requests come back here (it is a :class:`~kefu.plugin.host.Replier`, as an
    SDK's ``ControlConnection`` is)."""

    def __init__(self, desktop: Desktop) -> None:
        self.desktop = desktop

    def reply(self, msg: Json) -> None:
        if "state" not in msg:
            msg["state"] = self.desktop.plugin.state
        self.desktop._answer(msg)

    def __repr__(self) -> str:
        return "<the desktop window>"


class Desktop:
    """Binds a :class:`Plugin` to its :class:`DesktopWindow` (see the module's docstring)."""

    def __init__(
        self,
        plugin: Plugin,
        *,
        video_bar: bool = True,
        fps: float = 15.0,
        media: Callable[[], CallPicture | None] | None = None,
        answer_timeout: float = 10.0,
    ) -> None:
        self.plugin = plugin
        self.fps = fps
        self.answer_timeout = answer_timeout
        self.media = media if media is not None else (lambda: plugin.call_media)
        self.sessions: int | None = None
        self.closing_allowed = False
        self.question: QMessageBox | None = None
        self.outcomes: list[Json] = []  # every final answer of a bar action, in order
        self.muted = False
        self.camera_off = False
        # the window's own requests, answered through the same session rules as an SDK's
        self._requests: ClientSession[_Outcome] = ClientSession(
            prefix="window-", final=is_final, ordered=False
        )
        self._conn = _WindowConnection(self)
        self._tiles: dict[tuple[str, str], Tile] = {}
        self._sessions_task: asyncio.Task[None] | None = None
        self._sessions_dirty = False
        self._refresh_task: asyncio.Task[None] | None = None
        self._frame_seen = asyncio.Event()
        self._shown = asyncio.Event()
        self.window = DesktopWindow(self)
        self.set_video_bar_visible(video_bar)
        plugin.window.on_change(self._model_changed)
        plugin.observers.append(self._observe)
        self._apply(plugin.window.state)
        self.show_status()

    # --- life

    @property
    def model(self) -> Window:
        """The plugin's window model: the truth the Qt window follows."""
        return self.plugin.window

    def start(self) -> None:
        """Show the window and start refreshing its video."""
        self._apply(self.plugin.window.state)
        if self._refresh_task is None:
            self._refresh_task = self.plugin.spawn(self._refresh_loop())
        if self.plugin.agent is not None:
            self._want_sessions()

    def set_video_bar_visible(self, visible: bool) -> None:
        """``videoBarVisible`` (SPEC §3.1): show or hide the control bar."""
        self.window.bar.setVisible(visible)

    @property
    def platform(self) -> str:
        """Qt's platform: ``xcb``, ``wayland``, ``offscreen`` ..."""
        from PySide6.QtGui import QGuiApplication

        return str(QGuiApplication.platformName())

    @property
    def video_bar_visible(self) -> bool:
        return not self.window.bar.isHidden()

    # --- the model → the Qt window

    def _model_changed(self, old: WindowState, new: WindowState) -> None:
        self._apply(new)

    def _apply(self, s: WindowState) -> None:
        w = self.window
        if s.closed:
            self.closing_allowed = True
            w.close()
            return
        if (w.width(), w.height()) != (s.width, s.height):
            w.resize(s.width, s.height)
        if s.video_bar is not None and s.video_bar != self.video_bar_visible:
            self.set_video_bar_visible(s.video_bar)  # the page's videoBarVisible beats the default
        if not s.visible:
            w.hide()
        elif s.minimized:
            if not w.isMinimized():
                w.showMinimized()
        elif w.isMinimized() or not w.isVisible():
            w.showNormal()

    # --- the person → the model

    def window_resized(self, width: int, height: int) -> None:
        s = self.plugin.window.state
        if not s.closed and (width, height) != (s.width, s.height) and not self.window.isMinimized():
            self.plugin.window.set_size(max(1, width), max(1, height))

    def window_state_changed(self, minimized: bool) -> None:
        s = self.plugin.window.state
        if s.closed or minimized == s.minimized:
            return
        if minimized:
            self.plugin.window.minimize()
        else:
            self.plugin.window.restore()

    def close_requested(self) -> None:
        """The person closed the window: ask first during a call, then hang up and quit."""
        if self.plugin.window.state.closed:
            return
        if not self.in_call():
            self.plugin.spawn(self.plugin.quit("window closed"))
            return
        if self.question is not None:
            return
        box = QMessageBox(self.window)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("kefu plugin")
        box.setText("A call is in progress. Hang up and quit?")
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.finished.connect(lambda result: self._answered(box, result))
        self.question = box
        box.open()

    def _answered(self, box: QMessageBox, result: int) -> None:
        self.question = None
        if box.clickedButton() is box.button(QMessageBox.StandardButton.Yes):
            self.plugin.spawn(self._hang_up_and_quit())

    async def _hang_up_and_quit(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.request("videoDisconnect")
        await self.plugin.quit("window closed")

    def in_call(self) -> bool:
        try:
            top = top_state(self.plugin.state)
        except ValueError:
            return False
        return top in CALL_STATES or self.media() is not None

    # --- what is shown

    def _observe(self, msg: Json) -> None:
        self.show_status()
        mark, sub = msg.get("mark"), msg.get("subMark")
        if (mark == "client" and sub == "kefuReady") or (
            mark in ("event", "initInnerCallBack")
            and sub in ("sessionAssigned", "chatCloseCB", "sessionClosed")
        ):
            self._want_sessions()
        elif mark == "client" and sub == "ssoReady":
            self.sessions = None
            self.show_status()

    def show_status(self) -> None:
        agent = self.plugin.agent
        name = agent.get("name") if isinstance(agent, dict) else None
        self.window.agent_label.setText(f"agent: {name}" if name else "agent: not logged in")
        self.window.state_label.setText(f"state: {state_text(self.plugin.state)}")
        count = "—" if self.sessions is None else str(self.sessions)
        self.window.sessions_label.setText(f"sessions in progress: {count}")
        self._shown.set()

    async def until(self, check: Callable[[], bool]) -> None:
        """Until ``check()`` holds, looked at after each change of what is shown."""
        while not check():
            self._shown.clear()
            await self._shown.wait()

    def _want_sessions(self) -> None:
        self._sessions_dirty = True
        if self._sessions_task is None or self._sessions_task.done():
            self._sessions_task = self.plugin.spawn(self._ask_sessions())

    async def _ask_sessions(self) -> None:
        while self._sessions_dirty and self.plugin.agent is not None:
            self._sessions_dirty = False
            try:
                answer = await self.request("sessionCount")
            except TimeoutError:
                continue
            payload = answer.get("payload")
            count = payload.get("sessionCount") if isinstance(payload, dict) else None
            if isinstance(count, int) and not isinstance(count, bool):
                self.sessions = count
                self.show_status()

    # --- requests through the SDK's path

    async def request(self, mark: str, params: Json | None = None) -> Json:
        """Run ``mark`` as an SDK would (decoded by the same rules, answered by
        :meth:`Plugin.handle`); the final answer. Raises TimeoutError."""
        outcome = _Outcome(mark)
        rid, text = self._requests.request(mark, params or {}, outcome)
        try:
            req: Request = decode_request(text, PLUGIN_API)
            async with asyncio.timeout(self.answer_timeout):
                await self.plugin.handle(self._conn, req)
                await outcome.done.wait()
        finally:
            self._requests.forget(rid)
        return outcome.messages[-1]

    def _answer(self, msg: Json) -> None:
        got = self._requests.receive_message(msg)
        if isinstance(got, Answer):
            got.pending.tag.messages.append(msg)
            got.pending.tag.done.set()

    def bar_action(self, name: str) -> None:
        """A button of the control bar."""
        if name == "mute":
            self.set_muted(not self.muted)
        elif name == "camera":
            self.set_camera_off(not self.camera_off)
        else:
            self.plugin.spawn(self.run_action(name))

    async def run_action(self, mark: str) -> Json:
        """Run the SDK API ``mark`` for a button; tell the SDKs and the window the outcome."""
        self.window.message_label.setText(f"{mark}…")
        try:
            answer = await self.request(mark)
        except TimeoutError:
            answer = error_message(mark, ErrorCode.timeout, "no answer")
        outcome = {k: v for k, v in answer.items() if k not in ("v", "id")}
        self.outcomes.append(outcome)
        self.plugin.broadcast(client_event("windowAction", outcome))
        sub = outcome.get("subMark")
        error = outcome.get("error")
        if isinstance(error, dict):
            self.window.message_label.setText(f"{mark}: {error.get('msg') or error.get('code')}")
        else:
            self.window.message_label.setText(f"{mark}: {sub}")
        return answer

    def _local_tracks(self) -> tuple[Any, Any]:
        hub = self.media()
        source = hub.source if hub is not None else None
        if source is None:
            return None, None
        return source.audio, source.video

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        self.window.actions_by_name["mute"].setChecked(muted)
        self.window.actions_by_name["mute"].setText("Unmute" if muted else "Mute")
        self._apply_tracks()

    def set_camera_off(self, off: bool) -> None:
        self.camera_off = off
        self.window.actions_by_name["camera"].setChecked(off)
        self.window.actions_by_name["camera"].setText("Camera on" if off else "Camera off")
        self._apply_tracks()

    def _apply_tracks(self) -> None:
        audio, video = self._local_tracks()
        for track, off in ((audio, self.muted), (video, self.camera_off)):
            if track is None or not hasattr(track, "pause"):
                continue
            if off and not track.paused:
                track.pause()
            elif not off and track.paused:
                track.resume()

    # --- video

    def refresh_video(self) -> bool:
        """Pull the latest frame of each tile; True when a new one was converted."""
        from kefu.media import MediaError, to_rgb

        hub = self.media()
        if hub is None:
            if self._tiles:
                self._tiles.clear()
                self.window.video.show_tiles([], [])
            return False
        self._apply_tracks()
        wanted, kinds = wanted_tiles(hub)
        tiles: list[Tile] = []
        changed = False
        for member, role, label in wanted:
            tile = self._tiles.get((member, role))
            if tile is None:
                tile = self._tiles[(member, role)] = Tile(member, role, label)
            tiles.append(tile)
            try:
                frame = hub.latest_frame(member, role)
            except MediaError:
                continue
            if frame is tile.frame:
                continue  # nothing new: no conversion
            rgb = to_rgb(frame)
            tile.frame, tile.keep = frame, rgb.data
            tile.image = QImage(rgb.data, rgb.width, rgb.height, rgb.stride, QImage.Format.Format_RGB888)
            tile.frames += 1
            changed = True
        gone = set(self._tiles) - {(m, r) for m, r, _ in wanted}
        for key in gone:
            del self._tiles[key]
        if changed or gone or kinds != self.window.video.kinds:
            self.window.video.show_tiles(tiles, kinds)
        if changed:
            self._frame_seen.set()
        return changed

    async def frame_shown(self) -> None:
        """Until the next refresh that converted a new frame."""
        self._frame_seen.clear()
        await self._frame_seen.wait()

    def tile(self, member: str, role: str = "camera") -> Tile | None:
        return self._tiles.get((member, role))

    async def _refresh_loop(self) -> None:
        period = 1.0 / self.fps
        while True:
            try:
                self.refresh_video()
            except Exception:
                log.exception("video refresh failed")
            await asyncio.sleep(period)

    def grab(self) -> QImage:
        """The window as an image (what a person sees)."""
        return self.window.grab().toImage()
