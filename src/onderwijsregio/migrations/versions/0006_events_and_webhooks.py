"""the event feed and webhook endpoints

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from onderwijsregio.db import UtcDateTime

JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _region_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["region_id"], ["regions.id"], name=op.f(f"fk_{table}_region_id_regions"), ondelete="CASCADE"
    )


def upgrade() -> None:
    with op.batch_alter_table("mutation_lanes") as batch_op:
        batch_op.add_column(sa.Column("event_seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "events",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", JSON_VALUE, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        _region_key("events"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "seq", name=op.f("pk_events")),
    )
    op.create_index(
        "ix_events_region_id_sandbox_created_at", "events", ["region_id", "sandbox", "created_at"]
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("events", JSON_VALUE, nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("previous_secret", sa.String(length=200), nullable=True),
        sa.Column("previous_secret_until", UtcDateTime(), nullable=True),
        sa.Column("failing_since", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        _region_key("webhook_endpoints"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        "ix_webhook_endpoints_region_id_sandbox_created_at",
        "webhook_endpoints",
        ["region_id", "sandbox", "created_at"],
    )

    op.create_table(
        "webhook_messages",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("body", JSON_VALUE, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        _region_key("webhook_messages"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_webhook_messages")),
    )
    op.create_index("ix_webhook_messages_due", "webhook_messages", ["status", "next_attempt_at"])
    op.create_index(
        "ix_webhook_messages_region_id_sandbox_endpoint",
        "webhook_messages",
        ["region_id", "sandbox", "endpoint_id"],
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("attempted_at", UtcDateTime(), nullable=False),
        _region_key("webhook_attempts"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        "ix_webhook_attempts_region_id_sandbox_endpoint",
        "webhook_attempts",
        ["region_id", "sandbox", "endpoint_id", "attempted_at"],
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_messages")
    op.drop_table("webhook_endpoints")
    op.drop_table("events")
    with op.batch_alter_table("mutation_lanes") as batch_op:
        batch_op.drop_column("event_seq")
