"""attachments and staged files

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from onderwijsregio.db import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("candidate_id", sa.String(length=40), nullable=False),
        sa.Column("field", sa.String(length=20), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_attachments_region_id_regions"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["region_id", "sandbox", "candidate_id"],
            ["candidates.region_id", "candidates.sandbox", "candidates.id"],
            name=op.f("fk_attachments_region_id_candidates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_attachments")),
    )
    op.create_index(
        "ix_attachments_region_id_sandbox_candidate",
        "attachments",
        ["region_id", "sandbox", "candidate_id", "created_at"],
    )
    op.create_table(
        "staged_files",
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("attachment_id", sa.String(length=40), nullable=False),
        sa.Column("mutation_id", sa.String(length=40), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_staged_files_region_id_regions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "attachment_id", name=op.f("pk_staged_files")),
    )
    op.create_index(
        "ix_staged_files_region_id_sandbox_mutation", "staged_files", ["region_id", "sandbox", "mutation_id"]
    )


def downgrade() -> None:
    op.drop_table("staged_files")
    op.drop_table("attachments")
