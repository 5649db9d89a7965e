"""The plugin's window, as a model (SPEC §4.1).

The spec's window APIs act on the plugin's own window: ``startup`` shows it,
``setWindowSize`` sizes it, ``minimize`` / ``restore`` fold and unfold it,
``quit`` ends the plugin. This module is the headless model of that window:
its geometry and state, changed only through :meth:`Window.apply`, reported
by :meth:`Window.snapshot` (the ``getWindow`` query). The desktop window of a
later issue draws this model; it never keeps a state of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["DEFAULT_SIZE", "Window", "WindowState"]

log = logging.getLogger("kefu.plugin.window")

DEFAULT_SIZE = (800, 600)


@dataclass(frozen=True, slots=True)
class WindowState:
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    minimized: bool = False
    visible: bool = True
    closed: bool = False
    #: the page's ``videoBarVisible`` from the client's hello; None: the plugin's default
    #: (``--no-video-bar``). Not in the getWindow snapshot (the spec's fields only).
    video_bar: bool | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "minimized": self.minimized,
            "visible": self.visible,
        }


class Window:
    """The window model. Every change goes through :meth:`_set`, which logs
    it and tells the listeners (the desktop window, when there is one)."""

    def __init__(self, state: WindowState | None = None) -> None:
        self._state = state or WindowState()
        self._listeners: list[Callable[[WindowState, WindowState], None]] = []

    @property
    def state(self) -> WindowState:
        return self._state

    def snapshot(self) -> dict[str, Any]:
        return self._state.as_json()

    def on_change(self, listener: Callable[[WindowState, WindowState], None]) -> None:
        self._listeners.append(listener)

    def _set(self, new: WindowState) -> WindowState:
        old, self._state = self._state, new
        if old != new:
            log.info("window %s -> %s", old.as_json(), new.as_json())
            for listener in list(self._listeners):
                try:
                    listener(old, new)
                except Exception:
                    log.exception("window listener failed")
        return new

    # --- SPEC §4.1

    def startup(self) -> WindowState:
        """``startup``: the plugin is running; show its window in front."""
        return self._set(replace(self._state, visible=True, minimized=False))

    def set_size(self, width: int, height: int) -> WindowState:
        """``setWindowSize``: the sizes are validated by ``SetWindowSizeParams``."""
        return self._set(replace(self._state, width=width, height=height))

    def minimize(self) -> WindowState:
        return self._set(replace(self._state, minimized=True))

    def restore(self) -> WindowState:
        return self._set(replace(self._state, minimized=False, visible=True))

    def set_video_bar(self, visible: bool) -> WindowState:
        """``new IMClient({videoBarVisible})`` (SPEC §3.1): the page shows or hides the bar."""
        return self._set(replace(self._state, video_bar=visible))

    def close(self) -> WindowState:
        """``quit``: the window goes away with the plugin."""
        return self._set(replace(self._state, visible=False, closed=True))
