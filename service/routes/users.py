"""User routes: signup, the caller's own account, and superuser administration."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, querystring_schema, request_schema, response_schema

from service import keys
from service.auth import Access, current_session, current_user, requires
from service.db import Connection
from service.errors import BadRequest, Conflict, Forbidden, NotFound, RequestValidationError
from service.ids import parse_id
from service.openapi import error_responses
from service.queries import sessions, users
from service.queries.users import User, UsernameTaken
from service.responses import json_response
from service.schemas.users import (
    MeUpdateSchema,
    PasswordChangeSchema,
    SignupSchema,
    UserCreateSchema,
    UserListQuerySchema,
    UserPageSchema,
    UserSchema,
    UserUpdateSchema,
    username_problem,
)

routes = web.RouteTableDef()

ITEM_BY_ID = "/users/{user_id:[0-9]+}"
_USER_ID = {
    "in": "path",
    "name": "user_id",
    "required": True,
    "type": "integer",
    "minimum": 1,
    "description": "The user's id; anything but a positive integer is 404",
}
_USERNAME = {
    "in": "path",
    "name": "username",
    "required": True,
    "type": "string",
    "description": "Matched case-insensitively; may be all digits",
}
_BODY_ERRORS = (400, 413, 415, 422)


@routes.post("/users/signup")
@docs(
    tags=["users"],
    summary="Sign up",
    description="Creates an active, non-superuser account. 403 when OPEN_SIGNUP is off.",
    responses=error_responses(*_BODY_ERRORS, 403, 409),
)
@request_schema(SignupSchema)
@response_schema(UserSchema, 201, description="Created; `Location` names it")
async def signup(request: web.Request) -> web.Response:
    if not request.app[keys.SETTINGS].open_signup:
        raise Forbidden("signup_closed")
    user = await _create(request, {**request["data"], "is_active": True, "is_superuser": False})
    return _created(user)


@routes.post("/users/")
@docs(
    tags=["users"],
    summary="Create a user (superuser)",
    responses=error_responses(*_BODY_ERRORS, 401, 403, 409),
)
@requires(Access.SUPERUSER)
@request_schema(UserCreateSchema)
@response_schema(UserSchema, 201, description="Created; `Location` names it")
async def create_user(request: web.Request) -> web.Response:
    return _created(await _create(request, request["data"]))


@routes.get("/users/")
@docs(
    tags=["users"],
    summary="List users (superuser)",
    responses=error_responses(401, 403, 422),
)
@requires(Access.SUPERUSER)
@querystring_schema(UserListQuerySchema)
@response_schema(UserPageSchema, 200, description="A page of users ordered by id")
async def list_users(request: web.Request) -> web.Response:
    query = request["querystring"]
    async with request.app[keys.DATABASE].read(snapshot=True) as conn:
        page = await users.list_users(conn, skip=query["skip"], limit=query["limit"])
    return json_response({"data": [user_json(u) for u in page.items], "count": page.count})


@routes.get("/users/me")
@docs(tags=["users"], summary="The caller's account", responses=error_responses(401, 403))
@requires(Access.USER)
@response_schema(UserSchema, 200, description="The caller")
async def read_me(request: web.Request) -> web.Response:
    return json_response(user_json(current_user(request)))


@routes.patch("/users/me")
@docs(
    tags=["users"],
    summary="Change the caller's username, email or full name",
    responses=error_responses(*_BODY_ERRORS, 401, 403, 409),
)
@requires(Access.USER)
@request_schema(MeUpdateSchema)
@response_schema(UserSchema, 200, description="The updated account")
async def update_me(request: web.Request) -> web.Response:
    me = current_user(request)
    async with request.app[keys.DATABASE].transaction() as conn:
        updated = await _update(conn, me.id, request["data"])
    return json_response(user_json(updated))


@routes.patch("/users/me/password")
@docs(
    tags=["users"],
    summary="Change the caller's password",
    description="Needs the current password (wrong: 400). Tokens issued before are refused.",
    responses={"204": {"description": "Changed"}, **error_responses(*_BODY_ERRORS, 401, 403)},
)
@requires(Access.USER)
@request_schema(PasswordChangeSchema)
async def change_my_password(request: web.Request) -> web.Response:
    me = current_user(request)
    data = request["data"]
    await _check_current_password(request, me, data["current_password"])
    new_hash = await request.app[keys.PASSWORDS].hash(data["new_password"])
    async with request.app[keys.DATABASE].transaction() as conn:
        await _update(
            conn, me.id, {"hashed_password": new_hash}, keep_session=current_session(request)
        )
    return web.Response(status=204)


@routes.delete("/users/me")
@docs(
    tags=["users"],
    summary="Delete the caller's account (not for superusers)",
    responses={"204": {"description": "Deleted"}, **error_responses(401, 403)},
)
@requires(Access.USER)
async def delete_me(request: web.Request) -> web.Response:
    me = current_user(request)
    async with request.app[keys.DATABASE].transaction() as conn:
        fresh = await users.get_by_id(conn, user_id=me.id)  # promoted meanwhile?
        if fresh is None or fresh.is_superuser:
            raise Forbidden("superuser_self_delete")
        await users.delete_user(conn, user_id=me.id)
    return web.Response(status=204)


@routes.get("/users/{username}")
@docs(
    tags=["users"],
    summary="Get a user by username (that user, or a superuser)",
    description="Another user asking gets 403 whether or not the name exists.",
    parameters=[_USERNAME],
    responses=error_responses(401, 403, 404),
)
@requires(Access.USER)
@response_schema(UserSchema, 200, description="The user")
async def read_user(request: web.Request) -> web.Response:
    me = current_user(request)
    username = request.match_info["username"]
    if username.lower() == me.username.lower():
        return json_response(user_json(me))
    if not me.is_superuser:
        raise Forbidden("not_enough_privileges")
    user = None
    if username_problem(username) is None:  # anything else names no one (a NUL, say)
        async with request.app[keys.DATABASE].read() as conn:
            user = await users.get_by_username(conn, username=username)
    if user is None:
        raise NotFound("user_not_found")
    return json_response(user_json(user))


@routes.patch(ITEM_BY_ID)
@docs(
    tags=["users"],
    summary="Change a user (that user, or a superuser)",
    description="Only superusers may set `is_active`/`is_superuser`. Changing one's own "
    "`password` needs `current_password`. A password change refuses older tokens. "
    "Demoting or deactivating the last active superuser: 409.",
    parameters=[_USER_ID],
    responses=error_responses(*_BODY_ERRORS, 401, 403, 404, 409),
)
@requires(Access.USER)
@request_schema(UserUpdateSchema)
@response_schema(UserSchema, 200, description="The updated user")
async def update_user(request: web.Request) -> web.Response:
    me = current_user(request)
    user_id = _user_id(request)
    data = dict(request["data"])
    if not me.is_superuser and (user_id != me.id or {"is_active", "is_superuser"} & data.keys()):
        raise Forbidden("not_enough_privileges")
    current_password = data.pop("current_password", None)
    if "password" in data:
        if user_id == me.id:
            await _check_current_password(request, me, current_password)
        data["hashed_password"] = await request.app[keys.PASSWORDS].hash(data.pop("password"))
    own_session = current_session(request) if user_id == me.id else None
    async with request.app[keys.DATABASE].transaction() as conn:
        updated = await _update(conn, user_id, data, keep_session=own_session)
    return json_response(user_json(updated))


@routes.delete(ITEM_BY_ID)
@docs(
    tags=["users"],
    summary="Delete a user (superuser)",
    description="A superuser cannot delete himself. The user's tokens stop working at once.",
    parameters=[_USER_ID],
    responses={"204": {"description": "Deleted"}, **error_responses(401, 403, 404, 409)},
)
@requires(Access.SUPERUSER)
async def delete_user(request: web.Request) -> web.Response:
    me = current_user(request)
    user_id = _user_id(request)
    if user_id == me.id:
        raise Forbidden("superuser_self_delete")
    async with request.app[keys.DATABASE].transaction() as conn:
        target = await users.get_by_id(conn, user_id=user_id)
        if target is None:
            raise NotFound("user_not_found")
        await _keep_a_superuser(conn, target, {"is_active": False})
        await users.delete_user(conn, user_id=user_id)
    return web.Response(status=204)


@routes.route("PATCH", "/users/{username}")
@routes.route("DELETE", "/users/{username}")
async def no_such_user_id(_: web.Request) -> web.Response:
    """PATCH/DELETE take a positive integer id: anything else is 404, not 405."""
    raise NotFound("user_not_found")


def user_json(user: User) -> dict[str, Any]:
    """The API's representation of a user: never the hash."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "full_name": user.full_name,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def _created(user: User) -> web.Response:
    return json_response(
        user_json(user), status=201, headers={"Location": f"/users/{user.username}"}
    )


