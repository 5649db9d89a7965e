"""Alembic migrations of the server's schema (run by :meth:`kefu.server.store.Store.open`)."""
