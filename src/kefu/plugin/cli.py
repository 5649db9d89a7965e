"""``kefu plugin``: run the agent's plugin, or register its URL scheme.

The plugin prints what it does on stderr, and one line on stdout once it
answers on its port: ``ready ws://127.0.0.1:<port>`` (what
``IMClient.startup`` waits for when it starts the plugin); with
``--tls-cert``/``--tls-key``, ``ready wss://<the certificate's name>:<port>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kefu import aio
from kefu.logs import configure_logging
from kefu.tls import TlsError

from .app import Plugin
from .qtloop import desktop_unavailable, run_qt
from .settings import DEFAULT_PORT, PluginSettings, default_data_dir, origin_of

__all__ = ["DESKTOP_FILE", "SCHEME", "install_url_handler", "media_settings", "register", "run_plugin"]

err = Console(stderr=True)

SCHEME = "pocprotocol"
DESKTOP_FILE = "kefu-plugin.desktop"


def _desktop_quote(arg: str) -> str:
    """Quote one argument of a desktop entry's ``Exec`` (freedesktop rules)."""
    arg = arg.replace("%", "%%")
    if arg and all(c.isalnum() or c in "-_./:=@,+%" for c in arg):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def install_url_handler(command: list[str], *, data_home: Path | None = None) -> Path:
    """Write the ``.desktop`` file that opens ``pocprotocol://`` URLs with
    ``command`` and make it the scheme's handler for this user (``xdg-mime``,
    when present). Returns the file's path."""
    if data_home is None:
        xdg = os.environ.get("XDG_DATA_HOME")
        data_home = Path(xdg) if xdg else Path.home() / ".local" / "share"
    apps = data_home / "applications"
    apps.mkdir(parents=True, exist_ok=True)
    exec_line = " ".join(_desktop_quote(a) for a in command) + " %u"
    path = apps / DESKTOP_FILE
    path.write_text(
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=kefu plugin\n"
        "Comment=kefu video customer service: the agent's plugin (SPEC §4.1 startup)\n"
        f"Exec={exec_line}\n"
        "Terminal=false\n"
        "NoDisplay=true\n"
        f"MimeType=x-scheme-handler/{SCHEME};\n",
        encoding="utf-8",
    )
    xdg_mime = shutil.which("xdg-mime")
    if xdg_mime is not None:
        subprocess.run(
            [xdg_mime, "default", DESKTOP_FILE, f"x-scheme-handler/{SCHEME}"],
            check=False,
            capture_output=True,
        )
    update = shutil.which("update-desktop-database")
    if update is not None:
        subprocess.run([update, str(apps)], check=False, capture_output=True)
    return path


def media_settings(
    *,
    source: str = "pattern",
    ice_servers: list[str] | None = None,
    ice_username: str | None = None,
    ice_credential: str | None = None,
    candidate_addresses: list[str] | None = None,
    server: str = "http://127.0.0.1:8600",
    stream_offline: float = 3.0,
    record: bool = True,
    video_size: str = "640x480",
    fps: int = 30,
    audio_input: str | None = None,
    sfu_audio_on_demand: bool = True,
    sfu_video_on_demand: bool = True,
    sfu_estimate_bandwidth: bool = False,
    encode_on_loop: tuple[str, ...] = ("audio", "video"),
) -> Any:
    """The plugin's :class:`~kefu.media.MediaSettings` from its options.
    Raises :class:`~kefu.media.MediaError` (with what to change) on a bad one.

    Without ``candidate_addresses``, host candidates are on 127.0.0.1 when the
    ``server`` is on loopback, else on every interface but loopback."""
    from kefu.media import IceServer, MediaError, MediaSettings, default_host_addresses

    width, sep, height = video_size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise MediaError(f"video size {video_size!r}: give WIDTHxHEIGHT, e.g. 640x480")
    servers = tuple(
        IceServer(
            (url,),
            ice_username if url.startswith("turn") else None,
            ice_credential if url.startswith("turn") else None,
        )
        for url in ice_servers or []
    )
    addresses = tuple(candidate_addresses or ())
    hosts = default_host_addresses(server) if not addresses else None if addresses == ("auto",) else addresses
    return MediaSettings(
        ice_servers=servers,
        host_addresses=hosts,
        source=source,
        audio_input=audio_input,
        offline_threshold=stream_offline,
        record=record,
        video_width=int(width),
        video_height=int(height),
        fps=fps,
        sfu_audio_on_demand=sfu_audio_on_demand,
        sfu_video_on_demand=sfu_video_on_demand,
        sfu_estimate_bandwidth=sfu_estimate_bandwidth,
        encode_on_loop=encode_on_loop,
    )


