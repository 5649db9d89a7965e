"""``kefu visitor NAME --server URL --chat TEXT``: a visitor on the command line."""

from __future__ import annotations

import asyncio
import contextlib

import typer
from rich.console import Console

from kefu.protocol.wire import Json

from .client import Visitor
from .link import LinkClosed, RequestFailed

__all__ = ["describe", "register"]

console = Console(highlight=False)


def describe(ev: Json) -> str | None:
    """One line for a push, or None for those a person need not see."""
    sub, p = ev.get("subMark"), ev.get("payload") or {}
    if sub == "queue":
        return f"waiting in the queue: position {p.get('position')}"
    if sub == "sessionAssigned":
        return f"agent {p.get('agentName')} took the session {p.get('sessionId')}"
    if sub == "message":
        who = "you" if p.get("from") == "visitor" else "agent"
        return f"{who}: {p.get('text')}"
    if sub == "sessionClosed":
        return f"the session was closed by the {p.get('by')} ({p.get('reason')})"
    if sub == "replaced":
        return "another connection of this visitor took over"
    if sub == "error":
        err = ev.get("error") or {}
        return f"error {err.get('code')}: {err.get('msg')}"
    return None


async def _run(name: str, server: str, chats: list[str], key: str | None, wait: float, close: bool) -> int:
    v = Visitor(server, name, visitor_key=key)
    try:
        hello = await v.connect()
    except (OSError, TimeoutError) as exc:
        console.print(f"[red]cannot reach {server}: {exc}[/red]; is `kefu server` running there?")
        return 1
    except RequestFailed as exc:
        console.print(f"[red]{exc.code.value}: {exc.msg}[/red]")
        return 1
    console.print(f"connected as [bold]{name}[/bold] (id {hello['visitorId']}; key {hello['visitorKey']})")
    if hello["session"] is not None:
        console.print(f"your open session {hello['session']['sessionId']} is {hello['session']['status']}")
    try:
        for text in chats:
            sent = await v.send_message(text)
            console.print(f"you: {text}")
            if sent.get("status") == "queued":
                console.print(f"waiting in the queue: position {sent.get('position')}")
        if close:
            await v.close_session()
        deadline = asyncio.get_running_loop().time() + wait if wait > 0 else None
        while True:
            left = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    ev = await v.next_event()
            except TimeoutError:
                if deadline is None:
                    continue  # nothing for a while: keep listening
                break
            line = describe(ev)
            if line is not None:
                console.print(line)
            if ev.get("subMark") == "sessionClosed":
                break
    except LinkClosed as exc:
        console.print(f"[red]the server closed the connection ({exc.code} {exc.reason})[/red]")
        return 1
    except RequestFailed as exc:
        console.print(f"[red]{exc.code.value}: {exc.msg}[/red]")
        return 1
    finally:
        await v.aclose()
    return 0


def visitor(
    name: str = typer.Argument(..., help="the visitor's name (the spec's visitorName)"),
    server: str = typer.Option("http://127.0.0.1:8600", help="the kefu server"),
    chat: list[str] = typer.Option([], "--chat", help="a message to send (repeat for more)"),
    key: str = typer.Option(
        None, "--key", help="the visitorKey printed last time, to come back as the same visitor"
    ),
    wait: float = typer.Option(
        0.0, help="seconds to keep listening; 0: until the session closes (Ctrl-C stops)"
    ),
    close: bool = typer.Option(False, "--close", help="close the session after sending"),
) -> None:
    """Be a visitor: chat with an agent through the kefu server, printing what happens."""
    with contextlib.suppress(KeyboardInterrupt):
        raise typer.Exit(asyncio.run(_run(name, server, chat, key, wait, close)))


def register(app: typer.Typer) -> None:
    app.command("visitor")(visitor)
