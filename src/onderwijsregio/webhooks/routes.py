"""Webhooks (contract §2.5, §3.7): the region's callback signing secret, webhook endpoints with their
own secrets, and the event feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from onderwijsregio.auth.dependencies import RegionManage, RegionRead
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.clock import to_rfc3339
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.dependencies import DbSession, WriteDbSession
from onderwijsregio.engine import signing
from onderwijsregio.engine.wakeup import CALLBACKS_CHANNEL, wake_after_commit
from onderwijsregio.envelope import Envelope, respond, respond_page
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.outbound.urls import check_url
from onderwijsregio.pagination import PageRequest, page_request
from onderwijsregio.webhooks import apply as _records_events  # noqa: F401 (registers the event step)
from onderwijsregio.webhooks import service
from onderwijsregio.webhooks.schemas import (
    DeliveryAttempt,
    EventOut,
    Webhook,
    WebhookInput,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(prefix=API_PREFIX, tags=["Webhooks"])
Managing = Annotated[RegionContext, Depends(RegionManage)]
Reader = Annotated[RegionContext, Depends(RegionRead)]
Page = Annotated[PageRequest, Depends(page_request)]
Context = Annotated[AppContext, Depends(request_context)]


class SigningSecretOut(BaseModel):
    secret: str = Field(description="whsec_ followed by the base64 key bytes")
    createdAt: str


def _view(keys: signing.SigningKeys) -> dict[str, str | None]:
    return {"secret": keys.current, "createdAt": to_rfc3339(keys.created_at)}


@router.get(
    "/webhooks/signing-secret",
    summary="The region's secret for signing callbacks (one for live and sandbox)",
    response_model=Envelope[SigningSecretOut],
    responses=error_responses(400, 401, 403, 429),
)
async def read_signing_secret(
    request: Request, caller: Managing, session: WriteDbSession, context: Context
) -> Response:
    keys = await signing.signing_keys(session, context.engine.box, caller.region.id)
    return respond(request, _view(keys), "Signing secret retrieved")


@router.post(
    "/webhooks/signing-secret/rotate",
    summary="Rotate the signing secret; the old one keeps signing alongside for 24 hours",
    response_model=Envelope[SigningSecretOut],
    responses=error_responses(400, 401, 403, 429),
)
async def rotate_signing_secret(
    request: Request, caller: Managing, session: DbSession, context: Context
) -> Response:
    keys = await signing.rotate(session, context.engine.box, caller.region.id)
    return respond(request, _view(keys), "Signing secret rotated")


@router.get(
    "/webhooks",
    summary="The region's webhook endpoints (in this mode)",
    response_model=Envelope[list[Webhook]],
    responses=error_responses(400, 401, 403, 429),
)
async def list_webhooks(
    request: Request, caller: Managing, session: DbSession, context: Context, page: Page
) -> Response:
    items, cursor = await service.list_endpoints(session, caller.scope, page, context.cursors)
    return respond_page(
        request, items, "Webhook endpoints retrieved", cursor=cursor, page_size=page.page_size
    )


@router.post(
    "/webhooks",
    status_code=201,
    summary="Subscribe an endpoint to events; its signing secret is shown this once",
    response_model=Envelope[WebhookWithSecret],
    responses=error_responses(400, 401, 403, 415, 422, 429),
)
async def create_webhook(
    request: Request, body: WebhookInput, caller: Managing, session: DbSession, context: Context
) -> Response:
    await check_url(body.url, context.url_policy)
    given = body.model_dump(exclude_unset=True)
    endpoint, secret = service.new_endpoint(caller.scope, context.engine.box, given, context.clock())
    session.add(endpoint)
    return respond(
        request, service.endpoint_view(endpoint) | {"secret": secret}, "Webhook endpoint created", 201
    )


@router.get(
    "/webhooks/{webhookId}",
    summary="A webhook endpoint",
    response_model=Envelope[Webhook],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def read_webhook(request: Request, webhookId: str, caller: Reader, session: DbSession) -> Response:
    endpoint = await service.find_endpoint(session, caller.scope, webhookId)
    return respond(request, service.endpoint_view(endpoint), "Webhook endpoint retrieved")


@router.patch(
    "/webhooks/{webhookId}",
    summary="Change an endpoint's url, events, description, or enable or disable it",
    response_model=Envelope[Webhook],
    responses=error_responses(400, 401, 403, 404, 415, 422, 429),
)
async def update_webhook(
    request: Request,
    webhookId: str,
    body: WebhookUpdate,
    caller: Managing,
    session: DbSession,
    context: Context,
) -> Response:
    endpoint = await service.find_endpoint(session, caller.scope, webhookId)
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        await check_url(changes["url"], context.url_policy)
    service.change_endpoint(endpoint, changes, context.clock())
    return respond(request, service.endpoint_view(endpoint), "Webhook endpoint changed")


@router.delete(
    "/webhooks/{webhookId}",
    summary="Remove a webhook endpoint",
    response_model=Envelope[None],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def delete_webhook(request: Request, webhookId: str, caller: Managing, session: DbSession) -> Response:
    await service.remove_endpoint(
        session, caller.scope, await service.find_endpoint(session, caller.scope, webhookId)
    )
    return respond(request, None, "Webhook endpoint removed")


@router.post(
    "/webhooks/{webhookId}/rotate-secret",
    summary="A new signing secret for the endpoint; the old one keeps signing alongside for 24 hours",
    response_model=Envelope[WebhookWithSecret],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def rotate_webhook_secret(
    request: Request, webhookId: str, caller: Managing, session: DbSession, context: Context
) -> Response:
    endpoint = await service.find_endpoint(session, caller.scope, webhookId)
    secret = service.rotate_secret(endpoint, context.engine.box, context.clock())
    return respond(request, service.endpoint_view(endpoint) | {"secret": secret}, "Webhook secret rotated")


@router.get(
    "/events",
    summary="The region's event feed (30 days), in commit order; resume with the last page's cursor",
    response_model=Envelope[list[EventOut]],
    responses=error_responses(400, 401, 403, 429),
)
async def list_events(
    request: Request, caller: Reader, session: DbSession, context: Context, page: Page
) -> Response:
    items, cursor = await service.feed(session, caller.scope, page, context.cursors)
    return respond_page(request, items, "Events retrieved", cursor=cursor, page_size=page.page_size)


@router.post(
    "/webhooks/{webhookId}/test",
    status_code=202,
    summary="Send the endpoint a webhook.test event",
    response_model=Envelope[dict[str, str]],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def test_webhook(
    request: Request, webhookId: str, caller: Managing, session: DbSession, context: Context
) -> Response:
    endpoint = await service.find_endpoint(session, caller.scope, webhookId)
    message = service.test_message(endpoint, context.clock())
    session.add(message)
    await wake_after_commit(session, context.engine.callbacks_waker, CALLBACKS_CHANNEL)
    return respond(request, {"eventId": message.event_id}, "Test event queued", 202)


@router.get(
    "/webhooks/{webhookId}/deliveries",
    summary="The endpoint's delivery attempts, newest first",
    response_model=Envelope[list[DeliveryAttempt]],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def list_deliveries(
    request: Request, webhookId: str, caller: Reader, session: DbSession, context: Context, page: Page
) -> Response:
    endpoint = await service.find_endpoint(session, caller.scope, webhookId)
    items, cursor = await service.attempts_of(session, caller.scope, endpoint.id, page, context.cursors)
    return respond_page(request, items, "Deliveries retrieved", cursor=cursor, page_size=page.page_size)


@router.post(
    "/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver",
    status_code=202,
    summary="Send that attempt's event to the endpoint again (same webhook-id)",
    response_model=Envelope[dict[str, str]],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def redeliver(
    request: Request, webhookId: str, deliveryId: str, caller: Managing, session: DbSession, context: Context
) -> Response:
    endpoint = await service.find_endpoint(session, caller.scope, webhookId)
    message = await service.redelivery(session, caller.scope, endpoint, deliveryId, context.clock())
    session.add(message)
    await wake_after_commit(session, context.engine.callbacks_waker, CALLBACKS_CHANNEL)
    return respond(request, {"eventId": message.event_id}, "Redelivery queued", 202)
