"""Every option of the server, with its default, in one frozen dataclass.

Every timeout is here so that tests can shorten it; the command line
(``kefu server --help``) exposes the same names. ``clock`` is not an option of
the command line: tests that run the server in their own process pass a clock
they move by hand, so that token expiry, login locks and rate windows are
tested without sleeping.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["Settings", "default_data_dir", "normalize_db_url", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_data_dir() -> Path:
    """``$KEFU_DATA_DIR``, else the per-user data folder of the platform."""
    env = os.environ.get("KEFU_DATA_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "kefu"


def normalize_db_url(url: str) -> str:
    """Accept the usual spellings and pick the async driver: ``postgresql://`` →
    ``postgresql+asyncpg://``, ``sqlite:///f`` → ``sqlite+aiosqlite:///f``."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


@dataclass(frozen=True)
class Settings:
    # --- where
    host: str = "127.0.0.1"
    port: int = 8600
    data_dir: Path = field(default_factory=default_data_dir)
    db_url: str | None = None  # None: SQLite file kefu.db in data_dir
    db_schema: str | None = None  # PostgreSQL only: the schema to use (created if missing)
    # PostgreSQL only: session settings of every connection, e.g. (("synchronous_commit", "off"),) in tests
    db_settings: tuple[tuple[str, str], ...] = ()
    # PostgreSQL only: connections kept open, and as many again opened when busy (every node counts
    # against the server's max_connections); a write holds one from its first statement to its commit
    db_pool: int = 10
    # --- accounts and login
    token_ttl: float = 12 * 3600.0  # seconds a login token lives
    allowed_origins: tuple[str, ...] = ()  # returnTo targets and browser Origins besides our own
    login_delay_after: int = 3  # failures (per name or address) before answers are slowed down
    login_delay: float = 0.5  # seconds added per failure past login_delay_after
    login_max_failures: int = 5  # per name within login_window, then locked
    login_max_failures_per_address: int = 20  # per client address within login_window, then locked
    login_window: float = 300.0
    login_lock: float = 300.0  # seconds a locked name or address is refused
    scrypt_n: int = 2**14  # scrypt cost of new password hashes
    # --- agents
    ready_on_login: bool = False  # logging in makes the agent ready (002000), not busy (001000)
    max_sessions: int = 5  # default capacity of a new agent
    wrap_up_timeout: float = 0.0  # seconds of after-call work before ready; 0: until the agent says
    # --- calls
    ring_timeout: float = 30.0  # seconds an invitation or a visitor's video request rings
    call_grace: float = 10.0  # seconds a call member's lost connection has to come back
    # --- sockets
    auth_timeout: float = 10.0  # first message (auth / hello) within this, else close 1008
    max_message_bytes: int = 64 * 1024  # larger: error too_large, repeated: close 1009
    transport_max_bytes: int = 1024 * 1024  # larger frames are cut by the WebSocket library (1009)
    oversize_strikes: int = 3  # too_large answers before the connection is closed with 1009
    rate_limit_messages: int = 100  # per connection per rate_limit_window
    rate_limit_window: float = 10.0
    rate_limit_strikes: int = 20  # rate_limited answers within a window before close 1008
    outbound_queue: int = 1000  # pushes queued for a slow client before it is closed (1008)
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    queue_push_limit: int = 50  # waiting sessions listed in an agent's queue push
    listen_backlog: int = 4096  # connections waiting to be accepted (the kernel caps it at somaxconn)
    queue_push_interval: float = 0.2  # at most one round of (volatile) queue pushes per interval
    history_in_assignment: int = 100  # messages included when a session is assigned
    # --- several nodes (issue 9): PostgreSQL + Redis; None: one node, the in-process bus
    redis_url: str | None = None
    node_id: str = "1"  # unique among the nodes sharing a database
    redis_prefix: str = "kefu:"  # keys and channel names in Redis (tests use one per test)
    presence_ttl: float = 5.0  # seconds a dead node's connections still count as present
    sweep_interval: float = 1.0  # seconds between looks for due timers (ringing, wrap-up) of any node
    # --- process
    graceful_shutdown: float = 5.0
    log_level: str = "info"
    clock: Callable[[], datetime] = utcnow

    @property
    def database_url(self) -> str:
        if self.db_url:
            return normalize_db_url(self.db_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'kefu.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def now(self) -> datetime:
        return self.clock()
