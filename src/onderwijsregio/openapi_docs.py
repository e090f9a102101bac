"""OpenAPI helpers: documented error answers, and the per-operation access notes."""

from __future__ import annotations

from typing import Any

from onderwijsregio.auth.dependencies import AdminAccess, PublicAccess, RegionAccess, SessionAccess
from onderwijsregio.envelope import ErrorEnvelope

_ERRORS = {
    400: "A query parameter, header or the JSON is wrong (`bad_request`, `invalid_json`, `invalid_cursor`)",
    401: "Missing, malformed, unknown, expired or revoked credentials (`unauthorized`); one body for all",
    403: "The credential may not do this (`forbidden`)",
    404: "Not found in this region and mode (`not_found`)",
    405: "Method not allowed (`method_not_allowed`); the `Allow` header lists the methods",
    409: "Conflict (`conflict`)",
    413: "The body is too large (`payload_too_large`)",
    415: "The body is not JSON (`unsupported_media_type`)",
    422: "The body is invalid (`validation_failed`, with `issues`)",
    429: "Rate limited (`rate_limited`); wait `Retry-After` seconds",
    500: "An unexpected fault on our side (`internal_error`); quote meta.requestId when reporting it",
    503: "Temporarily unavailable (`service_unavailable`)",
}

RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "Size of the tighter bucket", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in it", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until it is full again", "schema": {"type": "integer"}},
}
COMMON_HEADERS = {
    "x-request-id": {"description": "Also in meta.requestId", "schema": {"type": "string"}},
    "Cache-Control": {"description": "no-store", "schema": {"type": "string"}},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        responses[status] = {
            "model": ErrorEnvelope,
            "description": _ERRORS[status],
            "headers": _error_headers(status),
        }
    return responses


def _error_headers(status: int) -> dict[str, Any]:
    headers: dict[str, Any] = dict(COMMON_HEADERS)
    if status == 429:
        headers["Retry-After"] = {"description": "Seconds to wait", "schema": {"type": "integer"}}
    if status == 405:
        headers["Allow"] = {"description": "The methods this path takes", "schema": {"type": "string"}}
    if status == 503:
        headers["Retry-After"] = {"description": "Seconds to wait, when known", "schema": {"type": "integer"}}
    return headers


def describe_access(document: dict[str, Any], route: Any, access: Any) -> None:
    """Make each operation's access explicit: `security: []` when public, else who may call it."""
    for method in route.methods:
        operation = document["paths"][route.path_format][method.lower()]
        if access is None:
            raise AssertionError(f"{route.path} declares no access; see auth/dependencies.py")
        if isinstance(access, PublicAccess):
            operation["security"] = []
            note = "Access: public."
        elif isinstance(access, AdminAccess):
            note = "Access: an admin key."
        elif isinstance(access, SessionAccess):
            note = "Access: a candidate's session token (`Authorization: Bearer`); API keys do not work here."
        else:
            assert isinstance(access, RegionAccess)
            needed = f" with the `{access.permission}` permission" if access.permission else ""
            mode = " Same in live and sandbox mode." if access.platform else " Live or sandbox data."
            note = f"Access: a region key{needed}, or an admin key with `x-region-id`.{mode}"
        operation["x-access"] = note
        _document_common_errors(operation, public=isinstance(access, PublicAccess))
        _document_headers(
            operation, public=isinstance(access, PublicAccess), session=isinstance(access, SessionAccess)
        )
        operation["description"] = f"{note}\n\n{operation.get('description', '')}".strip()


DEPRECATION_HEADER = {
    "Deprecation": {
        "description": "`true` when the deprecated api-key header was used",
        "schema": {"type": "string"},
    }
}


ACCEPTED_HEADERS = {
    "Location": {"description": "Where the mutation's status is read", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds before the first look (1)", "schema": {"type": "integer"}},
}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": {
        "description": "The request's Origin, when it is one of the region's allowedOrigins",
        "schema": {"type": "string"},
    },
    "Access-Control-Expose-Headers": {
        "description": "The headers a browser may read",
        "schema": {"type": "string"},
    },
    "Vary": {"description": "`Origin`", "schema": {"type": "string"}},
}


def _document_headers(operation: dict[str, Any], *, public: bool, session: bool) -> None:
    """Every answer carries x-request-id; answers to keyed calls carry the rate-limit headers too; a
    202 says where to look; a session route's answers carry CORS headers for allowed origins."""
    for status, response in operation.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        headers.update({name: spec for name, spec in COMMON_HEADERS.items() if name not in headers})
        if not public:
            headers.update(RATE_LIMIT_HEADERS)
            headers.update(DEPRECATION_HEADER)
        if str(status) == "202":
            headers.update(ACCEPTED_HEADERS)
        if session:
            headers.update(CORS_HEADERS)


def _document_common_errors(operation: dict[str, Any], *, public: bool) -> None:
    """The answers any operation of its kind can give, so none is left out of a route's own list:
    every request can meet a malformed header or query, a fault, or a database that is away; a keyed
    one its credentials and limits; an id in the path a 404; a body or a query its checks."""
    statuses = {400, 500, 503}
    if not public:
        statuses |= {401, 403, 429}
    parameters = operation.get("parameters", [])
    if any(parameter.get("in") == "path" for parameter in parameters):
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {413, 415, 422}
    if any(parameter.get("in") == "query" for parameter in parameters):
        statuses.add(422)
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses):
        responses.setdefault(
            str(status),
            {
                "description": _ERRORS[status],
                "headers": _error_headers(status),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            },
        )
