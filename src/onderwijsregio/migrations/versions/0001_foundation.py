"""foundation: regions, api keys, admin override audit, mutations

Revision ID: 0001
Revises:
Create Date: 2026-11-27 00:01:59.385970
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from onderwijsregio.db import UtcDateTime

JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_overrides",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_overrides")),
    )
    with op.batch_alter_table("admin_overrides", schema=None) as batch_op:
        batch_op.create_index(
            "ix_admin_overrides_region_id_created_at", ["region_id", "created_at"], unique=False
        )

    op.create_table(
        "regions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("custom_fields", JSON_VALUE, nullable=False),
        sa.Column("requests_per_second", sa.Integer(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("key_requests_per_second", sa.Integer(), nullable=False),
        sa.Column("key_burst", sa.Integer(), nullable=False),
        sa.Column("max_queued_mutations", sa.Integer(), nullable=False),
        sa.Column("self_service_fields", JSON_VALUE, nullable=False),
        sa.Column("allowed_origins", JSON_VALUE, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regions")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("region_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("permissions", JSON_VALUE, nullable=False),
        sa.Column("created_by_key_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_api_keys_region_id_regions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_api_keys_region_id_id", ["region_id", "id"], unique=False)

    op.create_table(
        "mutations",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_mutations_region_id_regions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_mutations")),
    )
    with op.batch_alter_table("mutations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mutations_region_id_sandbox_status_created_at",
            ["region_id", "sandbox", "status", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("mutations", schema=None) as batch_op:
        batch_op.drop_index("ix_mutations_region_id_sandbox_status_created_at")

    op.drop_table("mutations")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_region_id_id")

    op.drop_table("api_keys")
    op.drop_table("regions")
    with op.batch_alter_table("admin_overrides", schema=None) as batch_op:
        batch_op.drop_index("ix_admin_overrides_region_id_created_at")

    op.drop_table("admin_overrides")