async def run_plugin(
    settings: PluginSettings, *, launched_by_url: bool = False, desktop: bool = False, video_bar: bool = True
) -> int:
    """Run until ``quit`` or a signal; the exit status. ``desktop``: with its
    window (in a loop of :func:`kefu.plugin.qtloop.run_qt`)."""
    try:
        plugin = Plugin(settings)
    except TlsError as exc:  # --server-ca
        err.print(f"[red]{exc}[/red]")
        return 2
    try:
        await plugin.start()
    except TlsError as exc:  # --tls-cert, --tls-key
        err.print(f"[red]{exc}[/red]")
        await plugin.aclose()
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            if launched_by_url:
                err.print(f"a plugin already answers on port {settings.port}; nothing to do")
                return 0
            err.print(
                f"[red]port {settings.port} is in use[/red]: is a plugin running already? "
                "Quit it (its SDK's quit()), or pick another port with --port."
            )
            return 1
        raise
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, lambda: plugin.spawn(plugin.quit("signal")))
    shown = "none (headless)"
    if desktop:
        from .desktop import Desktop

        window = Desktop(plugin, video_bar=video_bar)
        window.start()
        shown = f"shown on {window.platform}" + (", with its control bar" if video_bar else "")
    table = Table(title="kefu plugin", show_header=False)
    table.add_row("control socket", plugin.url)
    if settings.tls:
        table.add_row("TLS", f"{settings.tls_cert}; Host may be {', '.join(plugin.tls_names) or '127.0.0.1'}")
    table.add_row("server", settings.server_origin)
    table.add_row("allowed origins", "\n".join(sorted(settings.origins(plugin.port))))
    table.add_row("pairing token", str(settings.token_path))
    table.add_row("login timeout", f"{settings.login_timeout:g} s")
    table.add_row("controllers", "many" if settings.allow_many else "one at a time")
    table.add_row("window", shown)
    m = settings.media
    if m is None:
        table.add_row("media", "none (--no-media): calls are signalling only")
    else:
        ice = ", ".join(u for server in m.ice_servers for u in server.urls) or "none"
        hosts = ", ".join(m.host_addresses) if m.host_addresses is not None else "every interface"
        table.add_row("media", f"{m.source}, {m.video_width}x{m.video_height} at {m.fps} fps")
        table.add_row("ICE", f"host candidates on {hosts}; STUN/TURN: the server's (renewed), then {ice}")
        table.add_row("stream offline", f"after {m.offline_threshold:g} s without a frame")
        table.add_row("recording", "on (uploaded in chunks)" if m.record else "off")
    err.print(table)
    print(f"ready {plugin.url}", flush=True)
    try:
        await plugin.wait_stopped()
    finally:
        await plugin.aclose()
    err.print("plugin stopped")
    return 0


