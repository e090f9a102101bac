"""mutation engine

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:31:27.290576
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from onderwijsregio.db import UtcDateTime

JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_secrets",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.String(length=300), nullable=False),
        sa.Column("previous_secret", sa.String(length=300), nullable=True),
        sa.Column("previous_valid_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("region_id", name=op.f("pk_signing_secrets")),
    )
    op.create_table(
        "callback_deliveries",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("mutation_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"],
            ["regions.id"],
            name=op.f("fk_callback_deliveries_region_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_callback_deliveries")),
    )
    with op.batch_alter_table("callback_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_callback_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_callback_deliveries_region_id_sandbox_mutation_id",
            ["region_id", "sandbox", "mutation_id"],
            unique=False,
        )

    op.create_table(
        "idempotency_records",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("mutation_id", sa.String(length=40), nullable=False),
        sa.Column("response", JSON_VALUE, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"],
            ["regions.id"],
            name=op.f("fk_idempotency_records_region_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "key", name=op.f("pk_idempotency_records")),
    )
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_idempotency_records_region_id_sandbox_expires_at",
            ["region_id", "sandbox", "expires_at"],
            unique=False,
        )

    op.create_table(
        "mutation_counters",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("last_accepted_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"],
            ["regions.id"],
            name=op.f("fk_mutation_counters_region_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", name=op.f("pk_mutation_counters")),
    )
    op.create_table(
        "mutation_lanes",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("last_done_seq", sa.BigInteger(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("lease_token", sa.String(length=40), nullable=True),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("available_at", UtcDateTime(), nullable=True),
        sa.Column("last_claimed_at", UtcDateTime(), nullable=True),
        sa.Column("stalled_since", UtcDateTime(), nullable=True),
        sa.Column("transient_failures", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"],
            ["regions.id"],
            name=op.f("fk_mutation_lanes_region_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", name=op.f("pk_mutation_lanes")),
    )
    with op.batch_alter_table("mutations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("payload", JSON_VALUE, nullable=True))
        batch_op.add_column(sa.Column("resource_ids", JSON_VALUE, nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("results", JSON_VALUE, nullable=True))
        batch_op.add_column(sa.Column("succeeded_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("failed_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("callback_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=500), nullable=True))
        batch_op.create_index(
            "ix_mutations_region_id_sandbox_seq", ["region_id", "sandbox", "seq"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("mutations", schema=None) as batch_op:
        batch_op.drop_index("ix_mutations_region_id_sandbox_seq")
        batch_op.drop_column("last_error")
        batch_op.drop_column("callback_url")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("failed_count")
        batch_op.drop_column("succeeded_count")
        batch_op.drop_column("results")
        batch_op.drop_column("resource_ids")
        batch_op.drop_column("payload")
        batch_op.drop_column("seq")

    op.drop_table("mutation_lanes")
    op.drop_table("mutation_counters")
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_records_region_id_sandbox_expires_at")

    op.drop_table("idempotency_records")
    with op.batch_alter_table("callback_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_callback_deliveries_region_id_sandbox_mutation_id")
        batch_op.drop_index("ix_callback_deliveries_due")

    op.drop_table("callback_deliveries")
    op.drop_table("signing_secrets")
