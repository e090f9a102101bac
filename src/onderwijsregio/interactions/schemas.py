"""Interaction input (contract §3.3), also used inline when candidates are created."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, StrictInt, StringConstraints

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
