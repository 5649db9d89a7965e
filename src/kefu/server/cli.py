"""``kefu server``, ``kefu agent add|list|disable|enable|role``, ``kefu team add|assign|list``
and ``kefu reason add|list|remove``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from kefu import aio
from kefu.logs import configure_logging
from kefu.tls import TlsError

from .atrest import SECRETS_KEY_ENV, load_key
from .cli_accounts import agent_app, reason_app, team_app
from .cli_common import DataDir, Db, DbSchema, database_where, err, storage
from .runner import ServerRunner, freeze_heap
from .settings import WILDCARDS, Settings
from .turn import TurnIssuer
from .vault import MediaKeyError, parse_keys

__all__ = ["register"]

TURN_SECRET_ENV = "KEFU_TURN_SECRET"


def _turn_secret(given: str | None, path: Path | None) -> str | None:
    """coturn's shared secret: ``--turn-secret``, else ``--turn-secret-file``, else ``$KEFU_TURN_SECRET``."""
    if given:
        return given
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            err.print(f"[red]cannot read the TURN secret file {path}: {exc.strerror}[/red]")
            raise typer.Exit(2) from None
        if not text:
            err.print(f"[red]the TURN secret file {path} is empty[/red]")
            raise typer.Exit(2)
        return text
    return os.environ.get(TURN_SECRET_ENV) or None


MEDIA_KEY_ENV = "KEFU_MEDIA_KEY"


def _media_keys(path: Path | None) -> tuple[bytes, ...]:
    """The media keys (the current first): ``--media-key-file``, else ``$KEFU_MEDIA_KEY``; none: clear."""
    where = f"${MEDIA_KEY_ENV}"
    text = os.environ.get(MEDIA_KEY_ENV, "")
    if path is not None:
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            err.print(f"[red]cannot read the media key file {path}: {exc.strerror}[/red]")
            raise typer.Exit(2) from None
        if not text.strip():
            err.print(f"[red]the media key file {path} is empty[/red]")
            raise typer.Exit(2)
    try:
        return parse_keys(text)
    except MediaKeyError as exc:
        err.print(f"[red]{where}: {exc}[/red]")  # what is wrong, never the key
        raise typer.Exit(2) from None


