"""Clients that run inside a namespace of the topology and talk JSON lines.

``python -m tests.netns.probe agent PLUGIN_WS_URL TOKEN SERVER_URL NAME``:
an ``IMClient`` on the agent's host (its plugin answers on that host's
127.0.0.1 only). It logs in and gets ready, then reads commands from stdin,
``{"id": "c1", "api": "callbackToVisitor", "params": {...}}``, calls the API
with both conventions and writes every answer as a line:
``{"id", "callback", "data"}`` (v1204) and ``{"id", "state", "payload"}``
(v190307); state pushes as ``{"event": "stateChange", "state", "payload"}``.

``python -m tests.netns.probe visitor SERVER_URL NAME``: a
:class:`kefu.visitor.Visitor` that accepts invitations; it writes each of its
events (``{"event": <type>, ...}``), and answers stdin commands
``{"cmd": "frames"}`` with the colour of every camera it receives and the
candidate types of its media's route (``{"event": "frames", "colours":
{member: [r, g, b]}, "route": [local, remote]}``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from typing import Any

from kefu.media import MediaSettings, default_host_addresses, sample_rgb
from kefu.sdk import IMClient
from kefu.visitor import Visitor

#: Small video, as the e2e tests send.
SMALL = {"video_width": 320, "video_height": 240, "fps": 15, "close_timeout": 1.0, "record": False}


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


CALLBACKS = ("success", "error", "inviteSuccess", "acceptSuccess", "visitorRefuse", "videoBusyMark")
CALLBACKS += ("timeoutDisconnect", "visitorDisconnect", "kefuCloseVideoSuccess", "exitSuccess", "ringing")


async def agent(url: str, token: str, server: str, name: str) -> None:
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client = IMClient(
        {
            "baseWsUrl": url,
            "ssoTo": f"{server}/agent",
            "token": token,
            "ssoReady": lambda data: None if ready.done() else ready.set_result(None),
        }
    )
    client.initInnerCallBack(
        {
            "stateChange": lambda state, payload: emit(
                {"event": "stateChange", "state": state, "payload": payload}
            )
        }
    )
    await asyncio.wait_for(ready, 20)

    def call(rid: str, api: str, params: dict[str, Any]) -> None:
        options: dict[str, Any] = dict(params)
        for cb in CALLBACKS:
            options[cb] = lambda data, cb=cb: emit({"id": rid, "callback": cb, "data": data})
        getattr(client, api)(
            options, lambda state, payload: emit({"id": rid, "state": state, "payload": payload})
        )

    call("login", "startLogin", {"data": {"url": f"{server}/doLogin?name={name}&pwd=pw-secret-1&returnTo="}})
    reader = await lines()
    emit({"event": "started"})
    while line := await reader.readline():
        cmd = json.loads(line)
        call(cmd["id"], cmd["api"], cmd.get("params") or {})
    await client.aclose()


async def visitor(server: str, name: str) -> None:
    media = MediaSettings(host_addresses=default_host_addresses(server), **SMALL)  # type: ignore[arg-type]
    v = Visitor(server, name, on_invite="accept", media=media, media_timeout=60.0, timeout=20.0)
    await v.connect()
    emit({"event": "hello", "iceServers": len(v.ice_servers)})

    async def forward() -> None:
        async for ev in v.events():
            emit({"event": type(ev).__name__, **dataclasses.asdict(ev)})  # type: ignore[call-overload]

    task = asyncio.create_task(forward())
    reader = await lines()
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd.get("cmd") == "frames":
            colours: dict[str, list[int]] = {}
            route = None
            member = v.media
            if member is not None:
                for rec in member.peer.received:
                    if rec.label.role == "camera":
                        frame = await member.peer.next_frame(rec.label.member, "camera", within=10.0)
                        colours[rec.label.member] = list(sample_rgb(frame))  # type: ignore[arg-type]
                route = member.peer.route()
            emit({"event": "frames", "colours": colours, "route": route})
    await v.aclose()
    task.cancel()


def main() -> None:
    mode, *args = sys.argv[1:]
    asyncio.run(agent(*args) if mode == "agent" else visitor(*args))


if __name__ == "__main__":
    main()
