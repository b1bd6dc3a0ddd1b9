"""teachers' session version and ids never reused; classes and visits no longer cascade;
the audit log of exports and erasures; when a session was last resumed

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _replace_foreign_key(
    table: str, name: str, column: str, referred: str, ondelete: str, *, sqlite: bool
) -> None:
    with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch_op:
        batch_op.drop_constraint(name, type_="foreignkey")
        batch_op.create_foreign_key(name, referred, [column], ["id"], ondelete=ondelete)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite: the table is copied into one declared AUTOINCREMENT (PostgreSQL's sequence
    # never hands an id out twice already)
    with op.batch_alter_table(
        "teachers",
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), server_default="1", nullable=False)
        )
    _replace_foreign_key(
        "classes",
        "fk_classes_teacher_id_teachers",
        "teacher_id",
        "teachers",
        "RESTRICT",
        sqlite=sqlite,
    )
    _replace_foreign_key(
        "visits", "fk_visits_class_id_classes", "class_id", "classes", "RESTRICT", sqlite=sqlite
    )
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.add_column(sa.Column("resumed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.drop_table("audit_log")
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.drop_column("resumed_at")
    _replace_foreign_key(
        "visits", "fk_visits_class_id_classes", "class_id", "classes", "CASCADE", sqlite=sqlite
    )
    _replace_foreign_key(
        "classes",
        "fk_classes_teacher_id_teachers",
        "teacher_id",
        "teachers",
        "CASCADE",
        sqlite=sqlite,
    )
    with op.batch_alter_table("teachers", recreate="always" if sqlite else "auto") as batch_op:
        batch_op.drop_column("session_version")
