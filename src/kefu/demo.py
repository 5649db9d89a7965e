"""``kefu demo``: the whole system on the embedded default, driven in the spec's own style.

It starts a server (SQLite in one data directory, in-process bus), two agents'
plugins, and Python visitors, then drives agent ``a1`` through ``IMClient``
exactly as a workstation page would (SPEC §3–§5): log in → pick up a chat →
the visitor's video request → ``videoPickUp`` → invite the second agent →
three-party → the third agent leaves → the visitor hangs up → after-call work
→ ready; then a call-out that the visitor refuses, and one that nobody
answers. Every state change is printed as it happens (time, agent, code,
meaning, callback), then a summary. Everything it started is stopped at the
end; it exits 0 when every step went as the spec says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kefu.logs import configure_logging
from kefu.protocol import CODE_INFO, Code

__all__ = ["register", "run_demo"]

Proc = asyncio.subprocess.Process

console = Console()
PASSWORD = "demo-password-1"


@dataclass
class Row:
    t: float
    who: str
    code: str
    callback: str
    note: str = ""


@dataclass
class Timeline:
    start: float = field(default_factory=time.monotonic)
    rows: list[Row] = field(default_factory=list)
    waiters: list[tuple[str, str, asyncio.Future[Row]]] = field(default_factory=list)

    def add(self, who: str, code: str | None, callback: str, note: str = "") -> None:
        row = Row(time.monotonic() - self.start, who, code or "", callback, note)
        self.rows.append(row)
        meaning = CODE_INFO[Code(code)].meaning if code and code in Code._value2member_map_ else ""
        console.print(
            f"[dim]{row.t:6.2f}s[/dim] [bold]{who:<3}[/bold] [cyan]{row.code or '·':<6}[/cyan] "
            f"[green]{callback:<24}[/green] {meaning}{' — ' + note if note else ''}",
            overflow="fold",
        )
        for w in list(self.waiters):
            if w[0] == who and w[1] == row.code and not w[2].done():
                w[2].set_result(row)
                self.waiters.remove(w)

    async def until(self, who: str, code: str, within: float = 20.0) -> Row:
        for row in self.rows:
            if row.who == who and row.code == code and not getattr(row, "taken", False):
                row.taken = True  # type: ignore[attr-defined]
                return row
        fut: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self.waiters.append((who, code, fut))
        try:
            row = await asyncio.wait_for(fut, within)
        except TimeoutError:
            raise DemoFailed(f"{who} never reached {code} ({CODE_INFO[Code(code)].meaning})") from None
        row.taken = True  # type: ignore[attr-defined]
        return row


class DemoFailed(Exception):
    pass


def _kefu(*args: str) -> list[str]:
    return [sys.executable, "-m", "kefu.cli", *args]


async def _start(
    cmd: list[str], pattern: str, what: str, log: Path, within: float = 30.0
) -> tuple[Proc, str]:
    """Start a process; wait for the line matching ``pattern`` on its stdout; return its URL."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=fd, stdin=asyncio.subprocess.DEVNULL
        )
    finally:
        os.close(fd)
    assert proc.stdout is not None
    rx = re.compile(pattern)
    try:
        async with asyncio.timeout(within):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise DemoFailed(f"the {what} exited ({await proc.wait()}); see {log}")
                m = rx.search(line.decode(errors="replace"))
                if m:
                    return proc, m.group(1)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DemoFailed(f"the {what} did not start within {within:g} s; see {log}") from None


