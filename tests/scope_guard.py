"""Watches every SQL statement of the test run: a query on a region-data table must be scoped.

A statement that reads, changes or deletes rows of a region-data table must constrain both
`region_id` and `sandbox`, unless it is marked `execution_options(cross_region=True)` (operators'
views such as /admin/queue and readiness). This proves at run time what `scope.scoped()` promises.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from onderwijsregio.models import metadata

_REGION = re.compile(r"(?:^|[\s(.])\"?region_id\"?\s*(?:=|IN\b)", re.IGNORECASE)
_SANDBOX = re.compile(r"(?:^|[\s(.])\"?sandbox\"?\s*(?:=|IS\b|IN\b)", re.IGNORECASE)


def _constrains_scope(statement: str) -> bool:
    """Both scope columns compared at the top level of the WHERE clause, where no OR can widen it."""
    where = re.split(r"\bWHERE\b", statement, maxsplit=1, flags=re.IGNORECASE)
    if len(where) < 2:
        return False
    condition = _top_level(where[1])
    return bool(_REGION.search(condition) and _SANDBOX.search(condition)) and not re.search(
        r"\bOR\b", condition, re.IGNORECASE
    )


def _top_level(condition: str) -> str:
    """The condition with everything inside parentheses blanked out."""
    depth, kept = 0, []
    for char in condition:
        if char == "(":
            depth += 1
        kept.append(char if depth == 0 else " ")
        if char == ")":
            depth = max(0, depth - 1)
    return "".join(kept)


def region_data_tables() -> list[str]:
    return [
        table.name
        for table in metadata.sorted_tables
        if [c.name for c in table.columns][:2] == ["region_id", "sandbox"]
    ]


class ScopeGuard:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self.checked = 0
        names = "|".join(re.escape(name) for name in region_data_tables())
        self._mentions = re.compile(rf"\b(?:from|join|update)\s+\"?({names})\"?\b", re.IGNORECASE)

    def watch(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._check)

    def _check(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: Any
    ) -> None:
        if not self._mentions.search(statement) or statement.lstrip().upper().startswith("INSERT"):
            return
        self.checked += 1
        if context is not None and context.execution_options.get("cross_region"):
            return
        if not _constrains_scope(statement):
            self.violations.append(statement)
            raise AssertionError(f"unscoped query on region data: {statement}")

    def assert_clean(self) -> None:
        assert not self.violations, f"unscoped queries on region data: {self.violations}"
