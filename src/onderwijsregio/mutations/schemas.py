"""Mutation shapes (contract §2.2, §2.3) for the OpenAPI document and the list filters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel

Status = Literal["queued", "processing", "succeeded", "failed", "canceled"]
OPERATIONS = (
    "candidates.create",
    "candidates.upsert",
    "candidates.update",
    "candidates.archive",
    "candidates.unarchive",
    "candidates.delete",
    "interactions.create",
    "interactions.update",
    "interactions.delete",
    "attachments.add",
    "attachments.remove",
    "sandbox.reset",
    "candidates.self_update",
    "candidates.self_delete",
)


@dataclass(frozen=True)
class MutationFilters:
    status: Status | None
    operation: str | None


async def mutation_filters(
    status: Annotated[Status | None, Query(description="Only mutations with this status")] = None,
    operation: Annotated[
        str | None, Query(max_length=40, description="Only this operation, e.g. candidates.create")
    ] = None,
) -> MutationFilters:
    return MutationFilters(status, operation)


class Accepted(BaseModel):
    mutationId: str
    status: Literal["queued"]
    operation: str
    resourceIds: list[str]
    statusUrl: str


class ItemResult(BaseModel):
    index: int
    status: Literal["succeeded", "failed"]
    resourceType: str | None = None
    resourceId: str | None = None
    action: str | None = None
    error: dict[str, str] | None = None


class CallbackState(BaseModel):
    status: Literal["none", "pending", "delivered", "failed"]
    attempts: int
    lastStatusCode: int | None
    lastAttemptAt: str | None


class MutationOut(BaseModel):
    id: str
    operation: str
    status: Status
    idempotencyKey: str | None
    callbackUrl: str | None
    attempts: int
    createdAt: str
    startedAt: str | None
    completedAt: str | None
    succeededCount: int
    failedCount: int
    results: list[ItemResult]
    callback: CallbackState
