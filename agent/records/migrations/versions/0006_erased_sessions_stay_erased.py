"""erased sessions stay erased: a tombstone per erased session id, and triggers that drop
any later write naming one (a worker still in the conversation when it was erased)

The tombstone holds the session's random id and when it was erased, nothing of the child.
SQLite drops a table's triggers when a batch migration copies the table: a later migration
that recreates one of these tables creates its trigger again (`create_guards`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# every table a worker or the web service writes under a session, and its session column
GUARDED = {
    "sessions": "id",
    "turns": "session_id",
    "handoffs": "session_id",
    "flags": "session_id",
    "alerts": "session_id",
    "visits": "session_id",
    "room_presence": "session_id",
    "transcript_views": "session_id",
}


def create_guards(table: str, column: str, *, sqlite: bool) -> None:
    if sqlite:
        op.execute(
            f"CREATE TRIGGER erased_{table} BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM erased_sessions WHERE session_id = NEW.{column}) "
            "BEGIN SELECT RAISE(IGNORE); END"
        )
        return
    op.execute(
        f"CREATE TRIGGER erased_{table} BEFORE INSERT ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION skip_erased('{column}')"
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "erased_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_erased_sessions")),
    )
    if not sqlite:
        op.execute(
            "CREATE OR REPLACE FUNCTION skip_erased() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  IF EXISTS (SELECT 1 FROM erased_sessions\n"
            "             WHERE session_id = to_jsonb(NEW) ->> TG_ARGV[0]) THEN\n"
            "    RETURN NULL;\n"
            "  END IF;\n"
            "  RETURN NEW;\n"
            "END $$"
        )
    for table, column in GUARDED.items():
        create_guards(table, column, sqlite=sqlite)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in GUARDED:
        if sqlite:
            op.execute(f"DROP TRIGGER IF EXISTS erased_{table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS erased_{table} ON {table}")
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS skip_erased()")
    op.drop_table("erased_sessions")
