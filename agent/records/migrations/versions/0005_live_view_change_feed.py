"""the teachers' live view: who ended a visit, the rooms' presence (from LiveKit's
webhooks), and a change feed written by triggers on every table the view shows (on
PostgreSQL the same triggers also NOTIFY the web service)

SQLite drops a table's triggers when a batch migration copies the table: a later migration
that recreates one of these tables creates its trigger again (`create_triggers`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOTIFY_CHANNEL = "tutor_live"
# each watched table, and the column that names its session
WATCHED = {
    "sessions": "id",
    "turns": "session_id",
    "handoffs": "session_id",
    "flags": "session_id",
    "visits": "session_id",
    "room_presence": "session_id",
}


def create_triggers(table: str, column: str, *, sqlite: bool) -> None:
    if sqlite:
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            op.execute(
                f"CREATE TRIGGER live_{table}_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN INSERT INTO live_changes (session_id, at) "
                f"VALUES ({row}.{column}, CURRENT_TIMESTAMP); END"
            )
        return
    op.execute(
        f"CREATE TRIGGER live_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION live_change('{column}')"
    )


def drop_triggers(table: str, *, sqlite: bool) -> None:
    if sqlite:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS live_{table}_{event}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS live_{table} ON {table}")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("visits") as batch_op:
        batch_op.add_column(sa.Column("end_reason", sa.String(length=32), nullable=True))
    op.create_table(
        "room_presence",
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("is_tutor", sa.Boolean(), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=False),
        sa.Column("left_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("room", "identity", name=op.f("pk_room_presence")),
    )
    op.create_index(
        op.f("ix_room_presence_session_id"), "room_presence", ["session_id"], unique=False
    )
    op.create_table(
        "live_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_live_changes_at"), "live_changes", ["at"], unique=False)
    if not sqlite:
        op.execute(
            "CREATE OR REPLACE FUNCTION live_change() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "DECLARE sid text;\n"
            "BEGIN\n"
            "  IF TG_OP = 'DELETE' THEN sid := to_jsonb(OLD) ->> TG_ARGV[0];\n"
            "  ELSE sid := to_jsonb(NEW) ->> TG_ARGV[0]; END IF;\n"
            "  INSERT INTO live_changes (session_id, at)\n"
            "    VALUES (coalesce(sid, ''), now() AT TIME ZONE 'utc');\n"
            f"  PERFORM pg_notify('{NOTIFY_CHANNEL}', coalesce(sid, ''));\n"
            "  RETURN NULL;\n"
            "END $$"
        )
    for table, column in WATCHED.items():
        create_triggers(table, column, sqlite=sqlite)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in WATCHED:
        drop_triggers(table, sqlite=sqlite)
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS live_change()")
    op.drop_index(op.f("ix_live_changes_at"), table_name="live_changes")
    op.drop_table("live_changes")
    op.drop_index(op.f("ix_room_presence_session_id"), table_name="room_presence")
    op.drop_table("room_presence")
    with op.batch_alter_table("visits") as batch_op:
        batch_op.drop_column("end_reason")
