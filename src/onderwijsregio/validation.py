"""Shared input rules: strict scalars (no coercion: "30" is not a number, "true" not a boolean), and
no U+0000 anywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Request
from pydantic import AwareDatetime, BeforeValidator, ConfigDict, StrictBool, StringConstraints

from onderwijsregio.errors import BadRequest, ValidationFailed, issue

# Unknown properties are refused everywhere (no mass assignment).
STRICT_INPUT = ConfigDict(extra="forbid", populate_by_name=False)

NAME_LENGTH = 200


def _within_name_length(value: Any) -> Any:
    """The bound holds for the name as sent, as the documented maxLength says, not only once trimmed."""
    if isinstance(value, str) and len(value) > NAME_LENGTH:
        raise ValueError(f"String should have at most {NAME_LENGTH} characters")
    return value


# The before-validator comes last: pydantic runs it first, on the name as sent.
Name = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=NAME_LENGTH),
    BeforeValidator(_within_name_length),
]
Text = Annotated[str, StringConstraints(strict=True, max_length=1000)]
Flag = StrictBool


# PostgreSQL cannot store U+0000 in text or JSON, so it is refused in every input up front (SQLite
# could store it; the two stores must accept the same things). Escaped in JSON it reads `\u0000`;
# a raw NUL byte is already invalid JSON.
NUL = "\x00"
_ESCAPED_NUL = b"\\u0000"


async def refuse_nul_characters(request: Request) -> None:
    """An app-wide dependency: U+0000 in a path, query or JSON body gets a clear 400 or 422."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if NUL in str(value) or NUL in name:
            raise BadRequest(f"Parameter '{name.replace(NUL, '')}' contains the character U+0000")
    body = await request.body()
    if _ESCAPED_NUL not in body:
        return
    try:
        parsed = await request.json()
    except ValueError:
        return  # not JSON: the route refuses it on its own terms
    path = _nul_path(parsed, [])
    if path is not None:
        raise ValidationFailed(
            issues=[issue(path, "nul_character", "Text may not contain the character U+0000")]
        )


def _nul_path(value: Any, path: list[str | int]) -> list[str | int] | None:
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, list):
        items: list[tuple[str | int, Any]] = list(enumerate(value))
    elif isinstance(value, dict):
        for key in value:
            if NUL in key:
                return [*path, key.replace(NUL, "")]
        items = list(value.items())
    else:
        return None
    for key, item in items:
        found = _nul_path(item, [*path, key])
        if found is not None:
            return found
    return None


def _iso_instant(value: Any) -> Any:
    """Only ISO 8601 text: pydantic would also read "0.5" as seconds since 1970, which no caller means."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "Give an ISO 8601 date and time with its offset, such as 2026-01-31T09:00:00Z"
        ) from None


# A moment in a query parameter: ISO 8601 with a time zone.
IsoInstant = Annotated[AwareDatetime, BeforeValidator(_iso_instant)]
