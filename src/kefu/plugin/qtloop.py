"""Qt and asyncio in one event loop, for the plugin's desktop window.

The plugin's code is asyncio (websockets, aiortc); the window is Qt. They
share one thread and one loop: qasync's ``QEventLoop`` is an asyncio
selector loop whose sockets are watched by Qt (``QSocketNotifier``) and whose
timers are Qt timers, so a Qt paint and a WebSocket read are both events of
the same loop. (PySide6's own ``QtAsyncio`` implements no sockets: no
``create_server``, no datagram endpoints, which websockets and aiortc need.)

PySide6 and qasync are the optional extra ``desktop``; :func:`desktop_unavailable`
says why a window cannot open (no PySide6, no display), and the plugin then
runs headless.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["desktop_unavailable", "qt_application", "run_qt"]

#: Qt platforms that need no display server.
_SELF_CONTAINED = {"offscreen", "minimal", "vnc", "linuxfb", "eglfs", "vkkhrdisplay", "minimalegl"}


def desktop_unavailable(env: dict[str, str] | None = None) -> str | None:
    """Why the desktop window cannot open here, or None when it can."""
    env = dict(os.environ) if env is None else env
    missing = [m for m in ("PySide6", "qasync") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed: install the desktop extra "
            "(pip install 'kefu[desktop]'), or run with --headless"
        )
    platform = env.get("QT_QPA_PLATFORM", "").split(":", 1)[0]
    if platform in _SELF_CONTAINED:
        return None
    if sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set); running headless"
    return None


def qt_application() -> Any:
    """The process's QApplication (made once)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "kefu"])
        app.setApplicationName("kefu plugin")
        # the plugin quits through Plugin.quit(), never because its last window closed
        app.setQuitOnLastWindowClosed(False)
    return app


def run_qt(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main()`` on a qasync loop driven by Qt; its result is the exit status."""
    import qasync

    app = qt_application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        return int(loop.run_until_complete(main()))
    finally:
        try:
            # what main left (cancelled tasks finishing), then the async generators
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
