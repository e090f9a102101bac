"""Region input and output shapes (contract §3.6)."""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StrictInt, StringConstraints, model_validator

from onderwijsregio.candidates.properties import (
    DEFAULT_SELF_SERVICE_FIELDS,
    SELF_SERVICE_ELIGIBLE,
    SHARED_PROPERTIES,
)
from onderwijsregio.validation import STRICT_INPUT, Flag, Name, Text

CustomFieldType = Literal[
    "string", "text", "integer", "number", "boolean", "date", "url", "email", "select", "multiSelect"
]
SELECT_TYPES = ("select", "multiSelect")
MAX_CUSTOM_FIELDS = 100
DEFAULT_MAX_QUEUED_MUTATIONS = 100_000


def _not_shared(key: str) -> str:
    if key in SHARED_PROPERTIES:
        raise ValueError(f"'{key}' is a shared candidate property")
    return key


CustomFieldKey = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[a-z][a-zA-Z0-9]{0,62}$"),
    AfterValidator(_not_shared),
    Field(description="A camelCase identifier, unique in the region, not a shared candidate property"),
]
OptionValue = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]


class CustomFieldDefinition(BaseModel):
    model_config = STRICT_INPUT

    key: CustomFieldKey
    label: Name
    type: CustomFieldType
    options: list[OptionValue] | None = Field(default=None, min_length=1, max_length=200)
    required: Flag = False
    description: Text | None = None

    @model_validator(mode="after")
    def _options_fit_the_type(self) -> Self:
        if self.type in SELECT_TYPES:
            if not self.options:
                raise ValueError(f"a {self.type} field needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError("options must be unique")
        elif self.options is not None:
            raise ValueError(f"a {self.type} field takes no options")
        return self


RequestsPerSecond = Annotated[StrictInt, Field(ge=1, le=100_000)]
BurstSize = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class RateLimitInput(BaseModel):
    """Any subset; what is left out keeps its current (or default) value."""

    model_config = STRICT_INPUT

    requestsPerSecond: RequestsPerSecond | None = None
    burst: BurstSize | None = None
    keyRequestsPerSecond: RequestsPerSecond | None = None
    keyBurst: BurstSize | None = None


class RateLimit(BaseModel):
    requestsPerSecond: int
    burst: int
    keyRequestsPerSecond: int
    keyBurst: int


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError("an origin is scheme://host[:port], e.g. https://werkenin.example.nl")
    return value.rstrip("/").lower()


def _self_service_field(value: str) -> str:
    if value not in SELF_SERVICE_ELIGIBLE:
        raise ValueError(
            f"'{value}' cannot be opened to self-service; allowed: {sorted(SELF_SERVICE_ELIGIBLE)}"
        )
    return value


Origin = Annotated[str, StringConstraints(strict=True, max_length=300), AfterValidator(_origin)]
SelfServiceField = Annotated[
    str,
    StringConstraints(strict=True, max_length=40),
    AfterValidator(_self_service_field),
    Field(json_schema_extra={"enum": sorted(SELF_SERVICE_ELIGIBLE)}),
]
CustomFields = Annotated[list[CustomFieldDefinition], Field(max_length=MAX_CUSTOM_FIELDS)]
SelfServiceFields = Annotated[list[SelfServiceField], Field(max_length=len(SELF_SERVICE_ELIGIBLE))]
AllowedOrigins = Annotated[list[Origin], Field(max_length=20)]
MaxQueued = Annotated[StrictInt, Field(ge=1, le=10_000_000)]


def _unique_keys(fields: list[CustomFieldDefinition] | None) -> None:
    keys = [f.key for f in fields or []]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"custom field keys must be unique; repeated: {duplicates}")


class RegionCreate(BaseModel):
    model_config = STRICT_INPUT | {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Onderwijsregio Utrecht",
                    "customFields": [
                        {
                            "key": "favoriteSubject",
                            "label": "Favoriete vak",
                            "type": "string",
                            "required": False,
                        },
                        {
                            "key": "schoolType",
                            "label": "Schooltype",
                            "type": "select",
                            "options": ["po", "vo", "mbo"],
                            "required": True,
                        },
                    ],
                    "rateLimit": {"requestsPerSecond": 50, "burst": 100},
                    "allowedOrigins": ["https://werkenin.example.nl"],
                }
            ]
        }
    }

    name: Name
    customFields: CustomFields = Field(default_factory=list)
    rateLimit: RateLimitInput | None = None
    maxQueuedMutations: MaxQueued = DEFAULT_MAX_QUEUED_MUTATIONS
    selfServiceFields: SelfServiceFields = Field(default_factory=lambda: list(DEFAULT_SELF_SERVICE_FIELDS))
    allowedOrigins: AllowedOrigins = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique_keys(self.customFields)
        return self


class RegionPatch(BaseModel):
    """Patch semantics: what is left out stays; `customFields` replaces the whole list."""

    model_config = STRICT_INPUT | {
        "json_schema_extra": {
            "examples": [{"name": "Onderwijsregio Utrecht e.o.", "maxQueuedMutations": 50000}]
        }
    }

    name: Name | None = None
    customFields: CustomFields | None = None
    rateLimit: RateLimitInput | None = None
    maxQueuedMutations: MaxQueued | None = None
    selfServiceFields: SelfServiceFields | None = None
    allowedOrigins: AllowedOrigins | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one property to change")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"'{name}' cannot be null")
        _unique_keys(self.customFields)
        return self


class RegionOut(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "reg_01JQ3Z6W6V0F5K3T9X2B7C4D8E",
                    "name": "Onderwijsregio Utrecht",
                    "customFields": [
                        {
                            "key": "favoriteSubject",
                            "label": "Favoriete vak",
                            "type": "string",
                            "required": False,
                        }
                    ],
                    "rateLimit": {
                        "requestsPerSecond": 50,
                        "burst": 100,
                        "keyRequestsPerSecond": 20,
                        "keyBurst": 40,
                    },
                    "maxQueuedMutations": 100000,
                    "selfServiceFields": ["phone", "privacyConsent", "motivation"],
                    "allowedOrigins": ["https://werkenin.example.nl"],
                    "createdAt": "2026-03-24T10:15:00.000Z",
                    "updatedAt": "2026-03-24T10:15:00.000Z",
                }
            ]
        }
    }

    id: str
    name: str
    customFields: list[CustomFieldDefinition]
    rateLimit: RateLimit
    maxQueuedMutations: int
    selfServiceFields: list[str]
    allowedOrigins: list[str]
    createdAt: str
    updatedAt: str