def register(app: typer.Typer) -> None:
    @app.command()
    def plugin(
        launch_url: str = typer.Argument(
            None, metavar="[POCPROTOCOL_URL]", help="the pocprotocol:// URL the plugin was launched with"
        ),
        server: str = typer.Option(..., "--server", help="the kefu server, e.g. http://127.0.0.1:8600"),
        port: int = typer.Option(DEFAULT_PORT, "--port", help="the control socket's port on 127.0.0.1"),
        data_dir: Path = typer.Option(
            None, "--data-dir", help="where plugin.token is written (default: a per-user folder)"
        ),
        allow_origin: list[str] = typer.Option(
            [], "--allow-origin", help="a page origin that may control the plugin (repeatable)"
        ),
        login_timeout: float = typer.Option(30.0, "--login-timeout", help="seconds startLogin waits"),
        allow_many: bool = typer.Option(False, "--allow-many", help="let several clients control the plugin"),
        install: bool = typer.Option(
            False, "--install-url-handler", help="register pocprotocol:// for this user, then exit"
        ),
        log_level: str = typer.Option(
            "info",
            "--log-level",
            envvar="KEFU_PLUGIN_LOG_LEVEL",
            help="debug, info, warning or error (secrets are masked at every level)",
        ),
        headless: bool = typer.Option(False, "--headless", help="run without a window"),
        no_video_bar: bool = typer.Option(
            False, "--no-video-bar", help="hide the window's control bar (videoBarVisible false)"
        ),
        no_media: bool = typer.Option(
            False, "--no-media", help="no WebRTC at all: calls are signalling only (load tests, demos)"
        ),
        media_source: str = typer.Option(
            "pattern", "--media-source", help="the agent's camera: pattern, device:/dev/videoN or file:PATH"
        ),
        audio_input: str = typer.Option(
            None, "--audio-input", help="the microphone of a device source: alsa:DEV, pulse:SRC or oss:DEV"
        ),
        ice_server: list[str] = typer.Option(
            [],
            "--ice-server",
            help="a STUN or TURN server URL, e.g. turn:turn.example:3478 (repeatable; none by default)",
        ),
        ice_username: str = typer.Option(None, "--ice-username", help="the TURN servers' username"),
        ice_credential: str = typer.Option(
            None,
            "--ice-credential",
            envvar="KEFU_ICE_CREDENTIAL",
            help="the TURN servers' credential (better from $KEFU_ICE_CREDENTIAL: a command line is public)",
        ),
        candidate_address: list[str] = typer.Option(
            [],
            "--candidate-address",
            help="an address to offer media on (repeatable; 'auto': every interface but loopback; "
            "default: 127.0.0.1 when the server is on loopback, else auto)",
        ),
        media_connect_timeout: float = typer.Option(
            15.0,
            "--media-connect-timeout",
            help="seconds a member's media may take to connect before the call ends (media_unreachable)",
        ),
        stream_offline: float = typer.Option(
            3.0, "--stream-offline", help="seconds without a member's video before visitorStreamOffline"
        ),
        no_record: bool = typer.Option(False, "--no-record", help="do not record the calls"),
        video_size: str = typer.Option("640x480", "--video-size", help="the video sent, WIDTHxHEIGHT"),
        fps: int = typer.Option(30, "--fps", help="frames per second of the video sent"),
        sfu_decode_all_audio: bool = typer.Option(
            False,
            "--sfu-decode-all-audio",
            hidden=True,
            help="SFU mode: decode every received audio frame (the former way, for the benchmark; D49)",
        ),
        sfu_decode_all_video: bool = typer.Option(
            False,
            "--sfu-decode-all-video",
            hidden=True,
            help="SFU mode without a window: decode every received video frame (the former way; D55)",
        ),
        sfu_estimate_bandwidth: bool = typer.Option(
            False,
            "--sfu-estimate-bandwidth",
            hidden=True,
            help="SFU mode: subscriptions take abs-send-time and send REMB (the former way; D56)",
        ),
        encode_on_loop: str = typer.Option(
            "audio,video",
            "--encode-on-loop",
            hidden=True,
            help="the kinds of sent media that may be encoded on the event loop: 'audio,video', "
            "'audio', or 'none' (the former way: all in aiortc's thread pool; D64)",
        ),
        media_timeout: float = typer.Option(
            25.0, "--media-timeout", help="seconds takePhoto and inviteShare wait for the visitor"
        ),
        tls_cert: Path = typer.Option(
            None, "--tls-cert", help="serve wss:// with this PEM certificate (its chain after it)"
        ),
        tls_key: Path = typer.Option(None, "--tls-key", help="the certificate's PEM key (mode 0600)"),
        server_ca: Path = typer.Option(
            None, "--server-ca", help="trust only this CA file for an https --server (a bank's own CA)"
        ),
    ) -> None:
        """Run the agent's plugin: the control socket on 127.0.0.1 for the SDKs (SPEC §3–4)."""
        configure_logging(log_level, sys.stderr)  # every line redacted (kefu.logs)
        try:
            origin_of(server)
            for o in allow_origin:
                origin_of(o)
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]; give URLs such as http://127.0.0.1:8600")
            raise typer.Exit(2) from None
        if launch_url is not None and not launch_url.startswith(f"{SCHEME}:"):
            err.print(f"[red]not a {SCHEME}:// URL: {launch_url!r}[/red]")
            raise typer.Exit(2)
        if install:
            if not sys.platform.startswith("linux"):
                err.print("[red]--install-url-handler supports Linux (.desktop files) only[/red]")
                raise typer.Exit(2)
            command = [sys.executable, "-m", "kefu.cli", "plugin", "--server", server, "--port", str(port)]
            if data_dir is not None:
                command += ["--data-dir", str(data_dir.resolve())]
            path = install_url_handler(command)
            err.print(f"registered {SCHEME}:// for this user: {path}")
            return
        reason = None if headless else desktop_unavailable()
        windowless = headless or reason is not None
        media = None
        if not no_media:
            from kefu.media import MediaError

            try:
                media = media_settings(
                    source=media_source,
                    ice_servers=ice_server,
                    ice_username=ice_username,
                    ice_credential=ice_credential,
                    candidate_addresses=candidate_address,
                    server=server,
                    stream_offline=stream_offline,
                    record=not no_record,
                    video_size=video_size,
                    fps=fps,
                    audio_input=audio_input,
                    sfu_audio_on_demand=not sfu_decode_all_audio,
                    # a window shows every member's video: decoded always (D55)
                    sfu_video_on_demand=windowless and not sfu_decode_all_video,
                    sfu_estimate_bandwidth=sfu_estimate_bandwidth,
                    encode_on_loop=tuple(k for k in encode_on_loop.split(",") if k not in ("", "none")),
                )
            except MediaError as exc:
                err.print(f"[red]{exc.msg}[/red]")
                raise typer.Exit(2) from None
        try:
            settings = PluginSettings(
                server_url=server,
                port=port,
                data_dir=data_dir if data_dir is not None else default_data_dir(),
                allow_origins=tuple(allow_origin),
                allow_many=allow_many,
                login_timeout=login_timeout,
                media=media,
                media_timeout=media_timeout,
                tls_cert=tls_cert,
                tls_key=tls_key,
                server_ca=server_ca,
                media_connect_timeout=media_connect_timeout,
            )
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        by_url = launch_url is not None
        if windowless:
            if reason is not None:
                err.print(f"[yellow]no window[/yellow]: {reason}")
            code = aio.run(run_plugin(settings, launched_by_url=by_url))
        else:
            code = run_qt(
                lambda: run_plugin(settings, launched_by_url=by_url, desktop=True, video_bar=not no_video_bar)
            )
        if code:
            raise typer.Exit(code)
