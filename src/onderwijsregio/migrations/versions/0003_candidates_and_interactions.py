"""candidates and interactions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:33:16.355599
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from onderwijsregio.db import UtcDateTime

JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidates",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("properties", JSON_VALUE, nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("phone_key", sa.String(length=32), nullable=True),
        sa.Column("phase", sa.String(length=40), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("privacy_consent_at", UtcDateTime(), nullable=True),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_candidates_region_id_regions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_candidates")),
    )
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_candidates_region_id_sandbox_change_seq", ["region_id", "sandbox", "change_seq"], unique=False
        )
        batch_op.create_index(
            "ix_candidates_region_id_sandbox_created_at_id",
            ["region_id", "sandbox", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_candidates_region_id_sandbox_email_key",
            ["region_id", "sandbox", "email_key", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_candidates_region_id_sandbox_phone_key",
            ["region_id", "sandbox", "phone_key", "created_at"],
            unique=False,
        )

    op.create_table(
        "interactions",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("candidate_id", sa.String(length=40), nullable=False),
        sa.Column("performed_at", UtcDateTime(), nullable=False),
        sa.Column("properties", JSON_VALUE, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id", "sandbox", "candidate_id"],
            ["candidates.region_id", "candidates.sandbox", "candidates.id"],
            name=op.f("fk_interactions_region_id_candidates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_interactions_region_id_regions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_interactions")),
    )
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interactions_region_id_sandbox_candidate",
            ["region_id", "sandbox", "candidate_id", "performed_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index("ix_interactions_region_id_sandbox_candidate")

    op.drop_table("interactions")
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_index("ix_candidates_region_id_sandbox_phone_key")
        batch_op.drop_index("ix_candidates_region_id_sandbox_email_key")
        batch_op.drop_index("ix_candidates_region_id_sandbox_created_at_id")
        batch_op.drop_index("ix_candidates_region_id_sandbox_change_seq")

    op.drop_table("candidates")
