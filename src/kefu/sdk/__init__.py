"""The Python SDKs of the plugin (DESIGN §1).

- :class:`IMClient` — the spec's ``IMClient``: its names, parameters,
  callbacks and data, in both calling conventions (v1204 callback objects,
  v190307 ``(params, callback(state, payload))``), from plain scripts and
  from asyncio code;
- :class:`Client` — the same API for asyncio code: snake_case coroutines,
  typed errors, ``async with``, ``async for`` over events and state changes.
"""

from .client import Client, EventStream, StateStream
from .events import EventEmitter, PluginEvent, Reply, RequestError, StateChange
from .imclient import IMClient, Pending
from .token import read_token, token_path

__all__ = [
    "Client",
    "EventEmitter",
    "EventStream",
    "IMClient",
    "Pending",
    "PluginEvent",
    "Reply",
    "RequestError",
    "StateChange",
    "StateStream",
    "read_token",
    "token_path",
]
