"""Fixtures of the plugin's tests: the real server and plugins (see ``harness.py``)."""

from .harness import plugin, plugin_factory, server

__all__ = ["plugin", "plugin_factory", "server"]
