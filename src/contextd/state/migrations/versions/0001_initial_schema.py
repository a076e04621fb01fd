"""Initial schema: state, bundles served, memory and facts tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table and index."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "bundles_served",
        sa.Column("bundle_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=True),
        sa.Column("query_hash", sa.String(length=64), nullable=False),
        sa.Column("query", sa.String(), nullable=True),
        sa.Column("kinds_requested", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("token_budget", sa.Integer(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("stages_ms", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("bundle_id"),
    )
    op.create_index("ix_bundles_served_agent", "bundles_served", ["agent"])
    op.create_index("ix_bundles_served_created_at", "bundles_served", ["created_at"])
    op.create_index("ix_bundles_served_key_id", "bundles_served", ["key_id"])
    op.create_index("ix_bundles_served_session_id", "bundles_served", ["session_id"])
    op.create_index("ix_bundles_served_user_id", "bundles_served", ["user_id"])

    op.create_table(
        "connector_cursors",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "cost_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("connector", sa.String(length=200), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("embed_tokens", sa.Integer(), nullable=False),
        sa.Column("embed_cpu_seconds", sa.Float(), nullable=False),
        sa.Column("served_tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cost_events_agent", "cost_events", ["agent"])
    op.create_index("ix_cost_events_connector", "cost_events", ["connector"])
    op.create_index("ix_cost_events_day", "cost_events", ["day"])
    op.create_index("ix_cost_events_kind", "cost_events", ["kind"])

    op.create_table(
        "documents",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("source_id", sa.String(length=1000), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("uri", sa.String(), nullable=False),
        sa.Column("entity_key", sa.String(), nullable=False),
        sa.Column("doc_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("acl", sa.JSON(), nullable=False),
        sa.Column("chunk_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source", "source_id"),
    )
    op.create_index("ix_documents_deleted", "documents", ["deleted"])
    op.create_index("ix_documents_entity_key", "documents", ["entity_key"])
    op.create_index("ix_documents_kind", "documents", ["kind"])

    op.create_table(
        "entity_facts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_key", sa.String(length=300), nullable=False),
        sa.Column("attribute", sa.String(length=100), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("source_id", sa.String(length=1000), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("acl", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_entity_facts_timeline", "entity_facts", ["entity_key", "attribute", "valid_from"]
    )

    op.create_table(
        "feedback",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("bundle_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("interaction_id", sa.String(length=36), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("used_item_ids", sa.JSON(), nullable=False),
        sa.Column("comment", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feedback_bundle_id", "feedback", ["bundle_id"])
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])
    op.create_index("ix_feedback_interaction_id", "feedback", ["interaction_id"])
    op.create_index("ix_feedback_user_id", "feedback", ["user_id"])

    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("member", sa.String(length=210), nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "member"),
    )
    op.create_index("ix_group_members_member", "group_members", ["member"])

    op.create_table(
        "interactions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=True),
        sa.Column("query", sa.String(), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("bundle_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=50), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_interactions_bundle_id", "interactions", ["bundle_id"])
    op.create_index("ix_interactions_created_at", "interactions", ["created_at"])
    op.create_index("ix_interactions_session_id", "interactions", ["session_id"])
    op.create_index("ix_interactions_user_id", "interactions", ["user_id"])

    op.create_table(
        "users",
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "interaction_entities",
        sa.Column("interaction_id", sa.String(length=36), nullable=False),
        sa.Column("entity_key", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(["interaction_id"], ["interactions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("interaction_id", "entity_key"),
    )
    op.create_index("ix_interaction_entities_entity_key", "interaction_entities", ["entity_key"])


def downgrade() -> None:
    """Drop everything (children first)."""
    op.drop_index("ix_interaction_entities_entity_key", table_name="interaction_entities")

    op.drop_table("interaction_entities")
    op.drop_table("users")
    op.drop_index("ix_interactions_user_id", table_name="interactions")
    op.drop_index("ix_interactions_session_id", table_name="interactions")
    op.drop_index("ix_interactions_created_at", table_name="interactions")
    op.drop_index("ix_interactions_bundle_id", table_name="interactions")

    op.drop_table("interactions")
    op.drop_index("ix_group_members_member", table_name="group_members")

    op.drop_table("group_members")
    op.drop_index("ix_feedback_user_id", table_name="feedback")
    op.drop_index("ix_feedback_interaction_id", table_name="feedback")
    op.drop_index("ix_feedback_created_at", table_name="feedback")
    op.drop_index("ix_feedback_bundle_id", table_name="feedback")

    op.drop_table("feedback")
    op.drop_index("ix_entity_facts_timeline", table_name="entity_facts")

    op.drop_table("entity_facts")
    op.drop_index("ix_documents_kind", table_name="documents")
    op.drop_index("ix_documents_entity_key", table_name="documents")
    op.drop_index("ix_documents_deleted", table_name="documents")

    op.drop_table("documents")
    op.drop_index("ix_cost_events_kind", table_name="cost_events")
    op.drop_index("ix_cost_events_day", table_name="cost_events")
    op.drop_index("ix_cost_events_connector", table_name="cost_events")
    op.drop_index("ix_cost_events_agent", table_name="cost_events")

    op.drop_table("cost_events")
    op.drop_table("connector_cursors")
    op.drop_index("ix_bundles_served_user_id", table_name="bundles_served")
    op.drop_index("ix_bundles_served_session_id", table_name="bundles_served")
    op.drop_index("ix_bundles_served_key_id", table_name="bundles_served")
    op.drop_index("ix_bundles_served_created_at", table_name="bundles_served")
    op.drop_index("ix_bundles_served_agent", table_name="bundles_served")

    op.drop_table("bundles_served")
    op.drop_table("api_keys")
