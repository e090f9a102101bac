"""A Mutation Engine operation registered by the tests (not by production code): `test.record`, and
`test.record_together`, the same with independent items (applied together with its neighbours).

Each item appends a row to its own table `engine_test_effects`, so tests can count effects (exactly
once?) and read their order (in order?). Items can ask to fail permanently, to fail transiently a
number of times, or to take a while.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from onderwijsregio.engine.operations import (
    ApplyContext,
    ItemFailed,
    ItemOutcome,
    Operation,
    PrepareContext,
    register,
)

OPERATION = "test.record"
# The same, declared with independent items: consecutive ones in a batch are applied together.
TOGETHER_OPERATION = "test.record_together"
_transient_failures: Counter[str] = Counter()


class TestTables(DeclarativeBase):
    pass


class Effect(TestTables):
    __tablename__ = "engine_test_effects"

    row: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region_id: Mapped[str] = mapped_column(String(40))
    sandbox: Mapped[bool] = mapped_column(Boolean)
    mutation_id: Mapped[str] = mapped_column(String(40))
    item_index: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(String(100))
    change_seq: Mapped[int] = mapped_column(BigInteger)
    prepared: Mapped[str | None] = mapped_column(String(100))


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(TestTables.metadata.create_all)


async def prepare(context: PrepareContext, item: dict[str, Any]) -> Any:
    if item.get("prepareFails"):
        raise ItemFailed("prepare_failed", "the prepare step refused this item")
    if item.get("prepareCrash"):
        raise RuntimeError("a bug in a prepare step")
    await asyncio.sleep(float(item.get("prepareSeconds", 0)))
    return f"prepared:{item.get('value')}"


async def apply(context: ApplyContext, item: dict[str, Any], prepared: Any) -> ItemOutcome:
    value = str(item.get("value", ""))
    if item.get("fail") == "permanent":
        raise ItemFailed("test_refused", "this item was told to fail")
    if item.get("fail") == "crash":
        raise RuntimeError("an unexpected bug")
    key = f"{context.mutation_id}:{value}"
    if _transient_failures[key] < int(item.get("transientTimes", 0)):
        _transient_failures[key] += 1
        raise OperationalError("SELECT 1", {}, Exception("the database went away"))
    await asyncio.sleep(float(item.get("applySeconds", 0)))
    context.session.add(
        Effect(
            region_id=context.scope.region_id,
            sandbox=context.scope.sandbox,
            mutation_id=context.mutation_id,
            item_index=int(item.get("index", 0)),
            value=value,
            change_seq=context.next_change(),
            prepared=prepared if isinstance(prepared, str) else None,
        )
    )
    return ItemOutcome("record", f"rec_{value}", "created")


register(Operation(OPERATION, apply, prepare))
register(Operation(TOGETHER_OPERATION, apply, prepare, independent_items=True))
