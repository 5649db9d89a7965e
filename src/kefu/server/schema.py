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
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

__all__ = [
    "agents",
    "audit",
    "call_members",
    "call_supervision",
    "calls",
    "events",
    "journal",
    "journal_streams",
    "mailboxes",
    "media_artifacts",
    "messages",
    "metadata",
    "photo_requests",
    "reasons",
    "sessions",
    "state_changes",
    "team_members",
    "teams",
    "tokens",
    "visitors",
    "webhook_deliveries",
    "webhooks",
    "wrap_ups",
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
    # r0007: the floor (issue 20): may see the floor of its teams
    Column("supervisor", Boolean, nullable=False, default=False, server_default=false()),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the token; the token is never stored
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("revoked_at", TS, nullable=True),  # logout, disabling: the token is refused as token_revoked
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
    # r0010 (issue 20, no lost customer): 1 for a session given back to the queue (its agent
    # logged out, was lost, or transferred it there): it waits at the head, before the others
    Column("priority", Integer, nullable=False, server_default="0"),
    # r0010: the session's latest transfer (its agents see it; never the visitor)
    Column("transfer_from", String(64)),
    Column("transfer_reason", String(32)),
    Column("transfer_note", String(512)),
    Index(None, "status", "num"),
    # r0008: one active (queued or open) session per visitor, decided by the database, not a lock
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
    # r0007: who made the change when it was not the agent or the system (a supervisor's name)
    Column("actor", String(64)),
    Index(None, "agent_id", "num"),
    Index(None, "at"),
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
    # r0011: the SFU mode's recording: {"status": recording|processing|ready|failed, "startedAt", …}
    Column("recording", JSON),
    # r0014: a call waiting in a team's queue after a blind transfer to it (D50): the team while
    # it waits (not while it rings an agent), and when it first joined the queue (its place)
    Column("queue_team", String(64), index=True),
    Column("queued_at", TS),
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
# the SFU mode (issue 17): a call's room in Janus; the secret never leaves the server
media_rooms = Table(
    "media_rooms",
    metadata,
    Column("call_id", String(32), ForeignKey("calls.id"), primary_key=True),
    Column("room", BigInteger, nullable=False),
    Column("secret", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("closed_at", TS),
    Column("node", String(64)),  # the node driving the room's handles (server/sfu_nodes.py)
)

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
    Column("created_at", TS, nullable=False, index=True),
    Column("meta", JSON),
    # r0011: evidence at rest: the key its file is encrypted with (None: stored in clear)
    Column("key_id", String(32)),
    Column("deleted_at", TS),  # retention removed its file
)

# --- r0004: the security review (issue 15)
# Every read and write of a photo, snapshot or recording: who, what, which object, when, from where.
audit = Table(
    "audit",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("actor", String(80), nullable=False),  # "agent:<name>" | "visitor:<name>"
    Column("action", String(32), nullable=False),  # e.g. "write", "read", "finish", "refuse"
    Column("object_kind", String(16), nullable=False),  # photo | snapshot | recording
    Column("object_id", String(32)),  # the artifact, when there is one
    Column("call_id", String(32), index=True),
    Column("address", String(64), nullable=False),  # the client's address
    Column("detail", String(256)),  # e.g. "offset 0, 4096 bytes"
    Index(None, "object_id", "num"),
)

# The agent's takePhoto requests: a visitor's photo or photoAnswer must answer an open one, once.
photo_requests = Table(
    "photo_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("call_id", String(32), ForeignKey("calls.id"), nullable=False, index=True),
    Column("agent_id", Integer, ForeignKey("agents.id"), nullable=False),
    Column("visitor_name", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("answered_at", TS),
    Column("answer", String(16)),  # photo | disabled | refuse | error
)

# --- integrations (issue 21; kefu.server.events, kefu.server.webhooks)
# One row per event, written in the transaction of the change it reports. ``pos`` (the
# public cursor) is given after the commit, in commit order, by the sequencer.
journal = Table(
    "journal",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("type", String(48), nullable=False),
    Column("stream", String(80), nullable=False),  # agent:<name> | session:<id> | call:<id>
    Column("seq", Integer, nullable=False),  # the stream's count, from 1, gap-free
    Column("data", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("pos", Integer, unique=True),  # NULL until sequenced
    # r0015 (D83): the sequencer's "first unsequenced in num order" reads this small index in
    # order; on pos's own index, PostgreSQL visited every row sequenced since the last vacuum
    Index(
        "ix_journal_unsequenced",
        "num",
        postgresql_where=text("pos IS NULL"),
        sqlite_where=text("pos IS NULL"),
    ),
)

# the last seq of each stream (UPDATE … RETURNING: gap-free, serialised by the row's lock)
journal_streams = Table(
    "journal_streams",
    metadata,
    Column("stream", String(80), primary_key=True),
    Column("last_seq", Integer, nullable=False),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("events", JSON, nullable=False),  # the types wanted: names, "*", "call.*"
    # the HMAC key, sealed with the server's secrets key if it has one (kefu.server.atrest);
    # never returned after creation
    Column("secret", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("created_by", String(64), nullable=False),
    # the node delivering this endpoint's events, until lease_until (one node at a time)
    Column("lease_owner", String(64)),
    Column("lease_until", TS),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(32), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event_num", Integer, ForeignKey("journal.num"), nullable=False),
    Column("pos", Integer, nullable=False),  # the event's cursor: the order of delivery
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at", TS, nullable=False),
    Column("last_status", Integer),
    Column("last_error", String(256)),
    Column("created_at", TS, nullable=False),
    Column("delivered_at", TS),
    UniqueConstraint("webhook_id", "event_num"),
    Index(None, "webhook_id", "status", "pos"),
)

# --- r0007: the floor (issue 20): teams, not-ready reasons, wrap-up codes
teams = Table(
    "teams",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    # after-call work policy of the team's agents: None = the server's --wrap-up-timeout
    Column("wrap_up_seconds", Float),
    Column("wrap_up_extend", Boolean, nullable=False, default=False),  # the agent may extend it once
    Column("created_at", TS, nullable=False),
)

team_members = Table(
    "team_members",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True),
    PrimaryKeyConstraint("team_id", "agent_id"),
)

# the admin's catalogue of not-ready reasons; empty: setAgentState takes any text (SPEC compatibility)
reasons = Table(
    "reasons",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("label", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
)

# the outcome codes an agent records for a session or a call (after-call work)
wrap_ups = Table(
    "wrap_ups",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", Integer, ForeignKey("agents.id"), nullable=False, index=True),
    Column("session_id", String(32), ForeignKey("sessions.id"), index=True),
    Column("call_id", String(32), ForeignKey("calls.id"), index=True),
    Column("code", String(32), nullable=False),
    Column("note", String(512)),
    Column("at", TS, nullable=False),
)

# a supervisor's help in a call (issue 20): each join, change of mode and leave, with its time
call_supervision = Table(
    "call_supervision",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(32), ForeignKey("calls.id"), nullable=False, index=True),
    Column("agent_id", Integer, ForeignKey("agents.id"), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("mode", String(16), nullable=False),  # monitor | whisper | barge | left
    Column("old", String(16)),  # the mode before; NULL when it joined
    Column("reason", String(128)),
    Column("at", TS, nullable=False),
)
