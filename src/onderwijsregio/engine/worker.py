"""Workers: claim a lane, prepare its next batch outside any transaction, apply it in one.

- In order per (region, sandbox): a lane is applied by one worker at a time (its lease), in `seq`.
- Fair across regions: a worker takes one batch of the lane it served longest ago, then lets go.
- Exactly-once effect: the items' changes, the mutations' final status and the lane's
  `last_done_seq` commit together, and only while the lease (checked under a row lock) is ours.
- A killed worker's lease runs out and another worker applies the batch again from the start.
- A transient failure (the database away, a deadlock) backs off and keeps its place; after
  MAX_STALL the head mutation fails so the lane moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import set_committed_value

from onderwijsregio.clock import utc_now
from onderwijsregio.db import UtcDateTime
from onderwijsregio.engine.apply import (
    Batch,
    Redo,
    apply_mutation,
    apply_together,
    fail_all_items,
    queue_callback,
    together,
)
from onderwijsregio.engine.models import (
    FINAL,
    UNFINISHED,
    Mutation,
    MutationCounter,
    MutationLane,
)
from onderwijsregio.engine.operations import (
    ItemFailed,
    PrepareContext,
    operation_named,
)
from onderwijsregio.engine.wakeup import CALLBACKS_CHANNEL, Waker, wake_after_commit
from onderwijsregio.metrics.registry import note_applied, note_applied_again
from onderwijsregio.outbound.urls import UrlPolicy
from onderwijsregio.scope import Scope, scope_parameters, scoped, scoped_by_parameters
from onderwijsregio.storage.files import FileStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineTuning:
    lease: timedelta = timedelta(seconds=30)
    batch_size: int = 50
    poll_seconds: float = 1.0
    max_stall: timedelta = timedelta(minutes=10)
    max_backoff_seconds: float = 60.0
    prepare_concurrency: int = 8
    prepare_seconds: float = 120.0  # per item; URL fetches have their own, shorter limits
    max_attempts: int = 10


@dataclass(frozen=True)
class Claim:
    scope: Scope
    token: str
    after_seq: int  # the lane's last_done_seq when claimed
    through_seq: int


@dataclass(frozen=True)
class Claimed:
    """A claim and its batch as read in the claiming transaction (detached: read, never written)."""

    claim: Claim
    batch: Sequence[Mutation]


class LeaseLost(Exception):
    """Another worker took the lane over (our lease ran out): our batch must not be applied."""


@dataclass
class Prepared:
    """Results of the prepare step, by (mutation id, item index): a value, or the item's failure."""

    values: dict[tuple[str, int], Any] = field(default_factory=dict)


