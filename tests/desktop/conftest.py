"""Fixtures of the desktop window's tests: Qt offscreen, a plugin with its window.

The Qt application is made once per process with ``QT_QPA_PLATFORM=offscreen``
(set here, before Qt loads a platform). The in-process tests run on
pytest-asyncio's loop: widgets, geometry and ``grab()`` need no running Qt
loop, and the window's own refresh is an asyncio task. The tests of the
``kefu plugin`` process run it on the real qasync loop.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("PySide6", reason="the desktop extra is not installed (pip install -e '.[desktop]')")
pytest.importorskip("qasync", reason="the desktop extra is not installed (pip install -e '.[desktop]')")

from kefu.plugin import Plugin
from kefu.plugin.desktop import Desktop

from ..plugin.harness import kefu_server, plugin, plugin_factory

__all__ = ["desktop", "kefu_server", "plugin", "plugin_factory", "qapp"]


@pytest.fixture(scope="session")
def qapp() -> Any:
    from kefu.plugin.qtloop import qt_application

    before = os.environ.get("QT_QPA_PLATFORM")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # read once, when the application is made
    try:
        return qt_application()
    finally:  # the other tests' processes do not inherit it
        if before is None:
            del os.environ["QT_QPA_PLATFORM"]
        else:
            os.environ["QT_QPA_PLATFORM"] = before


@pytest_asyncio.fixture
async def desktop(qapp: Any, plugin: Plugin) -> AsyncIterator[Desktop]:
    """The plugin (agent ``a1`` can log in) with its window shown."""
    d = Desktop(plugin, fps=50.0)
    d.start()
    try:
        yield d
    finally:
        await plugin.aclose()
        d.closing_allowed = True
        d.window.close()
        d.window.deleteLater()
        qapp.processEvents()
