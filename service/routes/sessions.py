"""The caller's own login sessions: list them, end one, end all others."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, response_schema

from service import keys
from service.accounts import sessions
from service.auth import Access, current_session, current_user, requires
from service.openapi import error_responses, no_content, path_text
from service.representations import session_json
from service.responses import json_response
from service.schemas.users import SessionListSchema

routes = web.RouteTableDef()

_SESSION_ID = path_text("session_id", "A session id from the list")


@routes.get("/users/me/sessions")
@docs(
    tags=["users"],
    summary="The caller's open sessions",
    description="Neither ended nor expired; `current` marks the one this token belongs to.",
    responses=error_responses(401, 403),
)
@requires(Access.USER)
@response_schema(SessionListSchema, 200, description="Open sessions, oldest first")
async def list_my_sessions(request: web.Request) -> web.Response:
    found = await sessions.list_open(request.app[keys.ACCOUNTS], user_id=current_user(request).id)
    current = current_session(request)
    data = [session_json(session, current=session.id == current) for session in found]
    return json_response({"data": data, "count": len(data)})


@routes.delete("/users/me/sessions/{session_id}")
@docs(
    tags=["users"],
    summary="End one of the caller's sessions",
    description="Another user's, an unknown or an already ended session: 404.",
    parameters=[_SESSION_ID],
    responses={**no_content("Ended"), **error_responses(401, 403, 404)},
)
@requires(Access.USER)
async def end_my_session(request: web.Request) -> web.Response:
    await sessions.end_session(
        request.app[keys.ACCOUNTS],
        user_id=current_user(request).id,
        session_id=request.match_info["session_id"],
    )
    return web.Response(status=204)


@routes.delete("/users/me/sessions")
@docs(
    tags=["users"],
    summary="End every session of the caller except the current one",
    responses={**no_content("Ended"), **error_responses(401, 403)},
)
@requires(Access.USER)
async def end_my_other_sessions(request: web.Request) -> web.Response:
    await sessions.end_other_sessions(
        request.app[keys.ACCOUNTS], user_id=current_user(request).id, keep=current_session(request)
    )
    return web.Response(status=204)
