"""Fixtures of the plugin's tests: the real server and plugins (see ``harness.py``)."""

from .harness import kefu_server, plugin, plugin_factory

__all__ = ["kefu_server", "plugin", "plugin_factory"]
