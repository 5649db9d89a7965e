"""``kefu agent add|list|disable|enable|role``, ``kefu team add|assign|list`` and
``kefu reason add|list|remove``: accounts, teams and not-ready reasons, straight in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from kefu.protocol import CODE_INFO, Code

from .accounts import add_agent, list_agents, set_disabled
from .cli_common import DataDir, Db, DbSchema, console, database_where, run_on_store, storage
from .reasons import add_reason, list_reasons, remove_reason
from .settings import Settings
from .store import Store
from .teams import add_team, assign, list_teams, set_supervisor

__all__ = ["agent_app", "reason_app", "team_app"]

agent_app = typer.Typer(help="Agent accounts: add, list, disable.", no_args_is_help=True)


@agent_app.command("add")
def agent_add(
    name: str = typer.Argument(..., help="the agent's login name, e.g. 23160006"),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    admin: bool = typer.Option(False, "--admin", help="may see every agent's data"),
    supervisor: bool = typer.Option(False, "--supervisor", help="may see the floor of its teams"),
    team: list[str] = typer.Option([], "--team", help="a team the agent belongs to (repeat)"),
    max_sessions: int = typer.Option(5, help="IM sessions the agent handles at once"),
    data_dir: Path = DataDir,
    db: str = Db,
    db_schema: str = DbSchema,
) -> None:
    """Add an agent. The password is stored as a scrypt hash only."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        agent = await add_agent(store, name, password, admin=admin, max_sessions=max_sessions, now=s.now())
        if supervisor:
            await set_supervisor(store, name)
        for t in team:
            await assign(store, t, name)
        return agent

    agent = run_on_store(s, body)
    role = "admin" if agent.admin else "supervisor" if supervisor else "agent"
    console.print(
        f"added {role} [bold]{agent.name}[/bold] (max {agent.max_sessions} sessions) in {database_where(s)}"
    )


@agent_app.command("list")
def agent_list(data_dir: Path = DataDir, db: str = Db, db_schema: str = DbSchema) -> None:
    """List the agents with their current state."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        async with store.read() as conn:
            return await list_agents(conn)

    rows = run_on_store(s, body)
    if not rows:
        console.print(f"no agents in {database_where(s)}; add one with `kefu agent add NAME --password …`")
        return
    t = Table(
        "name", "role", "state", "since", "open / max", "account", title=f"agents in {database_where(s)}"
    )
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
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        return await set_disabled(store, name, disabled)

    run_on_store(s, body)
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


@agent_app.command("role")
def agent_role(
    name: str = typer.Argument(...),
    supervisor: bool = typer.Option(..., "--supervisor/--no-supervisor", help="may see its teams' floor"),
    data_dir: Path = DataDir,
    db: str = Db,
    db_schema: str = DbSchema,
) -> None:
    """Make an agent a supervisor, or no longer one."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        await set_supervisor(store, name, supervisor)

    run_on_store(s, body)
    console.print(f"{name}: {'supervisor' if supervisor else 'not a supervisor'}")


team_app = typer.Typer(help="Teams of agents and their supervisors.", no_args_is_help=True)


@team_app.command("add")
def team_add(
    name: str = typer.Argument(..., help="the team's name"),
    wrap_up_seconds: float = typer.Option(
        None, "--wrap-up-seconds", help="after-call work of its agents (default: the server's)"
    ),
    wrap_up_extend: bool = typer.Option(False, "--wrap-up-extend", help="an agent may extend it once"),
    data_dir: Path = DataDir,
    db: str = Db,
    db_schema: str = DbSchema,
) -> None:
    """Add a team."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        return await add_team(
            store, name, now=s.now(), wrap_up_seconds=wrap_up_seconds, wrap_up_extend=wrap_up_extend
        )

    run_on_store(s, body)
    console.print(f"added team [bold]{name}[/bold] in {database_where(s)}")


@team_app.command("assign")
def team_assign(
    team: str = typer.Argument(..., help="the team"),
    agent: str = typer.Argument(..., help="the agent or supervisor"),
    remove: bool = typer.Option(False, "--remove", help="take the agent out of the team"),
    data_dir: Path = DataDir,
    db: str = Db,
    db_schema: str = DbSchema,
) -> None:
    """Put an agent (or a supervisor) in a team, or take it out."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        await assign(store, team, agent, remove=remove)

    run_on_store(s, body)
    console.print(f"{agent}: {'out of' if remove else 'in'} team {team}")


@team_app.command("list")
def team_list(data_dir: Path = DataDir, db: str = Db, db_schema: str = DbSchema) -> None:
    """List the teams with their supervisors, agents and wrap-up policy."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        async with store.read() as conn:
            return await list_teams(conn)

    rows = run_on_store(s, body)
    t = Table("team", "supervisors", "agents", "wrap-up", title=f"teams in {database_where(s)}")
    for r in rows:
        wrap = "server's" if r["wrapUpSeconds"] is None else f"{r['wrapUpSeconds']:g} s"
        t.add_row(
            r["name"],
            ", ".join(r["supervisors"]),
            ", ".join(r["members"]),
            wrap + (" (extendable)" if r["wrapUpExtend"] else ""),
        )
    console.print(t)


reason_app = typer.Typer(help="The catalogue of not-ready reasons.", no_args_is_help=True)


@reason_app.command("add")
def reason_add(
    code: str = typer.Argument(..., help="the code agents send, e.g. LUNCH"),
    label: str = typer.Argument(..., help="what supervisors read, e.g. 'Lunch break'"),
    data_dir: Path = DataDir,
    db: str = Db,
    db_schema: str = DbSchema,
) -> None:
    """Add a not-ready reason; once there is one, setAgentState takes only the catalogue's codes."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        return await add_reason(store, code, label, now=s.now())

    run_on_store(s, body)
    console.print(f"added reason [bold]{code}[/bold]: {label}")


@reason_app.command("list")
def reason_list(data_dir: Path = DataDir, db: str = Db, db_schema: str = DbSchema) -> None:
    """List the not-ready reasons."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        async with store.read() as conn:
            return await list_reasons(conn)

    rows = run_on_store(s, body)
    if not rows:
        console.print("no reasons: setAgentState takes any text as its reason")
        return
    t = Table("code", "label", title=f"not-ready reasons in {database_where(s)}")
    for r in rows:
        t.add_row(r["code"], r["label"])
    console.print(t)


@reason_app.command("remove")
def reason_remove(
    code: str = typer.Argument(...), data_dir: Path = DataDir, db: str = Db, db_schema: str = DbSchema
) -> None:
    """Remove a not-ready reason (the history keeps it)."""
    s = Settings(**storage(data_dir, db, db_schema))

    async def body(store: Store) -> Any:
        await remove_reason(store, code)

    run_on_store(s, body)
    console.print(f"removed reason {code}")
