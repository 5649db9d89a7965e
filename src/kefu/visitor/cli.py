"""``kefu visitor NAME --server URL …``: a visitor on the command line.

It chats, asks for video, answers invitations by a policy, shares a synthetic
screen and uploads photos when asked, hangs up after a while, and prints a
timeline of what happens (seconds since start, one line each), then a table
of its calls. It stops when its work is done (the call it took part in is
over, when ``--request-video`` or ``--hangup-after`` was given; or the session
closed), when ``--wait`` seconds have passed, or on Ctrl-C or SIGTERM — hanging
up first (exit 0); it exits 1 when it cannot connect or the server drops it, 2
on a bad option.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
import ssl as ssl_module
import sys
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from websockets.exceptions import InvalidHandshake, InvalidURI

from kefu import aio
from kefu.logs import configure_logging
from kefu.media import MediaError, MediaSettings, default_host_addresses
from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import CallNotice
from kefu.tls import TlsError, client_context

from .client import Visitor
from .events import (
    CallAction,
    CallUpdate,
    Disconnected,
    MediaStatus,
    PhotoAnswer,
    SessionAssigned,
    SessionClosed,
    ShareAnswer,
    VisitorEvent,
)
from .link import LinkClosed, RequestFailed

__all__ = ["CallSummary", "Options", "register", "summarise"]

console = Console(highlight=False)


class OnInvite(enum.StrEnum):
    accept = "accept"
    refuse = "refuse"
    ignore = "ignore"


@dataclass(frozen=True)
class Options:
    name: str
    server: str
    chats: list[str]
    key: str | None = None
    wait: float = 0.0
    close: bool = False
    request_video: bool = False
    on_invite: str = "accept"
    hangup_after: float | None = None
    allow_photo: bool = True
    allow_share: bool = True
    media: MediaSettings = field(default_factory=MediaSettings)
    ssl: ssl_module.SSLContext | None = None  # an https server's trust (--ca-file); None: the system's CAs


@dataclass
class CallSummary:
    """One call in the table printed at the end."""

    call_id: str
    agent: str = ""
    how: str = ""  # "you asked" / "invited"
    answer: str = ""  # accepted / joined / refused / busy / ignored
    media: str = ""
    extras: list[str] = field(default_factory=list)  # shares, photos
    end: str = ""


def summarise(timeline: list[VisitorEvent]) -> list[CallSummary]:
    """The calls of a timeline, in order of their first event."""
    calls: dict[str, CallSummary] = {}
    for ev in timeline:
        call_id = getattr(ev, "call_id", None)
        if not isinstance(call_id, str):
            continue
        c = calls.setdefault(call_id, CallSummary(call_id))
        if isinstance(ev, CallUpdate):
            c.agent = c.agent or (ev.agent_name or "")
            if ev.what in (CallNotice.ringing, CallNotice.invited) and not c.how:
                c.how = "you asked" if ev.what == CallNotice.ringing else "invited"
            elif ev.what in (CallNotice.cancelled, CallNotice.ended) and not c.end:
                c.end = (
                    f"{ev.what} ({ev.reason})"
                    if ev.what == CallNotice.cancelled
                    else f"ended by {ev.by} ({ev.reason})"
                )
        elif isinstance(ev, CallAction):
            if ev.action == "requested":
                c.how = "you asked"
            elif ev.action == "hungUp":
                c.end = c.end or "you hung up"
            else:
                c.answer = ev.action
        elif isinstance(ev, MediaStatus) and ev.status in ("connected", "error"):
            c.media = ev.status
        elif isinstance(ev, ShareAnswer):
            c.extras.append(f"share {ev.answer}")
        elif isinstance(ev, PhotoAnswer):
            c.extras.append(f"photo {ev.answer}")
    return list(calls.values())


class _Script:
    """What the command does with the visitor's events."""

    def __init__(self, v: Visitor, opts: Options, say: _Say) -> None:
        self.v, self.opts, self.say = v, opts, say
        self.want_video = opts.request_video
        self.scripted = opts.request_video or opts.hangup_after is not None
        self.engaged: set[str] = set()  # calls we took part in
        self.over: set[str] = set()
        self.hangups: set[asyncio.Task[None]] = set()
        self.printed = 0  # events of the timeline printed so far

    async def request_video(self) -> None:
        self.want_video = False
        try:
            call_id = await self.v.request_video()
        except ApiError as exc:
            hint = ""
            if exc.code is ErrorCode.no_such_session:
                hint = " (send a message first with --chat, so that an agent takes your session)"
            raise _Failed(f"asking for video failed: {exc.code.value}: {exc.msg}{hint}") from None
        self.engaged.add(call_id)

    async def run(self) -> None:
        session = self.v.session
        if self.want_video and session is not None and session.get("status") == "open":
            await self.request_video()
        async for ev in self.v.events():
            self.printed += 1
            self.say(ev.describe(), "red" if isinstance(ev, Disconnected) else None)
            if isinstance(ev, Disconnected):
                raise _Failed("the server closed the connection; run again to come back (with --key)")
            if isinstance(ev, SessionAssigned) and self.want_video:
                await self.request_video()
            elif isinstance(ev, CallAction):
                if ev.action in ("accepted", "joined"):
                    self.engaged.add(ev.call_id)
                    if self.opts.hangup_after is not None:
                        task = asyncio.create_task(self._hangup_later(ev.call_id, self.opts.hangup_after))
                        self.hangups.add(task)
                        task.add_done_callback(self.hangups.discard)
                elif ev.action == "hungUp":
                    self.over.add(ev.call_id)
            elif isinstance(ev, CallUpdate) and ev.what in (CallNotice.cancelled, CallNotice.ended):
                self.over.add(ev.call_id)
            if self.scripted and self.engaged and self.engaged <= self.over:
                return
            if isinstance(ev, SessionClosed) and not self.v.in_call:
                return

    async def _hangup_later(self, call_id: str, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the script's own pace (hang up after S), not a wait for an event
        call = self.v.call
        if call is not None and call.call_id == call_id:
            try:
                await self.v.hangup()
            except (ApiError, LinkClosed, TimeoutError) as exc:
                self.say(f"hanging up failed: {exc}", "red")

    async def aclose(self) -> None:
        for task in self.hangups:
            task.cancel()
        await asyncio.gather(*self.hangups, return_exceptions=True)


class _Failed(Exception):
    pass


class _Say:
    def __init__(self) -> None:
        self.start = asyncio.get_running_loop().time()

    def __call__(self, line: str, style: str | None = None) -> None:
        t = asyncio.get_running_loop().time() - self.start
        text = f"[{style}]{line}[/{style}]" if style else line
        console.print(f"[dim]{t:7.2f}s[/dim]  {text}", soft_wrap=True)  # one line each, never wrapped


async def run(opts: Options) -> int:
    """The command's work; returns the exit code."""
    say = _Say()
    v = Visitor(
        opts.server,
        opts.name,
        visitor_key=opts.key,
        on_invite=opts.on_invite,  # type: ignore[arg-type]
        allow_photo=opts.allow_photo,
        allow_share=opts.allow_share,
        media=opts.media,
        ssl=opts.ssl,
    )
    try:
        hello = await v.connect()
    except ssl_module.SSLCertVerificationError as exc:
        console.print(
            f"[red]{opts.server}'s certificate is not trusted: {exc.verify_message}[/red]; "
            "give the CA that issued it with --ca-file (a bank's own CA)"
        )
        await v.aclose()
        return 1
    except (OSError, TimeoutError) as exc:
        console.print(f"[red]cannot reach {opts.server}: {exc}[/red]; is `kefu server` running there?")
        await v.aclose()
        return 1
    except (InvalidURI, InvalidHandshake) as exc:
        console.print(f"[red]{opts.server} has no kefu visitor socket ({exc})[/red]; check --server")
        await v.aclose()
        return 1
    except RequestFailed as exc:
        console.print(f"[red]{exc.code.value}: {exc.msg}[/red]")
        await v.aclose()
        return 1
    say(f"connected as [bold]{opts.name}[/bold] (id {hello['visitorId']}; key {hello['visitorKey']})")
    if hello["session"] is not None:
        say(f"your open session {hello['session']['sessionId']} is {hello['session']['status']}")
    script = _Script(v, opts, say)
    code = 0
    try:
        for text in opts.chats:
            sent = await v.send_message(text)
            say(f"you: {text}")
            if sent.get("status") == "open":
                v.session = {"sessionId": sent.get("sessionId"), "status": "open"}
            elif sent.get("status") == "queued":
                say(f"waiting in the queue: position {sent.get('position')}")
        if opts.close:
            await v.close_session()
        try:
            async with asyncio.timeout(opts.wait if opts.wait > 0 else None):
                await script.run()
        except TimeoutError:
            say(f"{opts.wait:g} s are up")
    except _Failed as exc:
        console.print(f"[red]{exc}[/red]")
        code = 1
    except LinkClosed as exc:
        console.print(f"[red]the server closed the connection ({exc.code} {exc.reason})[/red]")
        code = 1
    except RequestFailed as exc:
        console.print(f"[red]{exc.code.value}: {exc.msg}[/red]")
        code = 1
    except asyncio.CancelledError as exc:
        say(str(exc) or "stopped")  # the signal's words (_until_stopped), else a plain cancel
        raise
    finally:
        await script.aclose()
        if v.in_call:
            say("hanging up before leaving")
        await v.leave()
        for ev in v.timeline[script.printed :]:  # what leaving did (our own close is no news)
            if not isinstance(ev, Disconnected):
                say(ev.describe())
        calls = summarise(v.timeline)
        if calls:
            console.print(_table(calls))
    return code


def _table(calls: list[CallSummary]) -> Table:
    table = Table(title="calls")
    for column in ("call", "agent", "how", "answer", "media", "share / photo", "end"):
        table.add_column(column)
    for c in calls:
        table.add_row(c.call_id, c.agent, c.how, c.answer, c.media, ", ".join(c.extras), c.end)
    return table


def visitor(
    name: str = typer.Argument(..., help="the visitor's name (the spec's visitorName)"),
    server: str = typer.Option("http://127.0.0.1:8600", help="the kefu server"),
    chat: list[str] = typer.Option([], "--chat", help="a message to send (repeat for more)"),
    key: str = typer.Option(
        None, "--key", help="the visitorKey printed last time, to come back as the same visitor"
    ),
    wait: float = typer.Option(
        0.0, help="seconds to keep going at most; 0: until done (see above), Ctrl-C or SIGTERM"
    ),
    close: bool = typer.Option(False, "--close", help="close the session after sending"),
    request_video: bool = typer.Option(
        False, "--request-video", help="ask the session's agent for video (once an agent has the session)"
    ),
    on_invite: OnInvite = typer.Option(OnInvite.accept, help="what to answer an agent's invitation"),
    hangup_after: float = typer.Option(
        None, "--hangup-after", min=0.0, help="hang up this many seconds after a call connects"
    ),
    no_photo: bool = typer.Option(
        False, "--no-photo", help="photos disabled: takePhoto gets snapShotDisabled"
    ),
    no_share: bool = typer.Option(False, "--no-share", help="refuse to share the screen"),
    source: str = typer.Option(
        "pattern", help="camera and microphone: pattern | device:/dev/video0 | file:PATH"
    ),
    audio_input: str = typer.Option(
        None, "--audio-input", help="microphone of a device source: alsa:<dev> (alsa:pulse), pulse:<src>"
    ),
    candidate_address: list[str] = typer.Option(
        [],
        "--candidate-address",
        help="an address to offer media on (repeatable; 'auto': every interface but loopback; "
        "default: 127.0.0.1 when the server is on loopback, else auto)",
    ),
    ca_file: Path = typer.Option(
        None, "--ca-file", help="trust only this CA file for an https --server (a bank's own CA)"
    ),
    log_level: str = typer.Option(
        "warning", help="the libraries' log on stderr: debug, info, warning, error (secrets redacted)"
    ),
) -> None:
    """Be a visitor: chat, take video calls, print what happens."""
    configure_logging(log_level, sys.stderr)  # every line redacted (kefu.logs)
    hosts = (
        default_host_addresses(server)
        if not candidate_address
        else None
        if candidate_address == ["auto"]
        else tuple(candidate_address)
    )
    try:
        media = MediaSettings(source=source, audio_input=audio_input, host_addresses=hosts)
    except MediaError as exc:
        console.print(f"[red]{exc.msg}[/red]")
        raise typer.Exit(2) from None
    try:
        trust = client_context(ca_file) if ca_file is not None else None
    except TlsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    opts = Options(
        name=name,
        server=server,
        chats=chat,
        key=key,
        wait=wait,
        close=close,
        request_video=request_video,
        on_invite=on_invite.value,
        hangup_after=hangup_after,
        allow_photo=not no_photo,
        allow_share=not no_share,
        media=media,
        ssl=trust,
    )
    code = 0
    with contextlib.suppress(KeyboardInterrupt):  # where signals have no loop handler (Windows)
        code = aio.run(_until_stopped(opts))
    raise typer.Exit(code)


STOP_SIGNALS = {signal.SIGINT: "stopped (Ctrl-C)", signal.SIGTERM: "stopped (SIGTERM)"}


async def _until_stopped(opts: Options) -> int:
    """:func:`run`, which Ctrl-C or SIGTERM stop as a person would: hang up, leave, exit 0.

    The loop's own handlers, not Python's default one: a process started with SIGINT
    ignored (a job in the background of a script, a CI runner) would otherwise never
    see the signal, and SIGTERM (``kill``, ``timeout``, systemd) would end it without
    hanging up."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    stopped: list[str] = []

    def stop(words: str) -> None:  # a second one cuts the hanging up short
        stopped.append(words)
        task.cancel(words)

    for sig, words in STOP_SIGNALS.items():
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C is KeyboardInterrupt
            loop.add_signal_handler(sig, stop, words)
    try:
        return await run(opts)
    except asyncio.CancelledError:
        if not stopped:
            raise  # not a signal's
        for _ in stopped:
            task.uncancel()
        return 0
    finally:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


def register(app: typer.Typer) -> None:
    app.command("visitor")(visitor)
