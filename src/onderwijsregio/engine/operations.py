"""The operations the engine can execute, registered by the domains (the engine imports none).

An operation applies a mutation's items; the engine first runs a whole batch without savepoints, and
after a failure again with them: a mutation's items together under one savepoint (consecutive
mutations of an operation with independent items as one group), and only after a failure one by one,
each under its own savepoint (engine/apply.py). It may also have a prepare step, which the worker
runs for every item ahead of the ordered apply, outside any database transaction and in parallel
(fetching a file, for instance); its result is handed to the apply step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.db import table_of
from onderwijsregio.engine.models import Mutation, MutationLane
from onderwijsregio.outbound.urls import UrlPolicy
from onderwijsregio.scope import Scope
from onderwijsregio.storage.files import FileStore


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    resource_type: str
    resource_id: str
    action: str  # created, updated, archived, unarchived, deleted, added, removed


class ItemFailed(Exception):
    """A permanent failure of one item: recorded in the mutation's results; the others go on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class RowBuffer:
    """New rows that nothing reads back as objects in the batch (candidates created without
    interactions or files, events), kept until the engine closes the savepoint they belong to and
    then written in one INSERT per table: a mutation of ten creates costs one statement, not ten
    objects in the unit of work. The engine clears it when that savepoint is rolled back."""

    rows: dict[type[Any], list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, model: type[Any], row: dict[str, Any]) -> None:
        self.rows.setdefault(model, []).append(row)

    async def write(self, session: AsyncSession) -> None:
        # In the order the tables were first added to: a row is never added before one it refers to.
        for model, rows in self.rows.items():
            await session.execute(insert(table_of(model)), rows)
        self.rows.clear()

    def clear(self) -> None:
        self.rows.clear()


@dataclass
class LaneCounters:
    """A lane's change and event numbers while a batch is applied. They are kept apart from the
    lane's row, which is written once when the batch commits: on the row, every flush inside the
    batch (each savepoint's) wrote the lane again, one UPDATE per mutation."""

    change_seq: int
    event_seq: int

    @classmethod
    def of(cls, lane: MutationLane) -> LaneCounters:
        return cls(lane.change_seq, lane.event_seq)

    def copy(self) -> LaneCounters:
        return LaneCounters(self.change_seq, self.event_seq)

    def restore(self, saved: LaneCounters) -> None:
        """Back to `saved`, after the savepoint of the numbers taken since was rolled back."""
        self.change_seq, self.event_seq = saved.change_seq, saved.event_seq

    def write_to(self, lane: MutationLane) -> None:
        lane.change_seq, lane.event_seq = self.change_seq, self.event_seq


@dataclass
class ApplyContext:
    """What an apply step works with: the batch's transaction, the scope, and the change sequence.

    Stored files an item removes are listed in `discarded`; the worker deletes them once the batch
    has committed (before, a rollback would leave rows without their files). What an item changed is
    told in `events` (type and the ids concerned), which the webhooks domain records after the items.
    """

    session: AsyncSession
    scope: Scope
    mutation_id: str
    now: datetime
    counters: LaneCounters = field(repr=False)
    discarded: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    deliveries_queued: bool = False  # outbound deliveries to wake once the batch commits
    # What apply steps read once per batch rather than once per mutation (a batch is one transaction
    # of one lane): shared by the contexts of the batch's mutations.
    batch_cache: dict[str, Any] = field(default_factory=dict, repr=False)
    # New rows written when the engine closes the savepoint (see RowBuffer); shared by the contexts
    # of mutations applied together.
    rows: RowBuffer = field(default_factory=RowBuffer, repr=False)

    def emit(self, event_type: str, **ids: str) -> None:
        """An event of this change: `candidate.created`, with `candidateId=…`, and so on (§3.7)."""
        self.events.append((event_type, ids))

    def next_event(self) -> int:
        """The next number of this (region, sandbox)'s event feed: in commit order, like changes."""
        self.counters.event_seq += 1
        return self.counters.event_seq

    def next_change(self) -> int:
        """The next number of this (region, sandbox)'s change sequence (contract §1.3)."""
        self.counters.change_seq += 1
        return self.counters.change_seq


@dataclass(frozen=True)
class PrepareContext:
    scope: Scope
    mutation_id: str
    files: FileStore
    policy: UrlPolicy


ApplyItem = Callable[[ApplyContext, dict[str, Any], Any], Awaitable[ItemOutcome]]
PrepareItem = Callable[[PrepareContext, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    name: str
    apply_item: ApplyItem
    prepare_item: PrepareItem | None = None
    # True when no item reads what another item of this operation writes, in its own mutation or in
    # another (creates of new resources whose ids were given at acceptance): the items of a mutation,
    # and consecutive mutations of the operation in a batch, are then applied together (apply.py).
    independent_items: bool = False
    # When given: the items it says no to are not prepared at all (no task each, prepared value None).
    needs_preparing: Callable[[dict[str, Any]], bool] | None = None


_OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    _OPERATIONS[operation.name] = operation
    return operation


def operation_named(name: str) -> Operation | None:
    return _OPERATIONS.get(name)


def registered_names() -> list[str]:
    return sorted(_OPERATIONS)


# What the sandbox reset clears, contributed by every domain that keeps sandbox data.
ResetStep = Callable[[ApplyContext], Awaitable[None]]
_RESET_STEPS: list[ResetStep] = []


def on_sandbox_reset(step: ResetStep) -> ResetStep:
    _RESET_STEPS.append(step)
    return step


def sandbox_reset_steps() -> list[ResetStep]:
    return list(_RESET_STEPS)


# Hourly clean-ups of the domains (the attachments' file sweeper, for one), run by every engine.
CleanupJob = Callable[[async_sessionmaker[AsyncSession], FileStore], Awaitable[int]]
_CLEANUP_JOBS: list[CleanupJob] = []
Job = TypeVar("Job", bound=CleanupJob)


def on_cleanup(job: Job) -> Job:
    _CLEANUP_JOBS.append(job)
    return job


def cleanup_jobs() -> list[CleanupJob]:
    return list(_CLEANUP_JOBS)


# Steps run once a mutation's items are applied and its outcome is set, in the same transaction, with
# the payload it had (the attachments domain settles staged files; the webhooks domain records events).
AppliedStep = Callable[[ApplyContext, Mutation, dict[str, Any]], Awaitable[None]]
_APPLIED_STEPS: list[AppliedStep] = []


def on_mutation_applied(step: AppliedStep) -> AppliedStep:
    _APPLIED_STEPS.append(step)
    return step


def mutation_applied_steps() -> list[AppliedStep]:
    return list(_APPLIED_STEPS)
