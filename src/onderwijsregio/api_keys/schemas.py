"""API key input and output shapes (contract §1.2, §3.6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, JsonValue

from onderwijsregio.clock import utc_now
from onderwijsregio.validation import STRICT_INPUT, Name

PermissionName = Literal["read", "write", "manage"]


def _in_future(value: datetime) -> datetime:
    if value <= utc_now():
        raise ValueError("expiresAt must lie in the future")
    return value


FutureTime = Annotated[AwareDatetime, AfterValidator(_in_future)]


class ApiKeyCreate(BaseModel):
    model_config = STRICT_INPUT | {
        "json_schema_extra": {
            "examples": [
                {"name": "Website form", "permissions": ["write"], "expiresAt": "2027-12-31T23:00:00Z"}
            ]
        }
    }

    name: Name
    permissions: list[PermissionName] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="At most the creator's own permissions; left out, the key gets the creator's",
    )
    expiresAt: FutureTime | None = None


class AdminKeyCreate(BaseModel):
    """Admin keys hold every permission, so they take no `permissions`."""

    model_config = STRICT_INPUT | {"json_schema_extra": {"examples": [{"name": "Operations team"}]}}

    name: Name
    expiresAt: FutureTime | None = None


EXAMPLE_KEY: dict[str, JsonValue] = {
    "id": "key_01JQ3Z6W6V0F5K3T9X2B7C4D8E",
    "name": "Website form",
    "scope": "region",
    "regionId": "reg_01JQ3Z6W6V0F5K3T9X2B7C4D8E",
    "permissions": ["write"],
    "prefix": "oreg_3kTq9ZbW",
    "createdAt": "2026-03-24T10:15:00.000Z",
    "expiresAt": None,
    "lastUsedAt": "2026-03-25T08:00:00.000Z",
    "revokedAt": None,
}


class ApiKeyOut(BaseModel):
    model_config = {"json_schema_extra": {"examples": [EXAMPLE_KEY]}}

    id: str
    name: str
    scope: Literal["region", "admin"]
    regionId: str | None
    permissions: list[PermissionName]
    prefix: str
    createdAt: str
    expiresAt: str | None
    lastUsedAt: str | None
    revokedAt: str | None


class CreatedApiKey(ApiKeyOut):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {**EXAMPLE_KEY, "key": "oreg_3kTq9ZbW…(the whole secret, shown once)", "lastUsedAt": None}
            ]
        }
    }

    key: str = Field(description="The full secret. Shown this once; only a hash is stored.")
