"""``new IMClient({videoBarVisible})`` reaches the plugin's window (issue 21).

The page's value travels in the client's hello; the plugin's ``--no-video-bar``
only sets the default. Checked on the window as a person sees it: the control
bar's strip of the grabbed window is the bar with ``true``, and something else
with ``false``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QImage

from kefu.plugin.desktop import Desktop
from kefu.sdk import IMClient

from ..plugin.harness import Raw, wait_for

pytestmark = pytest.mark.desktop


def bar_strip(desktop: Desktop) -> QRect:
    """Where the control bar is drawn in the window (taken while it shows)."""
    desktop.set_video_bar_visible(True)
    desktop.window.layout().activate()
    rect = desktop.window.bar.geometry()
    assert rect.height() > 0 and rect.width() > 0
    return rect


def shows_bar(desktop: Desktop, strip: QRect) -> bool:
    """Does the grabbed window show the control bar in ``strip``? (pixels, not the widget flag)"""
    desktop.window.layout().activate()
    shot: QImage = desktop.grab().copy(strip)
    bar: QImage = desktop.window.bar.grab().toImage()
    if desktop.window.bar.isHidden():
        desktop.window.bar.setVisible(True)  # render the bar alone to compare with (then hide it again)
        bar = desktop.window.bar.grab().toImage()
        desktop.window.bar.setVisible(False)
        desktop.window.layout().activate()
        shot = desktop.grab().copy(strip)
    fmt = QImage.Format.Format_RGB888
    return bool(
        shot.convertToFormat(fmt) == bar.convertToFormat(fmt).copy(0, 0, strip.width(), strip.height())
    )


async def test_the_hello_hides_and_shows_the_bar(desktop: Desktop) -> None:
    strip = bar_strip(desktop)
    assert desktop.video_bar_visible and shows_bar(desktop, strip)  # the default (no --no-video-bar)
    plugin = desktop.plugin
    async with Raw.connect(plugin, hello=False) as raw:
        hello = {"token": plugin.token._value, "videoBarVisible": False}
        assert (await raw.call("h", "hello", hello))["subMark"] == "success"
        assert not desktop.video_bar_visible
        assert not shows_bar(desktop, strip)
        assert desktop.grab().save("/tmp/kefu-video-bar-false.png")
        assert (await raw.call("h2", "hello", {"videoBarVisible": True}))["subMark"] == "success"
        assert desktop.video_bar_visible and shows_bar(desktop, strip)


async def test_new_imclient_with_video_bar_false_hides_it(desktop: Desktop) -> None:
    strip = bar_strip(desktop)
    plugin = desktop.plugin
    connected: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client = IMClient(
        {
            "baseWsUrl": plugin.url,
            "ssoTo": "http://127.0.0.1:1/agent",
            "token": plugin.token._value,
            "videoBarVisible": False,
            "success": lambda data: connected.done() or connected.set_result(data),
        }
    )
    try:
        await wait_for(connected)
        assert not desktop.video_bar_visible
        assert not shows_bar(desktop, strip)
    finally:
        await client.aclose()


async def test_the_cli_default_holds_until_a_page_says(qapp: Any, plugin: Any) -> None:
    d = Desktop(plugin, video_bar=False, fps=50.0)  # kefu plugin --no-video-bar
    d.start()
    try:
        assert not d.video_bar_visible
        async with Raw.connect(plugin) as raw:  # a client that does not say: the default stays
            assert (await raw.call("w", "getWindow"))["subMark"] == "success"
            assert not d.video_bar_visible
            assert (await raw.call("h", "hello", {"videoBarVisible": True}))["subMark"] == "success"
            assert d.video_bar_visible
    finally:
        await plugin.aclose()
        d.closing_allowed = True
        d.window.close()
        d.window.deleteLater()
        qapp.processEvents()
