"""The desktop window draws the plugin: geometry, minimised and restored,
who is logged in and the state code, the sessions count, closing by hand.

Every request here is a real SDK connection (``Raw``) to the real plugin,
linked to the real server on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox

from kefu.plugin import Plugin
from kefu.plugin.desktop import Desktop, layout_tiles, state_text

from ..plugin.harness import Raw, ServerHandle, Visitor, login_url, wait_for

pytestmark = pytest.mark.desktop


async def _login(raw: Raw, plugin: Plugin, **extra: Any) -> dict[str, Any]:
    url = login_url(plugin.settings.server_origin, "a1")
    reply = await raw.call("login", "startLogin", {"data": {"url": url}, **extra})
    assert reply["subMark"] == "success", reply
    return reply


async def test_set_window_size_sizes_the_window_strings_or_numbers(desktop: Desktop) -> None:
    w = desktop.window
    assert w.isVisible() and not w.isMinimized()
    async with Raw.connect(desktop.plugin) as raw:
        reply = await raw.call("1", "setWindowSize", {"width": "300", "height": "400"})
        assert reply["subMark"] == "success"
        assert (w.width(), w.height()) == (300, 400)
        reply = await raw.call("2", "setWindowSize", {"width": 1024, "height": 700})
        assert reply["payload"]["width"] == 1024
        assert (w.width(), w.height()) == (1024, 700)
        # a bad size changes nothing and the next good request works
        bad = await raw.call("3", "setWindowSize", {"width": "-5", "height": "400"})
        assert bad["subMark"] == "error"
        assert (w.width(), w.height()) == (1024, 700)
        window = await raw.call("4", "getWindow")
        assert window["payload"] == {"width": 1024, "height": 700, "minimized": False, "visible": True}


async def test_minimize_and_restore_act_on_the_window(desktop: Desktop) -> None:
    w = desktop.window
    async with Raw.connect(desktop.plugin) as raw:
        reply = await raw.call("1", "minimize")
        assert reply["payload"]["minimized"] is True
        assert w.isMinimized()
        reply = await raw.call("2", "restore")
        assert reply["payload"]["minimized"] is False
        assert not w.isMinimized() and w.isVisible()


async def test_minimized_by_hand_is_what_getWindow_tells(desktop: Desktop) -> None:
    w = desktop.window
    w.showMinimized()
    assert desktop.plugin.window.state.minimized
    async with Raw.connect(desktop.plugin) as raw:
        reply = await raw.call("1", "getWindow")
        assert reply["payload"]["minimized"] is True
    w.showNormal()
    assert not desktop.plugin.window.state.minimized
    w.resize(640, 360)
    assert desktop.plugin.window.snapshot()["width"] == 640


async def test_start_login_with_minimize_minimizes_the_window(desktop: Desktop) -> None:
    async with Raw.connect(desktop.plugin) as raw:
        await _login(raw, desktop.plugin, minimize=True)
        assert desktop.window.isMinimized()
        await raw.call("r", "restore")
        assert not desktop.window.isMinimized()


async def test_the_window_shows_the_agent_the_state_and_the_sessions(
    desktop: Desktop, kefu_server: ServerHandle
) -> None:
    w = desktop.window
    assert w.agent_label.text() == "agent: not logged in"
    assert w.state_label.text() == "state: " + state_text("000000")
    assert "not logged in" in w.state_label.text()
    async with Raw.connect(desktop.plugin) as raw:
        await _login(raw, desktop.plugin)
        assert w.agent_label.text() == "agent: a1"
        reply = await raw.call("s", "setAgentState", {"state": "idle"})
        assert reply["subMark"] == "success", reply
        assert desktop.plugin.state == "002000"
        assert w.state_label.text().startswith("state: 002000 ")
        # the sessions count follows the assignments (asked with sessionCount)
        async with Visitor.connect(kefu_server, "v1") as v:
            await v.say("hello")
            await raw.push("event", "sessionAssigned")
            await wait_for(desktop.until(lambda: desktop.sessions == 1))
            assert w.sessions_label.text() == "sessions in progress: 1"
        await raw.call("o", "logout")
        await wait_for(desktop.until(lambda: w.agent_label.text() == "agent: not logged in"))
        assert w.state_label.text().startswith("state: 000000 ")


async def test_closing_by_hand_outside_a_call_quits_and_the_sdk_hears_it(desktop: Desktop) -> None:
    async with Raw.connect(desktop.plugin) as raw:
        assert not desktop.in_call()
        desktop.window.close()  # as the title bar's close button does
        quit_push = await raw.push("client", "quit")
        assert quit_push["payload"] == {"reason": "window closed"}
        await wait_for(desktop.plugin.wait_stopped())
        assert not desktop.window.isVisible()


async def test_closing_by_hand_in_a_call_asks_first(desktop: Desktop) -> None:
    plugin = desktop.plugin
    plugin.state = "006001"  # as the server's push sets it: a two-party call
    desktop.window.close()
    box = desktop.question
    assert isinstance(box, QMessageBox) and box.isVisible()
    box.button(QMessageBox.StandardButton.No).click()
    assert desktop.question is None
    assert desktop.window.isVisible() and not plugin.window.state.closed
    desktop.window.close()
    box = desktop.question
    assert box is not None
    async with Raw.connect(plugin) as raw:
        box.button(QMessageBox.StandardButton.Yes).click()
        await raw.push("client", "quit")
    await wait_for(plugin.wait_stopped())


def test_layout_two_party_main_and_self_three_party_tiles() -> None:
    main, small = layout_tiles(["main", "self"], 800, 600)
    assert (main.width(), main.height()) == (800, 600)
    assert small.width() == 200 and small.bottom() < 600 and small.right() < 800
    tiles = layout_tiles(["tile", "tile", "tile"], 800, 600)
    assert len(tiles) == 3 and len({(t.x(), t.y()) for t in tiles}) == 3
    assert all(t.width() == 400 and t.height() == 300 for t in tiles)
    assert layout_tiles([], 800, 600) == []
