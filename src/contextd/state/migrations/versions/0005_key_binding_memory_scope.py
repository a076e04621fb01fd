"""api keys bound to users, interaction scopes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:30:00

Existing interactions were recorded without a scope: they get ``*`` (not narrowed) for
both dimensions, so only readers whose own scope is not narrowed see them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_key_policies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("group", sa.String(length=200), nullable=True))
    op.create_table(
        "interaction_scopes",
        sa.Column("interaction_id", sa.String(length=36), nullable=False),
        sa.Column("dimension", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["interaction_id"], ["interactions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("interaction_id", "dimension", "value"),
    )
    for dimension in ("source", "kind"):
        op.execute(sa.text(
            "INSERT INTO interaction_scopes (interaction_id, dimension, value) "
            f"SELECT id, '{dimension}', '*' FROM interactions"))


def downgrade() -> None:
    op.drop_table("interaction_scopes")
    with op.batch_alter_table("api_key_policies", schema=None) as batch_op:
        batch_op.drop_column("group")
        batch_op.drop_column("user_ids")