def server(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8600, help="port; 0 picks a free one (the URL is printed)"),
    data_dir: Path = DataDir,
    db: str = Db,
    db_schema: str = DbSchema,
    token_ttl: float = typer.Option(12 * 3600.0, help="seconds a login token lives"),
    auth_timeout: float = typer.Option(10.0, help="seconds a socket has for its first message (auth/hello)"),
    ready_on_login: bool = typer.Option(False, help="agents are ready (002000), not busy, when they log in"),
    max_sessions: int = typer.Option(5, help="default capacity of new agents"),
    allowed_origin: list[str] = typer.Option(
        [], "--allowed-origin", help="origin allowed as returnTo and as a browser Origin (repeat)"
    ),
    login_delay_after: int = typer.Option(3, help="failed logins before answers are slowed down"),
    login_delay: float = typer.Option(0.5, help="seconds added per failed login past --login-delay-after"),
    login_max_failures: int = typer.Option(5, help="failed logins per name before it is locked"),
    login_max_failures_per_address: int = typer.Option(
        20, help="failed logins per address before it is locked"
    ),
    login_window: float = typer.Option(300.0, help="seconds failed logins are counted"),
    login_lock: float = typer.Option(300.0, help="seconds a locked name or address is refused"),
    login_check_interval: float = typer.Option(
        0.5, help="seconds between looks at open agent sockets' logins (expired, revoked, disabled: closed)"
    ),
    public_name: list[str] = typer.Option(
        [],
        "--public-name",
        help="a name clients reach this server by (the Host header), besides 127.0.0.1, localhost and "
        "--host; other Hosts are refused (DNS rebinding) (repeat)",
    ),
    handshake_timeout: float = typer.Option(
        5.0, help="seconds a connection has to send a request's line and headers (slow loris)"
    ),
    max_connections_per_address: int = typer.Option(
        200, help="open connections per client address; more are answered 429 (0: no cap)"
    ),
    trusted_proxy: list[str] = typer.Option(
        ["127.0.0.1", "::1"],
        "--trusted-proxy",
        help="address of a proxy in front: not capped, its X-Forwarded-For believed (repeat)",
    ),
    wrap_up_timeout: float = typer.Option(
        0.0, help="seconds of after-call work before ready; 0: the agent decides"
    ),
    ring_timeout: float = typer.Option(30.0, help="seconds an invitation or a video request rings"),
    call_grace: float = typer.Option(
        10.0, help="seconds a call member whose connection dropped has to come back before it is hung up"
    ),
    session_grace: float = typer.Option(
        60.0,
        help="seconds an agent whose connection dropped has to come back before its open sessions "
        "return to the head of the queue",
    ),
    max_message_bytes: int = typer.Option(64 * 1024, help="largest socket message"),
    max_image_bytes: int = typer.Option(8 * 1024 * 1024, help="largest photo or snapshot (bytes)"),
    max_recording_bytes: int = typer.Option(
        2 * 1024 * 1024 * 1024, help="largest recording of one call (bytes, all chunks together)"
    ),
    max_recording_chunk_bytes: int = typer.Option(
        64 * 1024 * 1024, help="largest single upload of a recording chunk (bytes)"
    ),
    photo_request_ttl: float = typer.Option(
        120.0, help="seconds an agent's takePhoto request waits for the visitor's photo or answer"
    ),
    photo_max_open: int = typer.Option(3, help="unanswered takePhoto requests per call; more are refused"),
    rate_limit_messages: int = typer.Option(100, help="socket messages per --rate-limit-window"),
    rate_limit_window: float = typer.Option(10.0, help="seconds of the rate window"),
    rate_limit_strikes: int = typer.Option(20, help="rate_limited answers in a window before close 1008"),
    ping_interval: float = typer.Option(20.0, help="seconds between WebSocket pings"),
    ping_timeout: float = typer.Option(20.0, help="seconds to wait for a pong"),
    redis: str = typer.Option(
        None, "--redis", help="redis://host:port/db shared by several nodes (needs --db postgresql://…)"
    ),
    node_id: str = typer.Option("1", "--node-id", help="this node's name, unique among the nodes"),
    redis_prefix: str = typer.Option("kefu:", help="prefix of this deployment's Redis keys and channel"),
    presence_ttl: float = typer.Option(5.0, help="seconds a dead node's connections still count"),
    db_pool: int = typer.Option(
        10, help="PostgreSQL connections this node keeps open (as many again when busy)"
    ),
    db_writers: int = typer.Option(
        4,
        min=1,
        help="PostgreSQL: batches of chat messages this node writes at once (D70)",
    ),
    db_gather: int = typer.Option(
        32,
        min=0,
        help="PostgreSQL: while a batch is in flight, start another once this many messages wait (D82)",
    ),
    checkpoint_every: float = typer.Option(
        0.2,
        min=0.0,
        help="SQLite: seconds between two WAL checkpoints, run beside the commits; 0: inside them (D88)",
    ),
    sweep_interval: float = typer.Option(1.0, help="seconds between looks for any node's due timers"),
    queue_push_interval: float = typer.Option(
        0.2, help="seconds between two rounds of queue pushes (changes meanwhile are shown together)"
    ),
    service_level_seconds: float = typer.Option(
        20.0, help="a session answered within this many seconds counts towards the service level"
    ),
    floor_refresh: float = typer.Option(5.0, help="seconds between reads of the floor while it is watched"),
    tls_cert: Path = typer.Option(
        None, "--tls-cert", help="serve https/wss with this PEM certificate (its chain after it)"
    ),
    tls_key: Path = typer.Option(None, "--tls-key", help="the certificate's PEM key (mode 0600)"),
    turn: list[str] = typer.Option(
        [],
        "--turn",
        help="a TURN (coturn) URL handed to the plugin and the visitors, e.g. "
        "turn:turn.bank.example:3478?transport=udp (repeat); none by default",
    ),
    turn_secret_file: Path = typer.Option(
        None,
        "--turn-secret-file",
        help=f"a file holding coturn's static-auth-secret (or set ${TURN_SECRET_ENV})",
    ),
    turn_secret: str = typer.Option(
        None, "--turn-secret", help="coturn's static-auth-secret (visible in ps: prefer the file)"
    ),
    turn_ttl: float = typer.Option(86400.0, help="seconds a TURN credential lives (cover the longest call)"),
    secrets_key_file: Path = typer.Option(
        None,
        "--secrets-key-file",
        help=f"a file holding the key (32 random bytes, base64 or hex: `openssl rand -base64 32`) that "
        f"encrypts webhook secrets in the database (or set ${SECRETS_KEY_ENV}); the same on every node",
    ),
    janus: str = typer.Option(
        None,
        "--janus",
        help="Janus's HTTP API, e.g. http://10.0.0.5:8088/janus: calls' media through it (SFU)",
    ),
    janus_recordings: Path = typer.Option(
        None, help="the folder where Janus writes its recordings, shared with this server"
    ),
    janus_api_secret: str = typer.Option(
        None, envvar="KEFU_JANUS_API_SECRET", show_default=False, help="Janus's api_secret (env only)"
    ),
    janus_admin_key: str = typer.Option(
        None, envvar="KEFU_JANUS_ADMIN_KEY", show_default=False, help="the VideoRoom admin_key (env only)"
    ),
    media_key_file: Path = typer.Option(
        None,
        "--media-key-file",
        help=f"encrypt media at rest (AES-256-GCM) with the base64 32-byte key(s) in this file, the current "
        f"first, older ones after it (or set ${MEDIA_KEY_ENV}); none: stored unencrypted",
    ),
    retention_days: float = typer.Option(
        None, "--retention-days", help="delete media files older than this many days (audited); none: keep"
    ),
    recording_workers: int = typer.Option(
        2, help="calls whose recording is made at a time from Janus's files (janus-pp-rec, ffmpeg)"
    ),
    recording_timeout: float = typer.Option(600.0, help="seconds each step of making a recording may take"),
    log_level: str = typer.Option("info", help="debug, info, warning, error"),
    loop: str = typer.Option(None, help="event loop: uvloop (the default where installed) or asyncio"),
) -> None:
    """Run the kefu server: login, agent and visitor sockets, REST API (docs at /docs).

    Several nodes: give each the same --db postgresql://… and --redis redis://…,
    and its own --node-id (docs/deploy.md)."""
    if redis and not (db and db.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://"))):
        err.print("[red]--redis needs --db postgresql://…[/red]: the nodes share one PostgreSQL database.")
        raise typer.Exit(2)
    if (tls_cert is None) != (tls_key is None):
        err.print("[red]--tls-cert and --tls-key go together[/red]: the certificate and its key.")
        raise typer.Exit(2)
    secret = _turn_secret(turn_secret, turn_secret_file)
    media_keys = _media_keys(media_key_file)
    try:
        TurnIssuer(tuple(turn), secret, turn_ttl)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        secrets_key = load_key(secrets_key_file)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    configure_logging(log_level, sys.stderr)  # every line redacted (kefu.logs)
    s = Settings(
        host=host,
        port=port,
        token_ttl=token_ttl,
        auth_timeout=auth_timeout,
        ready_on_login=ready_on_login,
        max_sessions=max_sessions,
        allowed_origins=tuple(allowed_origin),
        login_delay_after=login_delay_after,
        login_delay=login_delay,
        login_max_failures=login_max_failures,
        login_max_failures_per_address=login_max_failures_per_address,
        login_window=login_window,
        login_lock=login_lock,
        login_check_interval=login_check_interval,
        public_names=tuple(public_name),
        handshake_timeout=handshake_timeout,
        max_connections_per_address=max_connections_per_address,
        trusted_proxies=tuple(trusted_proxy),
        wrap_up_timeout=wrap_up_timeout,
        ring_timeout=ring_timeout,
        call_grace=call_grace,
        session_grace=session_grace,
        max_message_bytes=max_message_bytes,
        max_image_bytes=max_image_bytes,
        max_recording_bytes=max_recording_bytes,
        max_recording_chunk_bytes=max_recording_chunk_bytes,
        photo_request_ttl=photo_request_ttl,
        photo_max_open=photo_max_open,
        rate_limit_messages=rate_limit_messages,
        rate_limit_window=rate_limit_window,
        rate_limit_strikes=rate_limit_strikes,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        log_level=log_level.lower(),
        redis_url=redis,
        node_id=node_id,
        redis_prefix=redis_prefix,
        presence_ttl=presence_ttl,
        db_pool=db_pool,
        db_writers=db_writers,
        db_gather=db_gather,
        checkpoint_every=checkpoint_every,
        sweep_interval=sweep_interval,
        queue_push_interval=queue_push_interval,
        service_level_seconds=service_level_seconds,
        floor_refresh=floor_refresh,
        tls_cert=tls_cert,
        tls_key=tls_key,
        turn_urls=tuple(turn),
        turn_secret=secret,
        turn_ttl=turn_ttl,
        secrets_key=secrets_key,
        janus_url=janus,
        janus_recordings=janus_recordings,
        janus_api_secret=janus_api_secret,
        janus_admin_key=janus_admin_key,
        recording_workers=recording_workers,
        media_keys=media_keys,
        retention_days=retention_days,
        recording_timeout=recording_timeout,
        **storage(data_dir, db, db_schema),
    )

    async def main() -> None:
        try:
            runner = ServerRunner(s)
        except TlsError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        try:
            url = await runner.start()
        except OSError as exc:
            err.print(
                f"[red]cannot listen on {host}:{port}: {exc.strerror}[/red]; try another --port (0 = any)."
            )
            raise typer.Exit(1) from None
        freeze_heap()  # what lives as long as the process, out of the collector's way (D69)
        typer.echo(f"kefu server listening on {url}", err=False)
        typer.echo(f"data: {database_where(s)}; API docs: {url}/docs", err=False)
        if s.turn_urls:
            typer.echo(f"TURN: {', '.join(s.turn_urls)} (credentials for {s.turn_ttl:g} s)", err=False)
        if s.secrets_key is None:
            err.print(
                "[yellow]webhook secrets are stored unencrypted in the database[/yellow]: give "
                f"--secrets-key-file (or ${SECRETS_KEY_ENV}) to encrypt them (AES-256-GCM)."
            )
        else:
            typer.echo("webhook secrets: encrypted in the database (AES-256-GCM)", err=False)
        if s.host in WILDCARDS and not s.public_names:
            err.print(
                f"[yellow]listening on every address ({host}): give --public-name <the name clients use>"
                "[/yellow]; requests for any other Host than 127.0.0.1 / localhost are refused."
            )
        if s.media_keys:
            typer.echo(f"media: encrypted at rest (AES-256-GCM, {len(s.media_keys)} key(s))", err=False)
        else:
            err.print(
                "[yellow]media (recordings, photos, snapshots) is stored UNENCRYPTED[/yellow]: give "
                f"--media-key-file or ${MEDIA_KEY_ENV} to encrypt it at rest."
            )
        if s.retention_days is not None:
            typer.echo(f"media: deleted after {s.retention_days:g} days", err=False)
        if s.redis_url:
            typer.echo(f"node {s.node_id}: live events through Redis ({s.redis_prefix}*)", err=False)
        if s.janus_url:
            typer.echo(f"media: through Janus at {s.janus_url} (a room per call)", err=False)
            if s.janus_recordings is not None:
                typer.echo(f"recordings: made from {s.janus_recordings} when each call ends", err=False)
        await runner.wait()

    try:
        chosen = aio.loop_name(loop)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    logging.getLogger("kefu.server").info("event loop: %s", chosen)
    aio.run(main(), loop=chosen)


def register(app: typer.Typer) -> None:
    app.command("server")(server)
    app.add_typer(agent_app, name="agent")
    app.add_typer(team_app, name="team")
    app.add_typer(reason_app, name="reason")
