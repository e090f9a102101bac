"""Webhook endpoints and events (contract §3.7)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field, StrictBool, StringConstraints, model_validator

from onderwijsregio.validation import STRICT_INPUT

EventType = Literal[
    "candidate.created",
    "candidate.updated",
    "candidate.archived",
    "candidate.unarchived",
    "candidate.deleted",
    "interaction.created",
    "interaction.updated",
    "interaction.deleted",
    "attachment.added",
    "attachment.removed",
    "mutation.succeeded",
    "mutation.failed",
    "webhook.test",
]
EventTypes = Annotated[
    list[EventType], Field(min_length=1, max_length=13, json_schema_extra={"uniqueItems": True})
]
Url = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=2048)]
Description = Annotated[str, StringConstraints(strict=True, max_length=500)]


def _left_out() -> Any:
    return None


class WebhookInput(BaseModel):
    model_config = STRICT_INPUT
    url: Url
    events: EventTypes
    description: Description | None = None


class WebhookUpdate(BaseModel):
    """At least one property; `url`, `events` and `enabled` may be left out but not cleared."""

    model_config = STRICT_INPUT | {"json_schema_extra": {"minProperties": 1}}
    url: Url = Field(default_factory=_left_out)
    events: EventTypes = Field(default_factory=_left_out)
    enabled: StrictBool = Field(default_factory=_left_out)
    description: Description | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one property to change")
        return self


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabledReason: str | None
    createdAt: str
    updatedAt: str


class WebhookWithSecret(Webhook):
    secret: str = Field(description="whsec_…: shown at creation and rotation only")


class DeliveryAttempt(BaseModel):
    id: str
    eventId: str
    type: str
    statusCode: int | None
    durationMs: int
    attemptedAt: str
    error: str | None


class EventOut(BaseModel):
    id: str
    type: str
    createdAt: str
    sandbox: bool
    data: dict[str, Any]
