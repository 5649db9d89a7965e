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

from kefu.protocol.hosts import LOOPBACK_NAMES

__all__ = ["WILDCARDS", "Settings", "default_data_dir", "normalize_db_url", "utcnow"]

#: Bind addresses that mean "every address of this machine" (not a name clients use).
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


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
    # TLS (``--tls-cert``/``--tls-key``): https and wss on the port; None: plain (or nginx in front)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # PostgreSQL only: connections kept open, and as many again opened when busy (every node counts
    # against the server's max_connections); a write holds one from its first statement to its commit
    db_pool: int = 10
    # PostgreSQL only: group-commit batches of chat messages in flight at once on this node (D70);
    # SQLite has one writer
    db_writers: int = 4
    # PostgreSQL only: while a batch is in flight, the messages that wait to start another (D82)
    db_gather: int = 32
    # SQLite only: at most one WAL checkpoint every this many seconds, in a thread of its own, after
    # writes; the commits never checkpoint (D88). 0: SQLite's own, inside the commits
    checkpoint_every: float = 0.2
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
    # seconds between looks at the logins of open agent sockets: an expired or revoked token, or a
    # disabled account, closes them within this (on every node; docs/server.md)
    login_check_interval: float = 0.5
    # --- agents
    ready_on_login: bool = False  # logging in makes the agent ready (002000), not busy (001000)
    max_sessions: int = 5  # default capacity of a new agent
    wrap_up_timeout: float = 0.0  # seconds of after-call work before ready; 0: until the agent says
    # --- the floor (issue 20): supervisors' live view and the day's figures
    service_level_seconds: float = 20.0  # a session answered within this counts towards the service level
    floor_push_interval: float = 0.2  # at most one round of floor frames per interval (coalesced)
    floor_refresh: float = 5.0  # seconds between reads of the floor while someone watches it
    # --- calls
    ring_timeout: float = 30.0  # seconds an invitation or a visitor's video request rings
    call_grace: float = 10.0  # seconds a call member's lost connection has to come back
    # seconds an agent's lost connection has to come back before its sessions go back to the queue
    session_grace: float = 60.0
    # --- media: TURN (coturn use-auth-secret) handed to the plugin and the visitors (issue 16)
    turn_urls: tuple[str, ...] = ()  # turn:host:port?transport=udp …; none by default
    turn_secret: str | None = field(default=None, repr=False)  # coturn's static-auth-secret; never logged
    turn_ttl: float = 86400.0  # seconds a TURN credential lives; clients renew at 2/3 of it
    # --- secrets at rest (webhook secrets): AES-256-GCM with this key (kefu.server.atrest); None: plain
    secrets_key: bytes | None = field(default=None, repr=False)
    # the names clients reach this server by (its Host header), besides 127.0.0.1, localhost, [::1] and
    # the bind address; any other Host is refused with host_refused (DNS rebinding)
    public_names: tuple[str, ...] = ()
    # --- connections (before the app: kefu.server.guard)
    handshake_timeout: float = 5.0  # a request's line and headers within this, else the connection closes
    max_connections_per_address: int = 200  # open connections per client address; more: 429; 0: no cap
    # a proxy in front: not capped (it speaks for many clients), and its X-Forwarded-For is believed
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # --- media (issue 15): bounds of what a call may store
    max_image_bytes: int = 8 * 1024 * 1024  # a visitor's photo or an agent's snapshot
    max_recording_bytes: int = 2 * 1024 * 1024 * 1024  # one call's recording, in all
    max_recording_chunk_bytes: int = 64 * 1024 * 1024  # one PUT of the recording
    photo_request_ttl: float = 120.0  # seconds a takePhoto request waits for the visitor's answer
    photo_max_open: int = 3  # unanswered takePhoto requests per call; more → rate_limited
    # evidence at rest (issue 17, kefu.server.vault): AES-256 keys, the current first, the others
    # still read (rotation); none: media stored unencrypted (said at start). Never logged.
    media_keys: tuple[bytes, ...] = field(default=(), repr=False)
    retention_days: float | None = None  # media files older than this are deleted (audited); None: kept
    retention_interval: float = 3600.0  # seconds between two sweeps for expired media
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
    # --- integrations (issue 21): the event journal, webhooks, the event stream
    events_poll: float = 1.0  # seconds between looks for events of other nodes (and unsequenced ones)
    # at most one sequencer run a node per this many seconds: under load one run numbers the
    # events of several batches, not one run a batch (D85); 0: one run after every commit
    sequence_every: float = 0.025
    webhook_timeout: float = 10.0  # seconds an endpoint has to answer a delivery
    webhook_backoff: float = 1.0  # seconds before the first retry; doubled each time
    webhook_backoff_max: float = 3600.0  # at most this long between two attempts
    webhook_retry_for: float = 24 * 3600.0  # an event not delivered within this is marked failed
    webhook_lease: float = 60.0  # seconds a node holds an endpoint's delivery (renewed per attempt)
    sse_keepalive: float = 15.0  # seconds between comment lines on an idle event stream
    # --- process
    # --- the SFU mode (issue 17): Janus's API; None: the agent's plugin is the media hub
    janus_url: str | None = None
    janus_api_secret: str | None = field(default=None, repr=False)  # Janus's api_secret
    janus_admin_key: str | None = field(default=None, repr=False)  # the VideoRoom plugin's admin_key
    janus_recordings: Path | None = None  # where Janus writes recordings (shared with the server)
    janus_timeout: float = 5.0  # seconds Janus has to answer a request
    # the call's recording made from Janus's .mjr files when it ends (kefu.server.recording)
    recording_workers: int = 2  # calls post-processed at a time (each runs janus-pp-rec, then ffmpeg)
    recording_timeout: float = 600.0  # seconds each step of the post-processing may take
    recording_tile: tuple[int, int] = (640, 480)  # each member's video in the composed recording
    recording_fps: int = 15
    graceful_shutdown: float = 5.0
    log_level: str = "info"
    clock: Callable[[], datetime] = utcnow

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.tls_cert is not None else "http"

    @property
    def database_url(self) -> str:
        if self.db_url:
            return normalize_db_url(self.db_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'kefu.db'}"

    @property
    def host_names(self) -> frozenset[str]:
        """The names a request's ``Host`` may carry (:func:`kefu.protocol.hosts.host_allowed`)."""
        names = {*LOOPBACK_NAMES, "[::1]", *(n.strip().lower() for n in self.public_names)}
        if self.host not in WILDCARDS:
            names.add(f"[{self.host}]" if ":" in self.host else self.host.lower())
        return frozenset(f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def now(self) -> datetime:
        return self.clock()
