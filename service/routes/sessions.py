"""The caller's own login sessions: list them, end one, end all others."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, response_schema

from service import keys
from service.auth import Access, current_session, current_user, requires
from service.errors import NotFound
from service.ids import is_token_id
from service.openapi import error_responses
from service.queries import sessions
from service.queries.sessions import Session
from service.responses import json_response
from service.schemas.users import SessionListSchema

routes = web.RouteTableDef()

_SESSION_ID = {"in": "path", "name": "session_id", "required": True, "type": "string"}


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
    me = current_user(request)
    async with request.app[keys.DATABASE].read() as conn:
        found = await sessions.list_open(conn, user_id=me.id, now=time.time())
    current = current_session(request)
    data = [session_json(session, current=session.id == current) for session in found]
    return json_response({"data": data, "count": len(data)})


@routes.delete("/users/me/sessions/{session_id}")
@docs(
    tags=["users"],
    summary="End one of the caller's sessions",
    description="Another user's, an unknown or an already ended session: 404.",
    parameters=[_SESSION_ID],
    responses={"204": {"description": "Ended"}, **error_responses(401, 403, 404)},
)
@requires(Access.USER)
async def end_my_session(request: web.Request) -> web.Response:
    me = current_user(request)
    session_id = request.match_info["session_id"]
    if not is_token_id(session_id):
        raise NotFound("session_not_found")
    async with request.app[keys.DATABASE].transaction() as conn:
        ended = await sessions.end_session(
            conn, session_id=session_id, user_id=me.id, now=time.time()
        )
    if not ended:
        raise NotFound("session_not_found")
    return web.Response(status=204)


@routes.delete("/users/me/sessions")
@docs(
    tags=["users"],
    summary="End every session of the caller except the current one",
    responses={"204": {"description": "Ended"}, **error_responses(401, 403)},
)
@requires(Access.USER)
async def end_my_other_sessions(request: web.Request) -> web.Response:
    me = current_user(request)
    async with request.app[keys.DATABASE].transaction() as conn:
        await sessions.end_user_sessions(conn, user_id=me.id, keep=current_session(request))
    return web.Response(status=204)


def session_json(session: Session, *, current: bool) -> dict[str, Any]:
    """The API's representation of a session: never a token."""
    return {
        "id": session.id,
        "created_at": session.created_at,
        "last_used_at": session.last_used_at,
        "user_agent": session.user_agent,
        "client": session.client,
        "current": current,
    }
