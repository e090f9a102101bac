"""One error hierarchy: every error the API answers with carries its status, code and message."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status_code = 500
    code = "internal_error"
    message = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        issues: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.issues = issues
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(ApiError):
    status_code, code, message = 400, "bad_request", "Bad request"


class InvalidJson(ApiError):
    status_code, code, message = 400, "invalid_json", "The request body is not valid JSON"


class InvalidCursor(ApiError):
    status_code, code, message = 400, "invalid_cursor", "The cursor is malformed or was tampered with"


class Unauthorized(ApiError):
    status_code, code, message = 401, "unauthorized", "Missing or invalid credentials"


class Forbidden(ApiError):
    status_code, code, message = 403, "forbidden", "This credential may not do this"


class NotFound(ApiError):
    status_code, code, message = 404, "not_found", "Not found"


class MethodNotAllowed(ApiError):
    status_code, code, message = 405, "method_not_allowed", "Method not allowed"


class Conflict(ApiError):
    status_code, code, message = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    status_code, code, message = 413, "payload_too_large", "The request body is too large"


class UnsupportedMediaType(ApiError):
    status_code, code, message = (
        415,
        "unsupported_media_type",
        "Send JSON with Content-Type: application/json",
    )


class ValidationFailed(ApiError):
    status_code, code, message = 422, "validation_failed", "Request validation failed"


class RateLimited(ApiError):
    status_code, code, message = 429, "rate_limited", "Too many requests"


class InternalError(ApiError):
    pass


class ServiceUnavailable(ApiError):
    status_code, code, message = 503, "service_unavailable", "The service is temporarily unavailable"


def issue(path: list[str | int], code: str, message: str) -> dict[str, Any]:
    """One entry of `error.issues`: where (item index, property), what (stable code), and why."""
    return {"path": [str(part) for part in path], "code": code, "message": message}


class IdempotencyKeyReused(ApiError):
    status_code, code, message = (
        422,
        "idempotency_key_reused",
        "This idempotency key was used for another request",
    )


class IdempotencyKeyInUse(ApiError):
    status_code, code, message = (
        409,
        "idempotency_key_in_use",
        "A request with this idempotency key is in flight",
    )


class QueueFull(ApiError):
    status_code, code, message = 429, "queue_full", "Too many unfinished mutations in this region"
