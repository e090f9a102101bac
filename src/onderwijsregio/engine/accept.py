"""Acceptance (contract §2, §2.2, §2.4): a mutation row and its idempotency record, one transaction.

The caller's transaction commits before the 202 is sent, so a 202 is never lost. Raising the lane's
`last_accepted_seq` row-locks the lane's counter until commit (on PostgreSQL the database does it
during the commit), so every mutation's `seq` is its place in commit order: a client that got its
202 before sending the next request always sees them applied in that order.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import BindParameter, Executable, Select, bindparam, delete, func, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.clock import utc_now
from onderwijsregio.db import dialect_name, table_of
from onderwijsregio.engine.models import IdempotencyRecord, Mutation, MutationCounter, MutationLane
from onderwijsregio.engine.views import accepted_view, status_url
from onderwijsregio.engine.wakeup import Waker, wake_here_after_commit
from onderwijsregio.errors import IdempotencyKeyInUse, IdempotencyKeyReused, QueueFull
from onderwijsregio.ids import new_id
from onderwijsregio.scope import Scope, region_wide, scoped

IDEMPOTENCY_RETENTION = timedelta(hours=24)
QUEUE_FULL_RETRY_SECONDS = 30


@dataclass(frozen=True)
class Submission:
    operation: str
    items: list[dict[str, Any]]
    resource_ids: list[str]
    # Rows a domain writes with the mutation, given its id (staged attachment files, for one).
    on_insert: Callable[[AsyncSession, str], None] | None = None
    # Where the 202 points the client, given the mutation id, when not GET /mutations/{id}.
    status_url: Callable[[str], str] | None = None


@dataclass(frozen=True)
class WriteOptions:
    idempotency_key: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True)
class Acceptance:
    data: dict[str, Any]  # the 202's data
    replayed: bool


def request_hash(secret: bytes, method: str, path: str, query: list[tuple[str, str]], body: bytes) -> str:
    """What makes two requests "the same" (§2.4): method, path, query without the key, canonical body.

    Keyed with the server's secret: the record outlives an erasure, and a plain hash of a short body
    (one e-mail address) could be guessed back.
    """
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    fingerprint = orjson.dumps([method, path, sorted(query), canonical.decode(errors="replace")])
    return hmac.new(secret, fingerprint, hashlib.sha256).hexdigest()


async def find_replay(session: AsyncSession, scope: Scope, key: str, fingerprint: str) -> Acceptance | None:
    """The original 202 for a repeated request; 422 when the key was used for a different one."""
    record = await session.scalar(
        scoped(select(IdempotencyRecord), IdempotencyRecord, scope).where(IdempotencyRecord.key == key)
    )
    if record is None or record.expires_at <= utc_now():  # past its retention, the key is free again
        return None
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    return Acceptance(record.response, replayed=True)


async def accept(
    session: AsyncSession,
    scope: Scope,
    submission: Submission,
    options: WriteOptions,
    *,
    fingerprint: str,
    max_queued: int,
    waker: Waker,
) -> Acceptance:
    mutation_id = new_id("mut")
    url = (submission.status_url or (lambda given: status_url(scope, given)))(mutation_id)
    if options.idempotency_key is not None:
        view = accepted_view(mutation_id, submission.operation, submission.resource_ids, url)
        earlier = await _claim_key(session, scope, options.idempotency_key, fingerprint, view)
        if earlier is not None:
            return earlier
    await _check_queue(session, scope, max_queued)
    # The workers are woken when this commits: this process's in-process; on PostgreSQL, those of
    # other processes by the NOTIFY that inserting a mutation sends (migration 0008).
    wake_here_after_commit(session, waker)
    if submission.on_insert is not None:
        submission.on_insert(session, mutation_id)
        await session.flush()
    await _insert_numbered(session, scope, _new_mutation(scope, mutation_id, submission, options))
    return Acceptance(
        accepted_view(mutation_id, submission.operation, submission.resource_ids, url), replayed=False
    )


def _new_mutation(
    scope: Scope, mutation_id: str, submission: Submission, options: WriteOptions
) -> dict[str, Any]:
    """The mutation row's values, all but its `seq` (given when the lane's counter is raised)."""
    return {
        "region_id": scope.region_id,
        "sandbox": scope.sandbox,
        "id": mutation_id,
        "operation": submission.operation,
        "status": "queued",
        "payload": {"items": submission.items},
        "resource_ids": submission.resource_ids,
        "results": None,
        "succeeded_count": 0,
        "failed_count": 0,
        "idempotency_key": options.idempotency_key,
        "callback_url": options.callback_url,
        "attempts": 0,
        "last_error": None,
        "created_at": utc_now(),
        "started_at": None,
        "completed_at": None,
    }


async def _claim_key(
    session: AsyncSession, scope: Scope, key: str, fingerprint: str, view: dict[str, Any]
) -> Acceptance | None:
    """Inserts the record first: of two identical requests at once, the second waits on this row."""
    now = utc_now()
    await session.execute(
        scoped(delete(IdempotencyRecord), IdempotencyRecord, scope).where(
            IdempotencyRecord.key == key, IdempotencyRecord.expires_at <= now
        )
    )
    record = IdempotencyRecord(
        region_id=scope.region_id,
        sandbox=scope.sandbox,
        key=key,
        request_hash=fingerprint,
        mutation_id=view["mutationId"],
        response=view,
        created_at=now,
        expires_at=now + IDEMPOTENCY_RETENTION,
    )
    try:
        async with session.begin_nested():
            session.add(record)
            await session.flush()
    except IntegrityError:
        earlier = await find_replay(session, scope, key, fingerprint)
        if earlier is None:
            raise IdempotencyKeyInUse() from None
        return earlier
    return None


async def _check_queue(session: AsyncSession, scope: Scope, max_queued: int) -> None:
    """The queue limit, read before the counter is locked: that lock orders the region's acceptances,
    so it is held for as few statements as possible."""
    if await unfinished_in_region(session, scope.region_id) > max_queued:
        raise QueueFull(
            "Too many unfinished mutations in this region; retry later",
            headers={"retry-after": str(QUEUE_FULL_RETRY_SECONDS)},
        )


async def _insert_numbered(session: AsyncSession, scope: Scope, row: dict[str, Any]) -> None:
    """Inserts the mutation, numbered with the lane's raised acceptance counter (the lane is created
    on first use).

    On PostgreSQL the row goes in without a number, and the database numbers it while the transaction
    commits (a deferred trigger, migration 0007): the counter's row lock, which makes `seq` follow
    commit order, is then held for the commit only, not from a statement in the transaction until
    the commit (round trips and event-loop turns during which every other acceptance of the region
    waited). SQLite has one writer at a time: it numbers in the transaction."""
    if dialect_name(session) == "postgresql":
        await session.execute(_INSERT_MUTATION, {**row, "seq": None})
        return
    key = {"region_id": scope.region_id, "sandbox": scope.sandbox}
    seq: int = (await session.execute(_RAISE_COUNTER, key)).scalar_one()
    await session.execute(_INSERT_MUTATION, {**row, "seq": seq})
    if seq == 1:
        await session.execute(_NEW_LANE, key)


def _sqlite_numbering() -> tuple[Executable, Executable]:
    """The counter's upsert and the new lane, built once (every acceptance runs them); on the tables,
    not the ORM classes: a Core statement costs half the CPU of an ORM-enabled one."""
    key: dict[str, Any] = {"region_id": bindparam("region_id"), "sandbox": bindparam("sandbox")}
    counters = table_of(MutationCounter)
    raise_counter = (
        sqlite_insert(counters)
        .values(**key, last_accepted_seq=1)
        .on_conflict_do_update(
            index_elements=["region_id", "sandbox"],
            set_={"last_accepted_seq": counters.c.last_accepted_seq + 1},
        )
        .returning(counters.c.last_accepted_seq)
    )
    new_lane = (
        sqlite_insert(table_of(MutationLane))
        .values(**key, last_done_seq=0, change_seq=0, transient_failures=0)
        .on_conflict_do_nothing(index_elements=["region_id", "sandbox"])
    )
    return raise_counter, new_lane


_RAISE_COUNTER, _NEW_LANE = _sqlite_numbering()
_INSERT_MUTATION = insert(table_of(Mutation))


def _unfinished_statement() -> Select[Any]:
    region: BindParameter[str] = bindparam("region_id")
    accepted = region_wide(select(func.sum(MutationCounter.last_accepted_seq)), MutationCounter, region)
    done = region_wide(select(func.sum(MutationLane.last_done_seq)), MutationLane, region)
    return select(func.coalesce(accepted.scalar_subquery(), 0) - func.coalesce(done.scalar_subquery(), 0))


_UNFINISHED = _unfinished_statement()  # built once: every acceptance runs it


async def unfinished_in_region(session: AsyncSession, region_id: str) -> int:
    """Accepted but not yet done, over the region's live and sandbox lanes, in one statement."""
    return int(await session.scalar(_UNFINISHED, {"region_id": region_id}) or 0)


async def forget_expired_keys(session: AsyncSession, scope: Scope) -> int:
    """The retention clean-up of one lane's idempotency records."""
    result = await session.execute(
        scoped(delete(IdempotencyRecord), IdempotencyRecord, scope).where(
            IdempotencyRecord.expires_at < utc_now()
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
