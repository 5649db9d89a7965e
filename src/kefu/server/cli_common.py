"""What the ``kefu`` server-side commands share: the console, the storage options, a store to work on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from kefu.protocol import ApiError

from .settings import Settings, default_data_dir
from .store import Store

__all__ = ["DataDir", "Db", "DbSchema", "console", "database_where", "err", "run_on_store", "storage"]


console = Console()
err = Console(stderr=True)

DataDir = typer.Option(
    None, "--data-dir", help="data folder (default: the per-user data folder, or $KEFU_DATA_DIR)"
)
Db = typer.Option(
    None, "--db", help="database URL, e.g. postgresql://user@host/db (default: SQLite in the data folder)"
)
DbSchema = typer.Option(None, "--db-schema", help="PostgreSQL schema to use (created if missing)")


def storage(data_dir: Path | None, db: str | None, db_schema: str | None) -> dict[str, Any]:
    return {"data_dir": data_dir or default_data_dir(), "db_url": db, "db_schema": db_schema}


def database_where(s: Settings) -> str:
    return s.db_url if s.db_url else str(s.data_dir / "kefu.db")


async def _with_store(s: Settings, body: Any) -> Any:
    store = Store(s)
    await store.open()
    try:
        return await body(store)
    finally:
        await store.close()


def run_on_store(s: Settings, body: Any) -> Any:
    try:
        return asyncio.run(_with_store(s, body))
    except ApiError as exc:
        err.print(f"[red]{exc.msg}[/red]")
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(
            f"[red]cannot open the database at {database_where(s)}: {exc}[/red]; check --data-dir / --db."
        )
        raise typer.Exit(1) from None
