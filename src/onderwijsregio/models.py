"""Every table, imported in one place so migrations and guard tests see the whole schema."""

from __future__ import annotations

from onderwijsregio.api_keys.models import ApiKey
from onderwijsregio.attachments.models import Attachment, StagedFile
from onderwijsregio.auth.models import AdminOverride
from onderwijsregio.candidates.models import Candidate, Interaction
from onderwijsregio.db import Base
from onderwijsregio.engine.models import (
    CallbackDelivery,
    IdempotencyRecord,
    Mutation,
    MutationCounter,
    MutationLane,
    SigningSecret,
)
from onderwijsregio.regions.models import Region
from onderwijsregio.sessions.models import (
    CandidateSession,
    SessionMutation,
    VerificationCode,
    VerificationRequest,
)
from onderwijsregio.webhooks.models import Event, WebhookAttempt, WebhookEndpoint, WebhookMessage

metadata = Base.metadata
__all__ = [
    "AdminOverride",
    "ApiKey",
    "Attachment",
    "CallbackDelivery",
    "Candidate",
    "CandidateSession",
    "Event",
    "IdempotencyRecord",
    "Interaction",
    "Mutation",
    "MutationCounter",
    "MutationLane",
    "Region",
    "SessionMutation",
    "SigningSecret",
    "StagedFile",
    "VerificationCode",
    "VerificationRequest",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
    "metadata",
]
