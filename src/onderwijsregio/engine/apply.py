"""Applying one mutation inside the batch transaction: its items, its result, its callback row."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from onderwijsregio.clock import utc_now
from onderwijsregio.engine.models import CallbackDelivery, Mutation, MutationLane
from onderwijsregio.engine.operations import (
    ApplyContext,
    ItemFailed,
    ItemOutcome,
    LaneCounters,
    Operation,
    RowBuffer,
    mutation_applied_steps,
    operation_named,
)
from onderwijsregio.ids import new_id
from onderwijsregio.scope import Scope

log = logging.getLogger(__name__)


class Redo(Exception):
    """Something failed in a batch applied without savepoints (`Batch.savepoints`), where it cannot be
    undone on its own: the worker rolls the batch back and applies it again with them."""


@dataclass
class Batch:
    """A batch being applied: its transaction, its lane (locked), and what its mutations share."""

    session: AsyncSession
    lane: MutationLane
    prepared: dict[tuple[str, int], Any]  # the prepare steps' results, by (mutation id, item index)
    now: datetime
    # The payloads as read when the batch was claimed, by mutation id: the batch is read again
    # without them (worker._batch_to_apply), and a refresh would leave them unloaded.
    payloads: dict[str, Any]
    discarded: list[str] = field(default_factory=list)  # stored files to delete after the commit
    # What apply steps read once per batch rather than once per mutation (ApplyContext.batch_cache).
    cache: dict[str, Any] = field(default_factory=dict)
    # The lane's numbers as the items take them; the worker writes them to the lane at the end.
    counters: LaneCounters = field(init=False)
    # False for the worker's first try of a batch: where a savepoint would let a failure be undone on
    # its own, none is taken, and a failure raises Redo instead. Nearly every batch fails nowhere,
    # and SAVEPOINT and RELEASE were two of the twelve statements of a lone create's apply.
    savepoints: bool = True

    def __post_init__(self) -> None:
        self.counters = LaneCounters.of(self.lane)


async def apply_mutation(batch: Batch, mutation: Mutation) -> bool:
    """Applies the items; stored files to delete after the commit are added to `batch.discarded`.
    True when outbound deliveries were queued."""
    operation = operation_named(mutation.operation)
    items: list[dict[str, Any]] = (mutation.payload or {}).get("items", [])
    context = _context(batch, mutation, RowBuffer())
    given = [batch.prepared.get((mutation.id, index)) for index in range(len(items))]
    results = None
    if operation is not None:
        results = await _all_at_once(context, operation, items, given, batch.savepoints)
    if results is None:
        results = []
        for index, item in enumerate(items):
            if operation is None:
                outcome: ItemOutcome | ItemFailed = ItemFailed(
                    "unknown_operation", "This server cannot apply it"
                )
            else:
                outcome = await _apply_item(context, operation.apply_item, item, given[index])
            results.append(_result(index, outcome))
    await _conclude(context, mutation, results)
    await context.rows.write(batch.session)
    batch.discarded.extend(context.discarded)
    return context.deliveries_queued


async def apply_together(batch: Batch, mutations: list[Mutation]) -> bool | None:
    """Consecutive mutations whose operations have independent items (see `together`), as one: one
    savepoint, and their new rows and events written in one INSERT per table, instead of a savepoint
    and several statements for each. None when anything failed: nothing of it is kept, and the
    caller applies the mutations one by one, so a failure stays with its own mutation and item.
    Otherwise as `apply_mutation`: True when outbound deliveries were queued."""
    session, rows = batch.session, RowBuffer()
    contexts = [_context(batch, mutation, rows) for mutation in mutations]
    counters_before = batch.counters.copy()

    async def apply_all() -> None:
        outcomes = [
            await _apply_items(context, mutation, batch.prepared)
            for context, mutation in zip(contexts, mutations, strict=True)
        ]
        await rows.write(session)
        await session.flush()  # what the applied-steps read (attachments) is in the database
        for context, mutation, mutation_outcomes in zip(contexts, mutations, outcomes, strict=True):
            await _conclude(context, mutation, [_result(i, o) for i, o in enumerate(mutation_outcomes)])
        await rows.write(session)
        await session.flush()

    if not await _under_one_savepoint(session, apply_all, batch.savepoints):
        batch.counters.restore(counters_before)
        await _undone_together(batch, mutations, rows)
        return None
    for context in contexts:
        batch.discarded.extend(context.discarded)
    return any(context.deliveries_queued for context in contexts)


def together(mutation: Mutation, prepared: dict[tuple[str, int], Any]) -> bool:
    """Whether a mutation may be applied with its neighbours (apply_together): an operation whose items
    read nothing that other items write, and no item already failed in its prepare step."""
    operation = operation_named(mutation.operation)
    if operation is None or not operation.independent_items:
        return False
    items = (mutation.payload or {}).get("items", [])
    return not any(isinstance(prepared.get((mutation.id, index)), ItemFailed) for index in range(len(items)))


async def _apply_items(
    context: ApplyContext, mutation: Mutation, prepared: dict[tuple[str, int], Any]
) -> list[ItemOutcome]:
    operation = operation_named(mutation.operation)
    assert operation is not None  # together() said so
    items: list[dict[str, Any]] = (mutation.payload or {}).get("items", [])
    return [
        await operation.apply_item(context, item, prepared.get((mutation.id, index)))
        for index, item in enumerate(items)
    ]


async def _undone_together(batch: Batch, mutations: list[Mutation], rows: RowBuffer) -> None:
    """After the savepoint of mutations applied together was rolled back: their rows are forgotten,
    and the mutations, which SQLAlchemy expired, are read back."""
    rows.clear()
    for mutation in mutations:
        await batch.session.refresh(mutation)
        set_committed_value(mutation, "payload", batch.payloads[mutation.id])


def _context(batch: Batch, mutation: Mutation, rows: RowBuffer) -> ApplyContext:
    scope = Scope(mutation.region_id, mutation.sandbox)
    return ApplyContext(
        batch.session, scope, mutation.id, batch.now, batch.counters, batch_cache=batch.cache, rows=rows
    )


async def _conclude(context: ApplyContext, mutation: Mutation, results: list[dict[str, Any]]) -> None:
    """The mutation's outcome, then the steps that follow it: they see the outcome and the items'
    events (with the payload it had, which finish() drops)."""
    payload = mutation.payload or {}
    finish(mutation, results, utc_now())
    for step in mutation_applied_steps():
        await step(context, mutation, payload)


async def _all_at_once(
    context: ApplyContext,
    operation: Operation,
    items: list[dict[str, Any]],
    given: list[Any],
    savepoint: bool,
) -> list[dict[str, Any]] | None:
    """Every item under one savepoint (or none, see Batch.savepoints): what nearly always happens (no
    item fails) then costs two statements per mutation instead of two per item. When an item does fail,
    all of it is undone and None returned; the caller applies the items one by one, so the failure stays
    with its own item. Items are flushed one after the other, so each sees what the ones before it
    wrote, unless the operation's items are independent: then they are written in one flush (one INSERT
    per table). Without a `savepoint` (see Batch.savepoints) a single item goes this way too."""
    if (savepoint and len(items) < 2) or any(isinstance(prepared, ItemFailed) for prepared in given):
        return None
    before = _Mark.of(context)
    outcomes: list[ItemOutcome] = []

    async def apply_all() -> None:
        for item, prepared in zip(items, given, strict=True):
            outcomes.append(await operation.apply_item(context, item, prepared))
            if not operation.independent_items:
                await context.session.flush()
        await context.rows.write(context.session)
        await context.session.flush()

    if not await _under_one_savepoint(context.session, apply_all, savepoint):
        before.forget_since(context)
        return None
    return [_result(index, outcome) for index, outcome in enumerate(outcomes)]


async def _under_one_savepoint(
    session: AsyncSession, work: Callable[[], Awaitable[None]], savepoint: bool
) -> bool:
    """Runs `work` under a savepoint; False when it failed and was rolled back, for the caller to
    retry its parts one by one (an ItemFailed, or any fault: the finer pass tells which and why). A
    transient database error is raised instead: the whole batch backs off and keeps its place.
    Without a `savepoint` any other failure raises Redo."""
    try:
        if not savepoint:
            # What begin_nested() would flush first: the rows of the mutations before (their
            # outcome, callback and webhook rows) must be in the database for what `work` does to
            # them, such as a sandbox reset's bulk deletes.
            await session.flush()
            await work()
            return True
        async with session.begin_nested():
            await work()
    except DBAPIError as error:
        if is_transient(error):
            raise
        return _undone(error, savepoint)
    except Exception as error:
        return _undone(error, savepoint)
    return True


def _undone(error: Exception, savepoint: bool) -> bool:
    if not savepoint:
        # The type only: the redo logs what fails again, and a failure that does not is a hint.
        log.debug("applying without savepoints failed (%s); the batch is applied again", type(error).__name__)
        raise Redo() from error
    return False


@dataclass(frozen=True)
class _Mark:
    """What an apply context held when a savepoint began."""

    files: int
    events: int
    counters: LaneCounters

    @classmethod
    def of(cls, context: ApplyContext) -> _Mark:
        return cls(len(context.discarded), len(context.events), context.counters.copy())

    def forget_since(self, context: ApplyContext) -> None:
        """After the savepoint was rolled back: its files stay, nothing happened to tell, its
        buffered rows are not written, and the numbers it took are given back."""
        del context.discarded[self.files :]
        del context.events[self.events :]
        context.rows.clear()
        context.counters.restore(self.counters)


async def _apply_item(
    context: ApplyContext, apply_item: Any, item: dict[str, Any], prepared: Any
) -> ItemOutcome | ItemFailed:
    """One item under its own savepoint: a failure undoes only that item's changes (and keeps the
    files it meant to delete, and tells no event)."""
    if isinstance(prepared, ItemFailed):
        return prepared
    before = _Mark.of(context)
    outcome = await _attempt(context, apply_item, item, prepared)
    if isinstance(outcome, ItemFailed):
        before.forget_since(context)
    return outcome


async def _attempt(
    context: ApplyContext, apply_item: Any, item: dict[str, Any], prepared: Any
) -> ItemOutcome | ItemFailed:
    try:
        async with context.session.begin_nested():
            outcome: ItemOutcome = await apply_item(context, item, prepared)
            await context.rows.write(context.session)
            return outcome
    except ItemFailed as failure:
        return failure
    except IntegrityError:
        return ItemFailed("conflict", "The change conflicts with existing data")
    except DBAPIError as error:
        if is_transient(error):
            raise  # the whole batch backs off and keeps its place
        log.error("item of %s refused by the database: %s", context.mutation_id, type(error).__name__)
        return ItemFailed("invalid_data", "The database refused the item's data")
    except Exception as error:
        log.error("item of %s failed: %s", context.mutation_id, type(error).__name__, exc_info=True)
        return ItemFailed("internal_error", "The item could not be applied")


# SQLSTATEs worth waiting out: serialization failure, deadlock, lock not available, shutdown, too many
# connections; and every connection exception (class 08).
_TRANSIENT_STATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"}


def is_transient(error: DBAPIError) -> bool:
    """A database error that may pass by itself, as opposed to one this data will always cause."""
    if error.connection_invalidated or isinstance(error, OperationalError | InterfaceError):
        return True
    state = str(getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None) or "")
    return state in _TRANSIENT_STATES or state.startswith("08")


def _result(index: int, outcome: ItemOutcome | ItemFailed) -> dict[str, Any]:
    if isinstance(outcome, ItemFailed):
        return {
            "index": index,
            "status": "failed",
            "error": {"code": outcome.code, "message": outcome.message},
        }
    return {
        "index": index,
        "status": "succeeded",
        "resourceType": outcome.resource_type,
        "resourceId": outcome.resource_id,
        "action": outcome.action,
    }


def finish(mutation: Mutation, results: list[dict[str, Any]], now: datetime) -> None:
    failed = sum(1 for r in results if r["status"] == "failed")
    mutation.results = results
    mutation.succeeded_count, mutation.failed_count = len(results) - failed, failed
    mutation.status = "failed" if failed else "succeeded"
    mutation.completed_at = now
    mutation.started_at = mutation.started_at or now
    mutation.payload = None  # nobody may read it, so it is not kept


async def queue_callback(session: AsyncSession, mutation: Mutation, now: datetime) -> bool:
    """The outbox row, in the transaction that completes the mutation (§2.5)."""
    if mutation.callback_url is None or mutation.status not in ("succeeded", "failed"):
        return False
    session.add(
        CallbackDelivery(
            region_id=mutation.region_id,
            sandbox=mutation.sandbox,
            id=new_id("dlv"),
            mutation_id=mutation.id,
            url=mutation.callback_url,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return True


def fail_all_items(mutation: Mutation, code: str, message: str, now: datetime) -> None:
    items = (mutation.payload or {}).get("items", []) or [{}]
    finish(mutation, [_result(i, ItemFailed(code, message)) for i in range(len(items))], now)
    mutation.last_error = code
