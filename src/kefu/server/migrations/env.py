"""Alembic's environment: migrations run on the connection the store hands in.

The store runs them on start (``Store.open``); there is no ``alembic.ini``.
To write a new revision, change ``kefu/server/schema.py``, then add
``versions/rNNNN_what.py`` by hand or with ``alembic revision --autogenerate``
pointed at this folder; ``tests/server/test_store.py`` fails until the
migrations and the tables agree.
"""

from __future__ import annotations

from alembic import context

from kefu.server.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("kefu migrations run through kefu.server.store.Store.open(), with a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
