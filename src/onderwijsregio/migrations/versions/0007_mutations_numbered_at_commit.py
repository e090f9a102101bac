"""PostgreSQL numbers accepted mutations at commit

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:05:00

A mutation's `seq` is its place in commit order (engine/accept.py). Raising the lane's counter took
its row lock from that statement until the commit, so every acceptance of a region waited for the
previous one's round trips and event-loop turns. On PostgreSQL the row is now inserted without a
number, and a deferred constraint trigger raises the counter and numbers the row while the
transaction commits: the lock is held for the commit only, and `seq` still follows commit order.
SQLite (one writer at a time) keeps numbering in the transaction.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NUMBERING_FUNCTION = """
CREATE FUNCTION onderwijsregio_number_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    INSERT INTO mutation_counters (region_id, sandbox, last_accepted_seq)
    VALUES (NEW.region_id, NEW.sandbox, 1)
    ON CONFLICT (region_id, sandbox)
    DO UPDATE SET last_accepted_seq = mutation_counters.last_accepted_seq + 1
    RETURNING last_accepted_seq INTO next_seq;
    UPDATE mutations SET seq = next_seq
    WHERE region_id = NEW.region_id AND sandbox = NEW.sandbox AND id = NEW.id;
    IF next_seq = 1 THEN
        INSERT INTO mutation_lanes (region_id, sandbox, last_done_seq, change_seq, transient_failures)
        VALUES (NEW.region_id, NEW.sandbox, 0, 0, 0)
        ON CONFLICT (region_id, sandbox) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$
"""

NUMBERING_TRIGGER = """
CREATE CONSTRAINT TRIGGER number_mutation_at_commit
AFTER INSERT ON mutations
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.seq IS NULL)
EXECUTE FUNCTION onderwijsregio_number_mutation()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # NULL only from the insert to its commit, which no other transaction sees. No default: a row
    # inserted without a `seq` must be numbered, not given 0 (which the trigger would leave alone).
    op.alter_column("mutations", "seq", nullable=True, server_default=None)
    op.execute(NUMBERING_FUNCTION)  # one statement per call: the driver prepares each
    op.execute(NUMBERING_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER number_mutation_at_commit ON mutations")
    op.execute("DROP FUNCTION onderwijsregio_number_mutation()")
    op.alter_column("mutations", "seq", nullable=False, server_default="0")
