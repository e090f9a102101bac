"""PostgreSQL wakes the workers when a mutation is inserted

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 13:10:00

Every acceptance sent `SELECT pg_notify(...)` as a statement of its own, one more round trip per
write request. A statement trigger on `mutations` now sends the same notification; like any NOTIFY
it reaches the listening workers when the transaction commits, and not at all if it rolls back.
SQLite has no other process to tell: the worker in the API process is woken in-process.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WAKE_FUNCTION = """
CREATE FUNCTION onderwijsregio_wake_workers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('onderwijsregio_mutations', '');
    RETURN NULL;
END
$$
"""

WAKE_TRIGGER = """
CREATE TRIGGER wake_workers_on_insert
AFTER INSERT ON mutations
FOR EACH STATEMENT
EXECUTE FUNCTION onderwijsregio_wake_workers()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(WAKE_FUNCTION)  # one statement per call: the driver prepares each
    op.execute(WAKE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER wake_workers_on_insert ON mutations")
    op.execute("DROP FUNCTION onderwijsregio_wake_workers()")
