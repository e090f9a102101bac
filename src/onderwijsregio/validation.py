"""Shared input types: strict scalars (no coercion: "30" is not a number, "true" not a boolean)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, StrictBool, StringConstraints

# Unknown properties are refused everywhere (no mass assignment).
STRICT_INPUT = ConfigDict(extra="forbid", populate_by_name=False)

Name = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strict=True, max_length=1000)]
Flag = StrictBool
