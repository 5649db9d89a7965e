"""The agent's plugin: the control server on ``ws://127.0.0.1:1040`` for the
SDKs, the agent's link to the server, the window (DESIGN §1).

Its names load on first use (PEP 562): ``import kefu.plugin.security`` does not
load the control server, the link or the media (aiortc).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Plugin, client_event
    from .link import AgentLink
    from .settings import DEFAULT_PORT, PluginSettings, default_data_dir
    from .window import Window, WindowState

__all__ = [
    "DEFAULT_PORT",
    "AgentLink",
    "Plugin",
    "PluginSettings",
    "Window",
    "WindowState",
    "client_event",
    "default_data_dir",
]

_HOME = {
    "Plugin": "app",
    "client_event": "app",
    "AgentLink": "link",
    "DEFAULT_PORT": "settings",
    "PluginSettings": "settings",
    "default_data_dir": "settings",
    "Window": "window",
    "WindowState": "window",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
