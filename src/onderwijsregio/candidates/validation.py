"""Validating candidate bodies against the region's models, with issue paths that name the item."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from onderwijsregio.candidates.schemas import candidate_models
from onderwijsregio.errors import UnsupportedMediaType, ValidationFailed, issue
from onderwijsregio.regions.models import Region

MAX_ITEMS = 10


@lru_cache(maxsize=512)
def _models(region_id: str, version: int, definitions: bytes) -> tuple[type[BaseModel], type[BaseModel]]:
    """Keyed on the region's version: a changed definition is a new cache entry at once."""
    return candidate_models(orjson.loads(definitions))


def models_of(region: Region) -> tuple[type[BaseModel], type[BaseModel]]:
    return _models(region.id, region.version, orjson.dumps(region.custom_fields))


def as_items(body: Any) -> list[Any]:
    """An array of 1–10, or a single object taken as an array of one (§3.2)."""
    if isinstance(body, bytes):
        raise UnsupportedMediaType()
    items = body if isinstance(body, list) else [body]
    if not 1 <= len(items) <= MAX_ITEMS:
        raise ValidationFailed(issues=[issue([], "batch_size", f"Send 1 to {MAX_ITEMS} items")])
    return items


def validated(model: type[BaseModel], items: list[Any]) -> list[dict[str, Any]]:
    """Every item checked; all problems reported at once, each path starting with the item's index."""
    problems, accepted = [], []
    for index, item in enumerate(items):
        try:
            accepted.append(model.model_validate(item).model_dump(mode="json", exclude_unset=True))
        except ValidationError as error:
            problems += [
                issue([index, *e["loc"]], e["type"], e["msg"]) for e in error.errors(include_url=False)
            ]
    if problems:
        raise ValidationFailed(issues=problems)
    return accepted


def validated_one(model: type[BaseModel], body: Any) -> dict[str, Any]:
    """One object (PATCH, upsert): issue paths start at its properties."""
    if isinstance(body, bytes):
        raise UnsupportedMediaType()
    try:
        return model.model_validate(body).model_dump(mode="json", exclude_unset=True)
    except ValidationError as error:
        raise ValidationFailed(
            issues=[issue(list(e["loc"]), e["type"], e["msg"]) for e in error.errors(include_url=False)]
        ) from None
