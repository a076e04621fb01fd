"""sync run queue and schedule marks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("connector_id", sa.String(length=32), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sync_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_requests_connector_id"), ["connector_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_sync_requests_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_sync_requests_requested_at"), ["requested_at"],
                              unique=False)
    op.create_table(
        "schedule_marks",
        sa.Column("connector_id", sa.String(length=32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connector_id"),
    )


def downgrade() -> None:
    op.drop_table("schedule_marks")
    with op.batch_alter_table("sync_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_requests_requested_at"))
        batch_op.drop_index(batch_op.f("ix_sync_requests_status"))
        batch_op.drop_index(batch_op.f("ix_sync_requests_connector_id"))
    op.drop_table("sync_requests")