async def _create(request: web.Request, data: dict[str, Any]) -> User:
    fields = dict(data)
    fields["hashed_password"] = await request.app[keys.PASSWORDS].hash(fields.pop("password"))
    try:
        async with request.app[keys.DATABASE].transaction() as conn:
            return await users.create_user(conn, **fields)
    except UsernameTaken:
        raise Conflict("username_taken") from None


async def _update(
    conn: Connection,
    user_id: int,
    changes: dict[str, Any],
    *,
    keep_session: str | None = None,
) -> User:
    """Change the user inside the caller's unit of work, keeping every rule that spans users.

    The user is read here, inside the unit of work: a copy read earlier (the caller, as
    the auth middleware saw him) could write back flags another request just changed.
    A new password refuses the user's older access tokens; it, and a deactivation, also
    end the user's sessions, except `keep_session` (the caller's own, changing himself).
    """
    target = await users.get_by_id(conn, user_id=user_id)
    if target is None:
        raise NotFound("user_not_found")
    await _keep_a_superuser(conn, target, changes)
    new_password = "hashed_password" in changes
    try:
        updated = await users.update_user(
            conn, current=target, changes=changes, revoke_tokens=new_password
        )
    except UsernameTaken:
        raise Conflict("username_taken") from None
    if new_password or changes.get("is_active") is False:
        await sessions.end_user_sessions(conn, user_id=target.id, keep=keep_session)
    return updated


async def _keep_a_superuser(conn: Connection, target: User, changes: dict[str, Any]) -> None:
    """409 if the change would leave no active superuser."""
    stays = changes.get("is_superuser", target.is_superuser) and changes.get(
        "is_active", target.is_active
    )
    demoted = target.is_superuser and target.is_active and not stays
    if demoted and await users.count_other_active_superusers(conn, user_id=target.id) == 0:
        raise Conflict("last_superuser")


async def _check_current_password(request: web.Request, user: User, password: str | None) -> None:
    if password is None:
        raise RequestValidationError(
            {"current_password": ["Required to change your own password."]}
        )
    matches, _ = await request.app[keys.PASSWORDS].verify(password, user.hashed_password)
    if not matches:
        raise BadRequest("incorrect_password")


def _user_id(request: web.Request) -> int:
    user_id = parse_id(request.match_info["user_id"])
    if user_id is None:
        raise NotFound("user_not_found")
    return user_id
