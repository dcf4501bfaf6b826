"""User routes: signup, the caller's own account, and superuser administration."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, querystring_schema, request_schema, response_schema

from service import keys
from service.accounts import users
from service.accounts.users import NewUser
from service.auth import Access, current_session, current_user, requires
from service.errors import NotFound
from service.ids import parse_id
from service.openapi import error_responses, no_content, path_id, path_text, response_headers
from service.paths import fixed_path_methods
from service.queries.users import User
from service.representations import user_json
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
)

routes = web.RouteTableDef()

# One path in the document for two keys (OpenAPI forbids `/users/{username}` beside
# `/users/{user_id}`): GET reads the segment as a username, PATCH and DELETE as an id.
ITEM = "/users/{user}"
ITEM_BY_ID = "/users/{user:[0-9]+}"
_USER_ID = path_id("user", "The user's id; anything but a positive integer is 404")
_USERNAME = path_text("user", "The username, matched case-insensitively; may be all digits")
_BODY_ERRORS = (400, 413, 415, 422)
_WRONG_PASSWORDS = (
    "Wrong current passwords are counted per user like failed logins: after "
    "LOGIN_MAX_FAILURES of them within LOGIN_FAILURE_WINDOW_SECONDS, 429 with Retry-After "
    "(even for the right one) until the window passes, and the session that asked ends."
)


@routes.post("/users/signup")
@docs(
    tags=["users"],
    summary="Sign up",
    description="Creates an active, non-superuser account. 403 when OPEN_SIGNUP is off.",
    responses=error_responses(*_BODY_ERRORS, 403, 409),
)
@request_schema(SignupSchema)
@response_schema(UserSchema, 201, description="Created; `Location` names it")
@response_headers(201, "Location")
async def signup(request: web.Request) -> web.Response:
    user = await users.sign_up(request.app[keys.ACCOUNTS], NewUser(**request[keys.BODY]))
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
@response_headers(201, "Location")
async def create_user(request: web.Request) -> web.Response:
    new = NewUser(**request[keys.BODY])
    return _created(await users.create_user(request.app[keys.ACCOUNTS], new))


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
    query = request[keys.QUERY]
    page = await users.list_users(
        request.app[keys.ACCOUNTS], skip=query["skip"], limit=query["limit"]
    )
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
    changes = request[keys.BODY]
    updated = await users.update_me(
        request.app[keys.ACCOUNTS], me=current_user(request), changes=changes
    )
    return json_response(user_json(updated))


@routes.patch("/users/me/password")
@docs(
    tags=["users"],
    summary="Change the caller's password",
    description="Needs the current password (wrong: 400). Tokens issued before are refused. "
    + _WRONG_PASSWORDS,
    responses={**no_content("Changed"), **error_responses(*_BODY_ERRORS, 401, 403, 429)},
)
@requires(Access.USER)
@request_schema(PasswordChangeSchema)
async def change_my_password(request: web.Request) -> web.Response:
    data = request[keys.BODY]
    await users.change_own_password(
        request.app[keys.ACCOUNTS],
        me=current_user(request),
        session=current_session(request),
        current_password=data["current_password"],
        new_password=data["new_password"],
    )
    return web.Response(status=204)


@routes.delete("/users/me")
@docs(
    tags=["users"],
    summary="Delete the caller's account (not for superusers)",
    responses={**no_content("Deleted"), **error_responses(401, 403)},
)
@requires(Access.USER)
async def delete_me(request: web.Request) -> web.Response:
    await users.delete_me(request.app[keys.ACCOUNTS], me=current_user(request))
    return web.Response(status=204)


@routes.get(ITEM)
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
    user = await users.find_user(
        request.app[keys.ACCOUNTS],
        by=current_user(request),
        username=request.match_info["user"],
    )
    return json_response(user_json(user))


@routes.patch(ITEM_BY_ID)
@docs(
    tags=["users"],
    summary="Change a user (that user, or a superuser)",
    description="Only superusers may set `is_active`/`is_superuser`. Changing one's own "
    "`password` needs `current_password` (wrong: 400). A password change refuses older "
    "tokens. Demoting or deactivating the last active superuser: 409. " + _WRONG_PASSWORDS,
    parameters=[_USER_ID],
    responses=error_responses(*_BODY_ERRORS, 401, 403, 404, 409, 429),
)
@requires(Access.USER)
@request_schema(UserUpdateSchema)
@response_schema(UserSchema, 200, description="The updated user")
async def update_user(request: web.Request) -> web.Response:
    changes = request[keys.BODY]
    updated = await users.update_user(
        request.app[keys.ACCOUNTS],
        by=current_user(request),
        session=current_session(request),
        user_id=_user_id(request),
        changes=changes,
    )
    return json_response(user_json(updated))


@routes.delete(ITEM_BY_ID)
@docs(
    tags=["users"],
    summary="Delete a user (superuser)",
    description="A superuser cannot delete himself. The user's tokens stop working at once.",
    parameters=[_USER_ID],
    responses={**no_content("Deleted"), **error_responses(401, 403, 404, 409)},
)
@requires(Access.SUPERUSER)
async def delete_user(request: web.Request) -> web.Response:
    await users.delete_user(
        request.app[keys.ACCOUNTS], by=current_user(request), user_id=_user_id(request)
    )
    return web.Response(status=204)


@routes.route("PATCH", ITEM)
@routes.route("DELETE", ITEM)
async def no_such_user_id(request: web.Request) -> web.Response:
    """PATCH/DELETE take a positive integer id: anything else is 404, not 405.

    Except a path that is a route of its own (`/users/signup`, POST only): 405 with its
    methods in `Allow`, as the document says of a method it does not list there.
    """
    allowed = fixed_path_methods(request)
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise NotFound("user_not_found")


def _created(user: User) -> web.Response:
    return json_response(
        user_json(user), status=201, headers={"Location": f"/users/{user.username}"}
    )


def _user_id(request: web.Request) -> int:
    user_id = parse_id(request.match_info["user"])
    if user_id is None:
        raise NotFound("user_not_found")
    return user_id
