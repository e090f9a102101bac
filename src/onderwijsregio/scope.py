"""Tenancy as a value: the (region, sandbox) every region-data query is confined to.

Every region-data model inherits `RegionScoped`, so its first two columns are `region_id` and
`sandbox` and its keys and indexes lead with them; `scoped()` is the one place that applies a
scope to a query. The guard tests check both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import BindParameter, Boolean, Delete, ForeignKey, Select, String, Update, bindparam
from sqlalchemy.orm import Mapped, declared_attr, mapped_column


@dataclass(frozen=True, slots=True)
class Scope:
    region_id: str
    sandbox: bool


class RegionScoped:
    """Mixin for every table that holds a region's data (live or sandbox)."""

    @declared_attr
    def region_id(cls) -> Mapped[str]:
        return mapped_column(
            String(40),
            ForeignKey("regions.id", ondelete="CASCADE"),
            primary_key=False,
            nullable=False,
            sort_order=-100,
        )

    @declared_attr
    def sandbox(cls) -> Mapped[bool]:
        return mapped_column(Boolean, nullable=False, sort_order=-99)


Statement = TypeVar("Statement", bound=Select[*tuple[Any, ...]] | Update | Delete)


def scoped(statement: Statement, model: type[RegionScoped], scope: Scope) -> Statement:
    """Confine a query, change or deletion of a region-data model to one region and one mode."""
    confined = statement.where(model.region_id == scope.region_id, model.sandbox == scope.sandbox)
    return cast(Statement, confined)  # .where() returns the statement's own type; mypy loses it in the union


def region_wide(
    statement: Select[Any], model: type[RegionScoped], region_id: str | BindParameter[Any]
) -> Select[Any]:
    """Confine a query to one region in both modes (a region's own totals, such as its queue size)."""
    return statement.where(model.region_id == region_id, model.sandbox.in_((False, True)))


def scoped_by_parameters(statement: Statement, model: type[RegionScoped]) -> Statement:
    """`scoped()` for a statement built once and run on every request: the scope is given when it
    runs, as `scope_parameters(scope)`. Building a statement and its cache key anew each time cost
    more CPU than running it on the hot paths (the key look-up, a read by id, acceptance)."""
    confined = statement.where(
        model.region_id == bindparam("scope_region_id"), model.sandbox == bindparam("scope_sandbox")
    )
    return cast(Statement, confined)


def scope_parameters(scope: Scope) -> dict[str, Any]:
    return {"scope_region_id": scope.region_id, "scope_sandbox": scope.sandbox}
