"""The region's candidate payload as JSON Schema (contract §3.1), from the very models that validate it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import orjson

from onderwijsregio.candidates.validation import models_of
from onderwijsregio.regions.models import Region

Operation = Literal["create", "update"]
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# What JSON Schema cannot say; the API checks these as well (§3.1).
NOT_EXPRESSED = (
    "Checked by the API but not expressible here: dateOfBirth from 1900-01-01 up to today; a phone "
    "number holds 6 to 15 digits; e-mail addresses are checked for their form; no text holds the "
    "character U+0000; an attachment's base64 must decode, to at most 10 MiB (40 MiB per request), "
    "and its type, told by its bytes, must be PDF, DOC, DOCX, ODT, RTF, TXT, PNG, JPEG or WEBP; an "
    "attachment URL must pass the URL safety rules (public addresses only; fetched within 30 s, at "
    "most 3 redirects, at most 10 MiB); and a write to a candidate must name one that exists in this "
    "region and mode."
)
_NAMES = {"InteractionInput": "Interaction"}  # the contract's names for the shared definitions


def candidate_schema(region: Region, operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(
        _cached(region.id, region.version, orjson.dumps(region.custom_fields), operation)
    )
    return document


@lru_cache(maxsize=512)
def _cached(region_id: str, version: int, definitions: bytes, operation: Operation) -> bytes:
    """Keyed on the region's version, so a custom-field change shows at once in every process."""
    region = Region(id=region_id, version=version, custom_fields=orjson.loads(definitions))
    create, update = models_of(region)
    document = (create if operation == "create" else update).model_json_schema()
    document = orjson.loads(_renamed(orjson.dumps(document).decode()))
    document.update({"$schema": DRAFT, "title": f"Candidate ({operation})", "description": NOT_EXPRESSED})
    return orjson.dumps(document)


def _renamed(text: str) -> str:
    for old, new in _NAMES.items():
        text = text.replace(f'"{old}"', f'"{new}"').replace(f"#/$defs/{old}", f"#/$defs/{new}")
    return text
