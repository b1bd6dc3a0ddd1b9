"""a visit's resume keys are used once (their generation) and end with the visit

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("visits") as batch_op:
        batch_op.add_column(
            sa.Column("resume_generation", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("ended_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("visits") as batch_op:
        batch_op.drop_column("ended_at")
        batch_op.drop_column("resume_generation")