async def _stop(proc: Proc) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _run(cmd: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise DemoFailed(f"{' '.join(cmd[2:])} failed: {out.decode(errors='replace').strip()}")


async def run_demo(data_dir: Path, *, ring_timeout: float = 4.0, media: bool = True) -> bool:
    from kefu.sdk import IMClient
    from kefu.visitor import Visitor

    tl = Timeline()
    procs: list[Proc] = []
    clients: list[Any] = []
    visitors: list[Any] = []
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]kefu demo[/bold]")
    console.print(f"data directory: {data_dir} (SQLite, in-process bus; logs in {logs})")
    try:
        server, url = await _start(
            _kefu(
                "server",
                "--port",
                "0",
                "--data-dir",
                str(data_dir / "server"),
                "--ring-timeout",
                str(ring_timeout),
                "--call-grace",
                "3",
            ),
            r"listening on (http://\S+)",
            "server",
            logs / "server.log",
        )
        procs.append(server)
        console.print(f"server:   {url}")
        extra = ["--headless"] if media else ["--headless", "--no-media"]

        async def plugin_of(name: str) -> str:
            await _run(
                _kefu("agent", "add", name, "--password", PASSWORD, "--data-dir", str(data_dir / "server"))
            )
            plugin, purl = await _start(
                _kefu(
                    "plugin",
                    "--server",
                    url,
                    "--port",
                    "0",
                    "--data-dir",
                    str(data_dir / f"plugin-{name}"),
                    *extra,
                ),
                r"ready (ws://\S+)",
                f"plugin of {name}",
                logs / f"plugin-{name}.log",
            )
            procs.append(plugin)
            console.print(f"plugin of {name}: {purl}")
            return purl

        ports = dict(zip(("a1", "a2"), await asyncio.gather(plugin_of("a1"), plugin_of("a2")), strict=True))
        console.rule("timeline: time, agent, state code, meaning, callback")

        def make_client(name: str) -> Any:
            token = (data_dir / f"plugin-{name}" / "plugin.token").read_text().strip()
            ready = asyncio.get_running_loop().create_future()

            def on_state(state: str, payload: Any) -> None:
                cb = (payload or {}).get("subMark") or ""
                tl.add(name, state, cb, (payload or {}).get("reason") or "")

            client = IMClient(
                {
                    "baseWsUrl": ports[name],
                    "ssoTo": f"{url}/agent",
                    "videoBarVisible": True,
                    "token": token,
                    "success": lambda data: None,
                    "error": lambda data: tl.add(name, None, "error", data["error"]["msg"]),
                    "kefuReady": lambda data: None if ready.done() else ready.set_result(True),
                    "kefuWSClose": lambda data: tl.add(name, None, "kefuWSClose"),
                }
            )
            client.initInnerCallBack(
                {
                    "stateChange": on_state,
                    "chatCloseCB": lambda data: tl.add(name, None, "chatCloseCB"),
                    "visitorStreamOffline": lambda data: tl.add(name, None, "visitorStreamOffline"),
                }
            )
            clients.append(client)
            return client, ready

        a1, a1_ready = make_client("a1")
        a2, a2_ready = make_client("a2")
        for client, ready, name in ((a1, a1_ready, "a1"), (a2, a2_ready, "a2")):
            client.startLogin(
                {
                    "minimize": True,
                    "data": {"url": f"{url}/doLogin?name={name}&pwd={PASSWORD}&returnTo="},
                    "success": lambda data, n=name: tl.add(n, None, "startLogin.success"),
                    "error": lambda err, n=name: tl.add(n, None, "startLogin.error", str(err.get("code"))),
                }
            )
            await asyncio.wait_for(ready, 20)
        # the second agent answers an invitation to be the third agent (SPEC §4.3)
        a2_state: dict[str, str] = {}

        def a2_on_state(state: str, payload: Any) -> None:
            tl.add("a2", state, (payload or {}).get("subMark") or "")
            if state == "004002" and a2_state.get("last") != "004002":
                a2.multipleVideoPickUp(
                    {
                        "acceptSuccess": lambda data: tl.add("a2", None, "multipleVideoPickUp.acceptSuccess"),
                        "exitSuccess": lambda data: tl.add("a2", None, "multipleVideoPickUp.exitSuccess"),
                    }
                )
            a2_state["last"] = state

        a2.initInnerCallBack({"stateChange": a2_on_state})
        assigned: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def on_assigned(data: dict[str, Any]) -> None:
            p = data.get("payload") or {}
            if not assigned.done():
                assigned.set_result(p.get("session", p))

        a1.initInnerCallBack({"sessionAssigned": on_assigned})
        await a1.setAgentState({"state": "idle"}, lambda state, payload: None)

        # a visitor chats, and the session is assigned to a1
        from kefu.media import MediaSettings

        msettings = MediaSettings(video_width=320, video_height=240, fps=15)
        v1 = Visitor(url, "visitor-1", on_invite="accept", media=msettings if media else None)
        visitors.append(v1)
        await v1.connect()
        await v1.send_message("Hello, I would like to check my policy.")
        try:
            session = await asyncio.wait_for(assigned, 20)
        except TimeoutError:
            raise DemoFailed("the chat was never assigned to a1") from None
        session_id = session["sessionId"]
        tl.add("a1", None, "sessionState", f"session {session_id[:8]}… with visitor-1")
        await a1.sendMessage({"session_id": session_id, "text": "Hello, this is a1. How can I help?"})
        # a2 gets ready once the chat is a1's (two ready agents: the router may pick either)
        await a2.setAgentState({"state": "idle"}, lambda state, payload: None)

        # the visitor asks for video; a1 picks it up (v190307 convention)
        await v1.request_video()
        await tl.until("a1", "004001")
        a1.videoPickUp({"session_id": session_id}, lambda state, payload: None)
        await tl.until("a1", "006013")
        # invite the second agent (v1204 convention)
        a1.videoInviteAgent(
            {
                "agentName": "a2",
                "inviteSuccess": lambda data: None,
                "acceptSuccess": lambda data: None,
                "exitSuccess": lambda data: None,
            }
        )
        await tl.until("a1", "008002")
        await tl.until("a2", "006014")
        if media:
            await asyncio.sleep(1.0)  # a moment of three-party media
            shot = await a1.snapshot({"success": lambda data: None, "error": lambda data: None})
            p = shot.get("payload") or {}
            if shot.get("subMark") == "success":
                note = f"{p.get('width')}x{p.get('height')} JPEG of the visitor's video"
            else:
                note = (shot.get("error") or {}).get("msg", "")
            tl.add("a1", None, "snapshot." + str(shot.get("subMark")), note)
        multi = await a1.isMultipleVideo({"success": lambda data: None})
        tl.add("a1", None, "isMultipleVideo", str(multi.get("data")))
        # the third agent leaves, then the visitor hangs up
        a2.videoDisconnect()
        await tl.until("a1", "006010")
        await v1.hangup()
        await tl.until("a1", "005007")
        await a1.setAgentState({"state": "idle"}, lambda state, payload: None)
        await tl.until("a1", "002000")

        # a call-out the visitor refuses, and one nobody answers
        v2 = Visitor(url, "visitor-2", on_invite="refuse")
        v3 = Visitor(url, "visitor-3", on_invite="ignore")
        visitors.extend([v2, v3])
        await v2.connect()
        await v3.connect()
        a1.callbackToVisitor({"visitorName": "visitor-2", "startVideo": True}, lambda state, payload: None)
        await tl.until("a1", "002001")
        a1.callbackToVisitor({"visitorName": "visitor-3", "startVideo": True}, lambda state, payload: None)
        await tl.until("a1", "002002", within=ring_timeout + 10)
        ok = True
    except (DemoFailed, TimeoutError) as exc:
        console.print(f"[red]demo failed: {exc}[/red]")
        ok = False
    except Exception as exc:  # show what broke, then clean up all the same
        console.print_exception()
        console.print(f"[red]demo failed: {type(exc).__name__}: {exc}[/red]")
        ok = False
    finally:
        for v in visitors:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(v.aclose(), 5)
        for c in clients:
            with contextlib.suppress(Exception):
                await c.aclose()
        for p in reversed(procs):
            await _stop(p)
    _summary(tl, ok)
    return ok


