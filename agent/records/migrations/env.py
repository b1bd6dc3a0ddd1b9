"""Alembic environment: runs on the connection `RecordsStore.ensure_schema` passes in."""

from __future__ import annotations

from alembic import context

from agent.records.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through RecordsStore.ensure_schema()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
)
with context.begin_transaction():
    context.run_migrations()