@dataclass
class Worker:
    name: str
    write_sessions: async_sessionmaker[AsyncSession]
    mutations_waker: Waker
    callbacks_waker: Waker
    files: FileStore
    policy: UrlPolicy
    tuning: EngineTuning = field(default_factory=EngineTuning)

    async def run_forever(self) -> None:
        while True:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("worker %s: %s; trying again", self.name, type(error).__name__, exc_info=True)
                await asyncio.sleep(1)
                continue
            if not worked:
                await self.mutations_waker.wait(self.tuning.poll_seconds)

    async def run_once(self) -> bool:
        """Applies one batch of one lane; False when no lane has work."""
        claimed = await self.claim()
        if claimed is None:
            return False
        await self.process(claimed)
        return True

    async def claim(self) -> Claimed | None:
        now = utc_now()
        async with self.write_sessions() as session, session.begin():
            for lane, accepted in await _lanes_with_work(session, now):
                token = secrets.token_hex(16)
                # A lease still set but run out means its worker died: that is trouble too.
                troubled = lane.transient_failures > 0 or lane.lease_token is not None
                taken = await session.execute(
                    scoped(update(MutationLane), MutationLane, Scope(lane.region_id, lane.sandbox))
                    .where(
                        or_(MutationLane.locked_until.is_(None), MutationLane.locked_until < now),
                        MutationLane.last_done_seq == lane.last_done_seq,  # nobody moved it since we looked
                    )
                    .values(
                        lease_token=token,
                        locked_by=self.name,
                        locked_until=now + self.tuning.lease,
                        last_claimed_at=now,
                        transient_failures=lane.transient_failures + (1 if lane.lease_token else 0),
                    )
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another worker was quicker
                # After trouble, one mutation at a time: whatever fails next is the culprit itself.
                size = 1 if troubled else self.tuning.batch_size
                claim = Claim(
                    Scope(lane.region_id, lane.sandbox),
                    token,
                    lane.last_done_seq,
                    min(accepted, lane.last_done_seq + size),
                )
                return Claimed(claim, await _mark_processing(session, claim, now))
        return None

    async def process(self, claimed: Claimed) -> None:
        claim = claimed.claim
        try:
            async with self._lease_kept(claim):
                prepared = await self._prepare(claim.scope, claimed.batch)
            await self._apply(claimed, prepared)
        except LeaseLost:
            log.warning("worker %s lost its lease; the batch is left to the new holder", self.name)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the database away, a deadlock, a bug outside any item: back off
            await self._back_off(claim, error)

    @contextlib.asynccontextmanager
    async def _lease_kept(self, claim: Claim) -> AsyncIterator[None]:
        """Renews the lease while the batch is prepared, which may take longer than one lease."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.tuning.lease.total_seconds() / 3)
                async with self.write_sessions() as session, session.begin():
                    renewed = await session.execute(
                        scoped(update(MutationLane), MutationLane, claim.scope)
                        .where(MutationLane.lease_token == claim.token)
                        .values(locked_until=utc_now() + self.tuning.lease)
                    )
                if renewed.rowcount != 1:  # type: ignore[attr-defined]
                    return

        renewer = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewer.cancel()
            # gather, not `await renewer` under suppress(CancelledError): a cancellation of this
            # worker arriving here must go on, or the worker would never stop.
            await asyncio.gather(renewer, return_exceptions=True)

    async def _prepare(self, scope: Scope, batch: Sequence[Mutation]) -> Prepared:
        """Runs every item's prepare step in parallel, outside any database transaction."""
        prepared = Prepared()
        limit = asyncio.Semaphore(self.tuning.prepare_concurrency)

        async def one(mutation: Mutation, index: int, item: dict[str, Any]) -> None:
            operation = operation_named(mutation.operation)
            if operation is None or operation.prepare_item is None:
                return
            async with limit:
                try:
                    async with asyncio.timeout(self.tuning.prepare_seconds):
                        result: Any = await operation.prepare_item(
                            PrepareContext(scope, mutation.id, self.files, self.policy), item
                        )
                except ItemFailed as failure:
                    result = failure
                except TimeoutError:
                    result = ItemFailed("prepare_timeout", "Preparing the item took too long")
                except Exception as error:
                    log.error(
                        "preparing an item of %s failed: %s", mutation.id, type(error).__name__, exc_info=True
                    )
                    result = ItemFailed("internal_error", "The item could not be prepared")
            prepared.values[(mutation.id, index)] = result

        await asyncio.gather(
            *(
                one(mutation, index, item)
                for mutation in batch
                if mutation.status in UNFINISHED and mutation.payload
                for index, item in enumerate(mutation.payload["items"])
                if _to_prepare(mutation.operation, item)
            )
        )
        return prepared

    async def _apply(self, claimed: Claimed, prepared: Prepared) -> None:
        discarded: list[str] = []
        try:
            await self._apply_batch(claimed, prepared, discarded, savepoints=False)
        except Redo:  # rolled back whole: now each failure is undone on its own, and the rest kept
            note_applied_again()
            discarded.clear()
            await self._apply_batch(claimed, prepared, discarded, savepoints=True)
        await self._delete_files(discarded)

    async def _delete_files(self, keys: list[str]) -> None:
        """After the commit; a file left by a failure here is found by the sweeper later."""
        if not keys:
            return
        try:
            await self.files.delete(keys)
        except Exception as error:
            log.warning("deleting %d stored files failed: %s", len(keys), type(error).__name__)

    async def _apply_batch(
        self, claimed: Claimed, prepared: Prepared, discarded: list[str], savepoints: bool
    ) -> None:
        claim = claimed.claim
        finished: list[tuple[str, int, int]] = []  # counted once committed, not when merely tried
        async with self.write_sessions() as session, session.begin():
            lane = await session.scalar(_LANE_FOR_UPDATE, scope_parameters(claim.scope))
            if lane is None or lane.lease_token != claim.token:
                raise LeaseLost()
            now = utc_now()
            callbacks = False
            payloads = {mutation.id: mutation.payload for mutation in claimed.batch}
            batch = Batch(session, lane, prepared.values, now, payloads, discarded, savepoints=savepoints)
            for group in self._groups(await _batch_to_apply(session, claim, payloads), prepared):
                queued = await apply_together(batch, group) if len(group) > 1 else None
                if queued is None:  # alone, or the group failed somewhere: one by one
                    queued = await self._apply_one_by_one(batch, group)
                callbacks = queued or callbacks
                for mutation in group:
                    finished.append((mutation.status, mutation.succeeded_count, mutation.failed_count))
                    callbacks = await queue_callback(session, mutation, now) or callbacks
            lane.last_done_seq = claim.through_seq
            batch.counters.write_to(lane)
            _release(lane)
            lane.stalled_since, lane.transient_failures = None, 0
            if callbacks:
                await wake_after_commit(session, self.callbacks_waker, CALLBACKS_CHANNEL)
        note_applied(finished)

    def _groups(self, mutations: list[Mutation], prepared: Prepared) -> list[list[Mutation]]:
        """Consecutive mutations of one operation that may be applied together (apply.together) form one
        group; every other mutation is a group of its own."""
        groups: list[list[Mutation]] = []
        last_joins = False
        for mutation in mutations:
            joins = mutation.attempts <= self.tuning.max_attempts and together(mutation, prepared.values)
            # Of one operation only: independence is promised among an operation's own items.
            if joins and last_joins and groups[-1][0].operation == mutation.operation:
                groups[-1].append(mutation)
            else:
                groups.append([mutation])
            last_joins = joins
        return groups

    async def _apply_one_by_one(self, batch: Batch, mutations: list[Mutation]) -> bool:
        queued = False
        for mutation in mutations:
            if mutation.attempts > self.tuning.max_attempts:  # it keeps killing its workers
                fail_all_items(mutation, "too_many_attempts", "Applying it failed too many times", batch.now)
            else:
                queued = await apply_mutation(batch, mutation) or queued
        return queued

    async def _back_off(self, claim: Claim, error: Exception) -> None:
        """Keeps the batch's place; waits longer each time; fails the head mutation after MAX_STALL."""
        log.warning(
            "worker %s: %s on a batch; backing off",
            self.name,
            type(error).__name__,
            exc_info=not isinstance(error, DBAPIError),
        )
        try:
            async with self.write_sessions() as session, session.begin():
                lane = await session.scalar(_LANE_FOR_UPDATE, scope_parameters(claim.scope))
                if lane is None or lane.lease_token != claim.token:
                    return
                now = utc_now()
                lane.stalled_since = lane.stalled_since or now
                lane.transient_failures += 1
                if now - lane.stalled_since >= self.tuning.max_stall:
                    await _give_up_on_head(session, lane, claim, now)
                else:
                    lane.available_at = now + timedelta(seconds=self._backoff(lane.transient_failures))
                _release(lane)
        except DBAPIError:
            pass  # the database is still away: the lease runs out and the batch is tried again

    def _backoff(self, failures: int) -> float:
        """Exponential with full jitter, capped."""
        ceiling = min(self.tuning.max_backoff_seconds, 0.1 * 2 ** min(failures, 20))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


def _to_prepare(operation_name: str, item: dict[str, Any]) -> bool:
    """Whether an item has a prepare step to run (a task each, so not for the thousands without)."""
    operation = operation_named(operation_name)
    if operation is None or operation.prepare_item is None:
        return False
    return operation.needs_preparing is None or operation.needs_preparing(item)


async def _lanes_with_work(session: AsyncSession, now: datetime) -> list[tuple[MutationLane, int]]:
    """Lanes with accepted mutations not yet done, free and not backing off; longest unserved first."""
    return [(lane, accepted) for lane, accepted in await session.execute(_LANES_WITH_WORK, {"now": now})]


async def _mark_processing(session: AsyncSession, claim: Claim, now: datetime) -> list[Mutation]:
    """The claimed batch's unfinished mutations, marked processing and read back in one statement."""
    marked = await session.scalars(_MARK_PROCESSING, {**_range_of(claim), "now": now})
    return sorted(marked, key=lambda mutation: mutation.seq)


async def _batch_to_apply(session: AsyncSession, claim: Claim, payloads: dict[str, Any]) -> list[Mutation]:
    """The batch's unfinished mutations again, now in the applying transaction, but with the payloads
    read when it was claimed (`payloads`): they do not change once accepted, and decoding each twice
    cost the worker time. (A mutation canceled before the claim is final, and left alone.)"""
    read = await session.scalars(_BATCH_WITHOUT_PAYLOADS, _range_of(claim))
    mutations = [mutation for mutation in read if mutation.status not in FINAL]
    for mutation in mutations:
        if mutation.id in payloads:
            set_committed_value(mutation, "payload", payloads[mutation.id])
        else:  # not in the claimed read, which the lease rules out; read it rather than guess
            await session.refresh(mutation, ["payload"])
            payloads[mutation.id] = mutation.payload
    return mutations


def _range_of(claim: Claim) -> dict[str, Any]:
    return {**scope_parameters(claim.scope), "after_seq": claim.after_seq, "through_seq": claim.through_seq}


# Built once (see scope.scoped_by_parameters): the worker runs them for every batch.
_BATCH_WITHOUT_PAYLOADS = (
    scoped_by_parameters(select(Mutation), Mutation)
    .where(Mutation.seq > bindparam("after_seq"), Mutation.seq <= bindparam("through_seq"))
    .order_by(Mutation.seq)
    .options(defer(Mutation.payload))
)
_LANE_FOR_UPDATE = scoped_by_parameters(select(MutationLane), MutationLane).with_for_update()
_NOW = bindparam("now", type_=UtcDateTime())
_LANES_WITH_WORK = (
    select(MutationLane, MutationCounter.last_accepted_seq)
    .join(
        MutationCounter,
        (MutationCounter.region_id == MutationLane.region_id)
        & (MutationCounter.sandbox == MutationLane.sandbox),
    )
    .where(
        MutationCounter.last_accepted_seq > MutationLane.last_done_seq,
        or_(MutationLane.locked_until.is_(None), MutationLane.locked_until < _NOW),
        or_(MutationLane.available_at.is_(None), MutationLane.available_at <= _NOW),
    )
    .order_by(MutationLane.last_claimed_at.asc().nulls_first())
    .limit(5)
    .execution_options(cross_region=True)  # choosing which region to serve next
)
_MARK_PROCESSING = (
    scoped_by_parameters(update(Mutation), Mutation)
    .where(
        Mutation.seq > bindparam("after_seq"),
        Mutation.seq <= bindparam("through_seq"),
        Mutation.status.in_(UNFINISHED),
    )
    .values(
        status="processing",
        # never before its acceptance: `now` was read before this claim waited for the write lock
        started_at=func.coalesce(
            Mutation.started_at,
            case((Mutation.created_at > _NOW, Mutation.created_at), else_=_NOW),
        ),
        attempts=Mutation.attempts + 1,
    )
    # RETURNING: the claim reads what it marked in the same statement, one round trip less per batch.
    .returning(Mutation)
    # Nothing in the session needs to follow it: the claim's session holds no mutations yet.
    .execution_options(synchronize_session=False)
)


async def _give_up_on_head(session: AsyncSession, lane: MutationLane, claim: Claim, now: datetime) -> None:
    head = await session.scalar(
        scoped(select(Mutation), Mutation, claim.scope).where(Mutation.seq == claim.after_seq + 1)
    )
    if head is not None and head.status not in FINAL:
        fail_all_items(head, "transient_error", "Applying it kept failing for the stall limit", now)
        await queue_callback(session, head, now)
    lane.last_done_seq = claim.after_seq + 1
    lane.stalled_since, lane.available_at, lane.transient_failures = None, None, 0


def _release(lane: MutationLane) -> None:
    lane.lease_token, lane.locked_by, lane.locked_until = None, None, None
