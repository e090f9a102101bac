"""candidate verification codes, sessions and the verification mail outbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from onderwijsregio.db import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _scope() -> list[sa.Column[object]]:
    return [
        sa.Column("region_id", sa.String(length=40), nullable=False),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
    ]


def _region_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["region_id"], ["regions.id"], name=op.f(f"fk_{table}_region_id_regions"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "verification_codes",
        *_scope(),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        _region_key("verification_codes"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_verification_codes")),
    )
    op.create_index(
        "ix_verification_codes_region_id_sandbox_email",
        "verification_codes",
        ["region_id", "sandbox", "email_key", "created_at"],
    )
    op.create_table(
        "candidate_sessions",
        *_scope(),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("idle_expires_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        _region_key("candidate_sessions"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_candidate_sessions")),
    )
    op.create_index("ix_candidate_sessions_token_hash", "candidate_sessions", ["token_hash"], unique=True)
    op.create_index(
        "ix_candidate_sessions_region_id_sandbox_email",
        "candidate_sessions",
        ["region_id", "sandbox", "email_key"],
    )
    op.create_table(
        "session_mutations",
        *_scope(),
        sa.Column("mutation_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        _region_key("session_mutations"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "mutation_id", name=op.f("pk_session_mutations")),
    )
    op.create_table(
        "verification_requests",
        *_scope(),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("sealed_code", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        _region_key("verification_requests"),
        sa.PrimaryKeyConstraint("region_id", "sandbox", "id", name=op.f("pk_verification_requests")),
    )
    op.create_index("ix_verification_requests_due", "verification_requests", ["next_attempt_at"])


def downgrade() -> None:
    for table in ("verification_requests", "session_mutations", "candidate_sessions", "verification_codes"):
        op.drop_table(table)