def _summary(tl: Timeline, ok: bool) -> None:
    codes = [r for r in tl.rows if r.code]
    table = Table(title="summary")
    table.add_column("agent")
    table.add_column("state changes", justify="right")
    table.add_column("codes seen")
    for who in sorted({r.who for r in codes}):
        seen = [r.code for r in codes if r.who == who]
        table.add_row(who, str(len(seen)), " ".join(dict.fromkeys(seen)))
    console.print(table)
    console.print(
        "[green]demo finished: every step went as the spec says[/green]" if ok else "[red]demo failed[/red]"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        data_dir: Path = typer.Option(
            None, "--data-dir", help="keep everything in this folder (default: a temporary one)"
        ),
        ring_timeout: float = typer.Option(4.0, help="seconds an invitation rings (short, for the demo)"),
        media: bool = typer.Option(True, help="real WebRTC media between the plugins and the visitors"),
    ) -> None:
        """Run the whole system on the embedded default and drive an agent through a scripted day."""
        # its own clients' warnings, redacted (the server and plugins log to files in the data folder)
        configure_logging("warning", sys.stderr)
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            ok = asyncio.run(run_demo(data_dir, ring_timeout=ring_timeout, media=media))
        else:
            with tempfile.TemporaryDirectory(prefix="kefu-demo-") as tmp:
                ok = asyncio.run(run_demo(Path(tmp), ring_timeout=ring_timeout, media=media))
        raise typer.Exit(0 if ok else 1)
