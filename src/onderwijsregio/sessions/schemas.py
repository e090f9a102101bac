"""Bodies and answers of the candidate verification and session routes (contract §3.5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, StringConstraints

from onderwijsregio.candidates.schemas import Email
from onderwijsregio.validation import STRICT_INPUT


class VerificationInput(BaseModel):
    model_config = STRICT_INPUT
    email: Email


class VerificationAnswer(BaseModel):
    expiresInSeconds: int
    sandboxCode: str | None = None  # sandbox mode only


class SessionInput(BaseModel):
    model_config = STRICT_INPUT
    email: Email
    code: Annotated[str, StringConstraints(strict=True, max_length=32)]


class NewSessionAnswer(BaseModel):
    sessionToken: str
    expiresAt: datetime
    idleExpiresAt: datetime


class SessionAnswer(BaseModel):
    email: str
    regionId: str
    expiresAt: datetime
    candidates: list[dict[str, object]]
