"""Liveness and readiness."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs
from marshmallow import Schema, fields

from service import keys
from service.db import migrations
from service.errors import ServiceUnavailable
from service.openapi import error_responses
from service.responses import json_response

routes = web.RouteTableDef()


class StatusSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


@routes.get("/health")
@docs(
    tags=["health"],
    summary="Liveness: the process serves",
    responses={"200": {"description": "Serving", "schema": StatusSchema}},
)
async def health(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/health/ready")
@docs(
    tags=["health"],
    summary="Readiness: the database answers and no migration is pending",
    responses={
        "200": {"description": "Ready", "schema": StatusSchema},
        **error_responses(503),
    },
)
async def ready(request: web.Request) -> web.Response:
    async with request.app[keys.DATABASE].read() as conn:
        reason = await migrations.unready_reason(conn, request.app[keys.KNOWN_MIGRATIONS])
    if reason is not None:
        raise ServiceUnavailable(reason=reason)
    return json_response({"status": "ready"})
