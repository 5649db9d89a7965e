"""The agent's plugin: the control server on ``ws://127.0.0.1:1040`` for the
SDKs, the agent's link to the server, the window (DESIGN §1)."""

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
