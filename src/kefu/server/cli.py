"""``kefu server`` and ``kefu agent add|list|disable|enable``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kefu import aio
from kefu.protocol import CODE_INFO, ApiError, Code

from .accounts import add_agent, list_agents, set_disabled
from .runner import ServerRunner
from .settings import Settings, default_data_dir
from .store import Store

__all__ = ["register"]

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(
    None, "--data-dir", help="data folder (default: the per-user data folder, or $KEFU_DATA_DIR)"
)
Db = typer.Option(
    None, "--db", help="database URL, e.g. postgresql://user@host/db (default: SQLite in the data folder)"
)
DbSchema = typer.Option(None, "--db-schema", help="PostgreSQL schema to use (created if missing)")


def _base(data_dir: Path | None, db: str | None, db_schema: str | None) -> dict[str, Any]:
    return {"data_dir": data_dir or default_data_dir(), "db_url": db, "db_schema": db_schema}


def _where(s: Settings) -> str:
    return s.db_url if s.db_url else str(s.data_dir / "kefu.db")


async def _with_store(s: Settings, body: Any) -> Any:
    store = Store(s)
    await store.open()
    try:
        return await body(store)
    finally:
        await store.close()


def _run(s: Settings, body: Any) -> Any:
    try:
        return asyncio.run(_with_store(s, body))
    except ApiError as exc:
        err.print(f"[red]{exc.msg}[/red]")
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"[red]cannot open the database at {_where(s)}: {exc}[/red]; check --data-dir / --db.")
        raise typer.Exit(1) from None


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
    wrap_up_timeout: float = typer.Option(
        0.0, help="seconds of after-call work before ready; 0: the agent decides"
    ),
    ring_timeout: float = typer.Option(30.0, help="seconds an invitation or a video request rings"),
    call_grace: float = typer.Option(
        10.0, help="seconds a call member whose connection dropped has to come back before it is hung up"
    ),
    max_message_bytes: int = typer.Option(64 * 1024, help="largest socket message"),
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
    sweep_interval: float = typer.Option(1.0, help="seconds between looks for any node's due timers"),
    queue_push_interval: float = typer.Option(
        0.2, help="seconds between two rounds of queue pushes (changes meanwhile are shown together)"
    ),
    log_level: str = typer.Option("info", help="debug, info, warning, error"),
    loop: str = typer.Option(None, help="event loop: uvloop (the default where installed) or asyncio"),
) -> None:
    """Run the kefu server: login, agent and visitor sockets, REST API (docs at /docs).

    Several nodes: give each the same --db postgresql://… and --redis redis://…,
    and its own --node-id (docs/deploy.md)."""
    if redis and not (db and db.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://"))):
        err.print("[red]--redis needs --db postgresql://…[/red]: the nodes share one PostgreSQL database.")
        raise typer.Exit(2)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
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
        wrap_up_timeout=wrap_up_timeout,
        ring_timeout=ring_timeout,
        call_grace=call_grace,
        max_message_bytes=max_message_bytes,
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
        sweep_interval=sweep_interval,
        queue_push_interval=queue_push_interval,
        **_base(data_dir, db, db_schema),
    )

    async def main() -> None:
        runner = ServerRunner(s)
        try:
            url = await runner.start()
        except OSError as exc:
            err.print(
                f"[red]cannot listen on {host}:{port}: {exc.strerror}[/red]; try another --port (0 = any)."
            )
            raise typer.Exit(1) from None
        typer.echo(f"kefu server listening on {url}", err=False)
        typer.echo(f"data: {_where(s)}; API docs: {url}/docs", err=False)
        if s.redis_url:
            typer.echo(f"node {s.node_id}: live events through Redis ({s.redis_prefix}*)", err=False)
        await runner.wait()

    try:
        chosen = aio.loop_name(loop)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    logging.getLogger("kefu.server").info("event loop: %s", chosen)
    aio.run(main(), loop=chosen)


agent_app = typer.Typer(help="Agent accounts: add, list, disable.", no_args_is_help=True)


@agent_app.command("add")
def agent_add(
    name: str = typer.Argument(..., help="the agent's login name, e.g. 23160006"),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    admin: bool = typer.Option(False, "--admin", help="may see every agent's data"),
    max_sessions: int = typer.Option(5, help="IM sessions the agent handles at once"),
    data_dir: Path = DataDir,
    db: str = Db,
    db_schema: str = DbSchema,
) -> None:
    """Add an agent. The password is stored as a scrypt hash only."""
    s = Settings(**_base(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        return await add_agent(store, name, password, admin=admin, max_sessions=max_sessions, now=s.now())

    agent = _run(s, body)
    role = "admin" if agent.admin else "agent"
    console.print(
        f"added {role} [bold]{agent.name}[/bold] (max {agent.max_sessions} sessions) in {_where(s)}"
    )


@agent_app.command("list")
def agent_list(data_dir: Path = DataDir, db: str = Db, db_schema: str = DbSchema) -> None:
    """List the agents with their current state."""
    s = Settings(**_base(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        async with store.read() as conn:
            return await list_agents(conn)

    rows = _run(s, body)
    if not rows:
        console.print(f"no agents in {_where(s)}; add one with `kefu agent add NAME --password …`")
        return
    t = Table("name", "role", "state", "since", "open / max", "account", title=f"agents in {_where(s)}")
    for r in rows:
        code = Code(r["state"])
        t.add_row(
            r["name"],
            "admin" if r["admin"] else "agent",
            f"{code.value} {CODE_INFO[code].meaning}",
            r["stateSince"][:19].replace("T", " "),
            f"{r['openSessions']} / {r['maxSessions']}",
            "[red]disabled[/red]" if r["disabled"] else "active",
        )
    console.print(t)


def _set(name: str, disabled: bool, data_dir: Path | None, db: str | None, db_schema: str | None) -> None:
    s = Settings(**_base(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        return await set_disabled(store, name, disabled)

    _run(s, body)
    console.print(f"{name}: {'disabled; its tokens are revoked' if disabled else 'enabled'}")


@agent_app.command("disable")
def agent_disable(
    name: str = typer.Argument(...), data_dir: Path = DataDir, db: str = Db, db_schema: str = DbSchema
) -> None:
    """Disable an agent: it can no longer log in, and its tokens stop working."""
    _set(name, True, data_dir, db, db_schema)


@agent_app.command("enable")
def agent_enable(
    name: str = typer.Argument(...), data_dir: Path = DataDir, db: str = Db, db_schema: str = DbSchema
) -> None:
    """Enable a disabled agent again."""
    _set(name, False, data_dir, db, db_schema)


def register(app: typer.Typer) -> None:
    app.command("server")(server)
    app.add_typer(agent_app, name="agent")
