"""The region's callback signing secret (contract §2.5, §3.7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from onderwijsregio.auth.dependencies import RegionManage
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.clock import to_rfc3339
from onderwijsregio.context import AppContext, app_context
from onderwijsregio.dependencies import DbSession, WriteDbSession
from onderwijsregio.engine import signing
from onderwijsregio.envelope import Envelope, respond
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.openapi_docs import error_responses

router = APIRouter(prefix=API_PREFIX, tags=["Webhooks"])
Managing = Annotated[RegionContext, Depends(RegionManage)]
Context = Annotated[AppContext, Depends(app_context)]


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
