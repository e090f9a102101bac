"""The mutation resource (contract §2.3) and the 202 answer (§2.2). Never the payload."""

from __future__ import annotations

from typing import Any

from onderwijsregio.clock import to_rfc3339
from onderwijsregio.engine.models import CallbackDelivery, Mutation
from onderwijsregio.middleware import API_PREFIX, SANDBOX_PREFIX
from onderwijsregio.scope import Scope


def status_url(scope: Scope, mutation_id: str) -> str:
    """Under /api/sandbox for a sandbox mutation, however sandbox mode was chosen."""
    return f"{SANDBOX_PREFIX if scope.sandbox else API_PREFIX}/mutations/{mutation_id}"


def accepted_view(mutation_id: str, operation: str, resource_ids: list[str], url: str) -> dict[str, Any]:
    return {
        "mutationId": mutation_id,
        "status": "queued",
        "operation": operation,
        "resourceIds": resource_ids,
        "statusUrl": url,
    }


def mutation_view(mutation: Mutation, callback: CallbackDelivery | None) -> dict[str, Any]:
    return {
        "id": mutation.id,
        "operation": mutation.operation,
        "status": mutation.status,
        "idempotencyKey": mutation.idempotency_key,
        "callbackUrl": mutation.callback_url,
        "attempts": mutation.attempts,
        "createdAt": to_rfc3339(mutation.created_at),
        "startedAt": to_rfc3339(mutation.started_at),
        "completedAt": to_rfc3339(mutation.completed_at),
        "succeededCount": mutation.succeeded_count,
        "failedCount": mutation.failed_count,
        "results": mutation.results or [],
        "callback": callback_view(mutation, callback),
    }


def callback_view(mutation: Mutation, delivery: CallbackDelivery | None) -> dict[str, Any]:
    if mutation.callback_url is None:
        status = "none"
    elif delivery is None:
        status = "pending"  # written when the mutation completes
    else:
        status = delivery.status
    return {
        "status": status,
        "attempts": delivery.attempts if delivery else 0,
        "lastStatusCode": delivery.last_status_code if delivery else None,
        "lastAttemptAt": to_rfc3339(delivery.last_attempt_at) if delivery else None,
    }
