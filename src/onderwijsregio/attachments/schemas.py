"""Attachment inputs and the Attachment resource (contract §3.4)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, model_validator

from onderwijsregio.attachments.filetypes import NAMES
from onderwijsregio.validation import STRICT_INPUT

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_FILES_PER_FIELD = 5
FIELDS = ("curriculumVitae", "otherAttachments")
Field_ = Literal["curriculumVitae", "otherAttachments"]

Filename = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=255)]
# 10 MiB decoded is at most 13,981,016 base64 characters; the decoded size is checked exactly.
Base64Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=13_981_016)]
Url = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=2000)]


class UrlAttachment(BaseModel):
    """A file the worker fetches: §2.6 URL rules, at most 10 MiB, 30 s, 3 redirects."""

    model_config = STRICT_INPUT
    url: Url
    filename: Filename


class Base64Attachment(BaseModel):
    """A file in the request, decoded and checked at once."""

    model_config = STRICT_INPUT
    base64: Base64Text
    filename: Filename
    contentType: Annotated[str, StringConstraints(strict=True, max_length=100)] | None = Field(
        default=None, description="Informative only: the type is decided by the file's bytes"
    )


class AttachmentInput(RootModel[UrlAttachment | Base64Attachment]):
    """A file by URL or as base64."""

    model_config = ConfigDict(
        json_schema_extra={"description": f"A file by URL or as base64: at most 10 MiB, of type {NAMES}"}
    )


AttachmentInputs = Annotated[list[AttachmentInput], Field(min_length=1, max_length=MAX_FILES_PER_FIELD)]


def _left_out() -> Any:
    return None


class AttachmentsAdd(BaseModel):
    """`POST /candidates/{id}/attachments`: at least one field, 1 to 5 files each."""

    model_config = STRICT_INPUT | {"json_schema_extra": {"minProperties": 1}}
    # Factories, not defaults: the fields may be left out but are never null (the schema says so).
    curriculumVitae: AttachmentInputs = Field(default_factory=_left_out)
    otherAttachments: AttachmentInputs = Field(default_factory=_left_out)

    @model_validator(mode="after")
    def _some_file(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give curriculumVitae or otherAttachments")
        return self


class Attachment(BaseModel):
    id: str
    candidateId: str
    field: Field_
    filename: str
    contentType: str
    size: int
    sha256: str
    createdAt: datetime
