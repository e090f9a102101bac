"""The sandbox reset (contract §3.8) as a mutation: every domain adds what it keeps in sandbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from onderwijsregio.engine.callbacks import forget_deliveries_of
from onderwijsregio.engine.maintenance import SANDBOX_RESET
from onderwijsregio.engine.models import IdempotencyRecord, Mutation
from onderwijsregio.engine.operations import (
    ApplyContext,
    ItemFailed,
    ItemOutcome,
    Operation,
    on_sandbox_reset,
    register,
    sandbox_reset_steps,
)
from onderwijsregio.scope import scoped


async def apply_reset(context: ApplyContext, _item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    if not context.scope.sandbox:
        raise ItemFailed("bad_request", "Only sandbox data can be reset")
    for step in sandbox_reset_steps():
        await step(context)
    return ItemOutcome("sandbox", context.scope.region_id, "deleted")


@on_sandbox_reset
async def forget_engine_records(context: ApplyContext) -> None:
    """Mutations accepted before the reset (those after it are kept: nothing accepted is lost),
    idempotency records and callback rows; the lanes and their counters go on."""
    session, scope, reset_id = context.session, context.scope, context.mutation_id
    seq = await session.scalar(scoped(select(Mutation.seq), Mutation, scope).where(Mutation.id == reset_id))
    earlier = scoped(select(Mutation.id), Mutation, scope).where(Mutation.seq < seq)
    # Keys of later mutations stay, so a client retrying one of those still gets its replay.
    await session.execute(
        scoped(delete(IdempotencyRecord), IdempotencyRecord, scope).where(
            IdempotencyRecord.mutation_id.in_(earlier)
        )
    )
    await forget_deliveries_of(session, scope, earlier)
    await session.execute(scoped(delete(Mutation), Mutation, scope).where(Mutation.seq < seq))


register(Operation(SANDBOX_RESET, apply_reset))
