"""The tables (SQLAlchemy Core). The Alembic migrations in ``migrations/``
create exactly these; a test compares the two.

Times are stored in UTC. Public ids of sessions, visitors, messages and calls
are random 128-bit hex strings (nobody guesses another's session id); the
integer ``num`` columns only order rows (FIFO queue, message order).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = [
    "agents",
    "call_members",
    "calls",
    "events",
    "mailboxes",
    "media_artifacts",
    "messages",
    "metadata",
    "sessions",
    "state_changes",
    "tokens",
    "visitors",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = DateTime(timezone=True)

agents = Table(
    "agents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("admin", Boolean, nullable=False, default=False),
    Column("max_sessions", Integer, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", TS, nullable=False),
    # the authoritative state (kefu.protocol.machine.AgentState); only agents.apply writes it
    Column("state", String(6), nullable=False, default="000000"),
    Column("call_flow", String(32)),
    Column("third_flow", String(32)),
    Column("picked_up", Boolean, nullable=False, default=False),
    Column("state_since", TS, nullable=False),
    Column("last_assigned_at", TS),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the token; the token is never stored
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
)

visitors = Table(
    "visitors",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),  # FIFO order of the queue
    Column("id", String(32), nullable=False, unique=True),
    Column("visitor_id", String(32), ForeignKey("visitors.id"), nullable=False, index=True),
    Column("agent_id", Integer, ForeignKey("agents.id"), index=True),
    Column("status", String(8), nullable=False),  # queued | open | closed
    Column("created_at", TS, nullable=False),
    Column("assigned_at", TS),
    Column("closed_at", TS),
    Column("closed_by", String(8)),  # agent | visitor | system
    Column("close_reason", String(64)),
    Index(None, "status", "num"),
    # r0003: one active (queued or open) session per visitor, decided by the database, not a lock
    Index(
        "uq_sessions_active_visitor",
        "visitor_id",
        unique=True,
        postgresql_where=text("status <> 'closed'"),
        sqlite_where=text("status <> 'closed'"),
    ),
)

messages = Table(
    "messages",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),  # order within a session
    Column("id", String(32), nullable=False, unique=True),
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False, index=True),
    Column("sender", String(8), nullable=False),  # visitor | agent | system
    Column("sender_key", String(48), nullable=False),  # "a:<agent id>" | "v:<visitor id>"
    Column("text", Text, nullable=False),
    Column("client_msg_id", String(64)),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("sender_key", "client_msg_id"),  # idempotency: one message per key
)

state_changes = Table(
    "state_changes",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", Integer, ForeignKey("agents.id"), nullable=False),
    Column("old_code", String(6), nullable=False),
    Column("new_code", String(6), nullable=False),
    Column("flow", String(32), nullable=False),
    Column("event", String(32), nullable=False),
    Column("reason", String(64)),  # the cause: a reason code, or what triggered it
    Column("call_id", String(32), index=True),
    Column("at", TS, nullable=False),
    Index(None, "agent_id", "num"),
)

# Per-recipient push sequence ("a:<agent id>", "v:<visitor id>") and the pushes themselves:
# written in the same transaction as the change they report, sent after the commit.
mailboxes = Table(
    "mailboxes",
    metadata,
    Column("recipient", String(48), primary_key=True),
    Column("last_seq", Integer, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("recipient", String(48), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("message", Text, nullable=False),  # the encoded push, exactly as sent
    Column("created_at", TS, nullable=False),
)

# --- filled by the call issue
calls = Table(
    "calls",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("flow", String(32), nullable=False),
    Column("session_id", String(32), ForeignKey("sessions.id"), index=True),
    Column("agent_id", Integer, ForeignKey("agents.id"), nullable=False, index=True),  # the primary agent
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("answered_at", TS),
    Column("ended_at", TS),
    Column("end_reason", String(64)),
    # r0002: the call issue
    Column("visitor_id", String(32), ForeignKey("visitors.id"), index=True),  # the first visitor
    Column("ended_by", String(64)),
    Column("ring_deadline", TS),  # the ringing timer, rebuilt from here on start
    Column("snapshot", JSON),  # kefu.protocol.call.Call.to_dict()
)

call_members = Table(
    "call_members",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(32), ForeignKey("calls.id"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # agent | visitor
    Column("agent_id", Integer, ForeignKey("agents.id")),
    Column("visitor_id", String(32), ForeignKey("visitors.id")),
    Column("role", String(16), nullable=False),  # primary | visitor | third
    Column("invited_at", TS),
    Column("joined_at", TS),
    Column("left_at", TS),
    Column("outcome", String(32)),
    # r0002: the call issue
    Column("name", String(64)),
    Column("status", String(16)),
    Column("reason", String(128)),
)

# --- filled by the media issue
media_artifacts = Table(
    "media_artifacts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # photo | snapshot | recording | share
    Column("call_id", String(32), ForeignKey("calls.id"), index=True),
    Column("session_id", String(32), ForeignKey("sessions.id"), index=True),
    Column("agent_id", Integer, ForeignKey("agents.id")),
    Column("content_type", String(64), nullable=False),
    Column("path", String(512), nullable=False),  # under the data directory, named by the server
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("meta", JSON),
)
