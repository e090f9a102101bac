"""The response envelope of contract §1.1, for success and error alike."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from onderwijsregio.errors import ApiError

REQUEST_STATE = "onderwijsregio"
NO_STORE = {"cache-control": "no-store"}

T = TypeVar("T")


class Meta(BaseModel):
    sandboxEnabled: bool
    requestId: str
    cursor: str | None = Field(
        default=None, description="Lists only: the next page's cursor, null on the last"
    )
    pageSize: int | None = Field(default=None, description="Lists only: the page size used")
    warnings: list[str] | None = None


class Envelope(BaseModel, Generic[T]):
    """What every JSON answer looks like (contract §1.1)."""

    statusCode: int
    message: str
    data: T
    meta: Meta


class ErrorIssue(BaseModel):
    path: list[str]
    code: str
    message: str


class ErrorBody(BaseModel):
    code: str
    issues: list[ErrorIssue] | None = None


class ErrorEnvelope(BaseModel):
    statusCode: int
    message: str
    data: None
    error: ErrorBody
    meta: Meta


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def request_state(request: Request) -> dict[str, Any]:
    """Per-request values shared by the middleware, the auth dependencies and the envelope."""
    state: dict[str, Any] = request.scope.setdefault("state", {}).setdefault(REQUEST_STATE, {})
    return state


def _meta(request: Request) -> dict[str, Any]:
    state = request_state(request)
    meta: dict[str, Any] = {
        "sandboxEnabled": bool(state.get("sandbox")) and not state.get("platform_route", False),
        "requestId": state.get("request_id", ""),
    }
    if state.get("warnings"):
        meta["warnings"] = list(state["warnings"])
    return meta


def respond(
    request: Request,
    data: Any,
    message: str,
    status_code: int = 200,
    *,
    headers: dict[str, str] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> JsonResponse:
    meta = _meta(request)
    if extra_meta:
        meta.update(extra_meta)
    body = {"statusCode": status_code, "message": message, "data": data, "meta": meta}
    return JsonResponse(body, status_code=status_code, headers={**NO_STORE, **(headers or {})})


def respond_page(
    request: Request, items: list[Any], message: str, *, cursor: str | None, page_size: int
) -> JsonResponse:
    """A list answer: `data` is the page, `meta.cursor` the next page (null on the last)."""
    return respond(request, items, message, extra_meta={"cursor": cursor, "pageSize": page_size})


def error_body(request: Request, error: ApiError) -> dict[str, Any]:
    details: dict[str, Any] = {"code": error.code}
    if error.issues is not None:
        details["issues"] = error.issues
    return {
        "statusCode": error.status_code,
        "message": error.message,
        "data": None,
        "error": details,
        "meta": _meta(request),
    }


def respond_error(request: Request, error: ApiError) -> JsonResponse:
    return JsonResponse(
        error_body(request, error), status_code=error.status_code, headers={**NO_STORE, **error.headers}
    )
