"""Interaction input (contract §3.3), also used inline when candidates are created."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, Field, StrictInt, StringConstraints, model_validator

from onderwijsregio.validation import STRICT_INPUT

InteractionType = Literal[
    "Telefonisch",
    "E-mail",
    "Persoonlijk",
    "Anders",
    "Doorverwijzing",
    "Adviesgesprek",
    "Kennismakingsgesprek",
    "Inschrijving activiteit",
    "Niet van toepassing",
]


Title = Annotated[str, StringConstraints(strict=True, max_length=200)]
Summary = Annotated[str, StringConstraints(strict=True, max_length=2000)]
Notes = Annotated[str, StringConstraints(strict=True, max_length=10000)]
Minutes = Annotated[StrictInt, Field(ge=0, le=1440)]


class InteractionInput(BaseModel):
    """A contact moment with a candidate."""

    model_config = STRICT_INPUT

    type: InteractionType
    performedAt: AwareDatetime = Field(description="RFC 3339 with an offset; answered in UTC")
    title: Title | None = None
    summary: Summary | None = None
    notes: Notes | None = None
    durationMinutes: Minutes | None = None
    performedBy: Title | None = None


class InteractionUpdate(BaseModel):
    """Patch semantics: at least one property; `null` clears an optional one, never type or performedAt."""

    model_config = STRICT_INPUT

    type: InteractionType | None = None
    performedAt: AwareDatetime | None = None
    title: Title | None = None
    summary: Summary | None = None
    notes: Notes | None = None
    durationMinutes: Minutes | None = None
    performedBy: Title | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one property to change")
        for required in ("type", "performedAt"):
            if required in self.model_fields_set and getattr(self, required) is None:
                raise ValueError(f"'{required}' cannot be cleared")
        return self
