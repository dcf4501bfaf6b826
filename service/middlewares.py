"""Request middlewares, outermost first: observe (id, timing, log line), problems, deadline."""

from __future__ import annotations

import asyncio
import os
import re
import time

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError
from loguru import logger

from service import headers, keys, log, messages
from service.accounts.errors import AccountError
from service.client_address import client_address
from service.db import DatabaseUnavailable, InvalidValue, WriteConflict
from service.errors import ApiError, as_api_error, problem_response
from service.paths import fixed_path_methods

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
CLIENT_CLOSED_REQUEST = 499  # logged (never sent) when the client went away mid-request


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id, time it, and write its one log line.

    Every record written while the request is handled (an unhandled error's traceback, a
    refusal's warning, a line from the account rules) carries its request id and client:
    loguru's contextualize puts them in each record's `extra`, text and JSON alike.
    """
    started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
    request[keys.REQUEST_ID] = request_id
    with logger.contextualize(request_id=request_id, client=client_address(request)):
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            _log_request(request, CLIENT_CLOSED_REQUEST, started)
            raise
        elapsed_ms = _log_request(request, response.status, started)
    response.headers["X-Process-Time-ms"] = f"{elapsed_ms:.2f}"
    response.headers["X-Request-ID"] = request_id
    return response


def _log_request(request: web.Request, status: int, started: float) -> float:
    elapsed_ms = (time.perf_counter() - started) * 1000
    logger.bind(status=status).info(  # the request id and client come from the context
        f"{request.method} {log.escape(request.path)} выполнялся {elapsed_ms:.2f} мс"
    )
    return elapsed_ms


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place that turns every error into an application/problem+json response."""
    try:
        return await handler(request)
    except (ApiError, AccountError) as raised:
        error = as_api_error(raised)
        if error.status in _REFUSALS_WORTH_A_WARNING and error.message_key not in _NO_REFUSAL:
            _log_refusal(request, error)
        return problem_response(error, _language(request))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return problem_response(_from_http_exception(request, error), _language(request))
    except (ClientPayloadError, RequestPayloadError, HttpProcessingError, ConnectionError):
        # The client went away, broke off its body or mis-encoded it (a Content-Encoding
        # that does not inflate): a client error, nothing to log as a server error.
        return problem_response(ApiError("incomplete_body", status=400), _language(request))
    except InvalidValue as error:  # what validation let through and the database refused
        where = f"{request.method} {log.escape(request.path)}"
        logger.warning(f"The database refused a value in {where}: {error}")
        return problem_response(ApiError("invalid_value", status=400), _language(request))
    except DatabaseUnavailable as error:  # the server restarting, or the network: retryable
        where = f"{request.method} {log.escape(request.path)}"
        if isinstance(error, WriteConflict):  # a lock waited too long, a deadlock: load
            logger.warning(f"Write conflict in {where}, rolled back: {error}")
        else:
            logger.error(f"Database unavailable in {where}: {error}")
        response = problem_response(
            ApiError("database_unavailable", status=503), _language(request)
        )
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    except Exception:
        logger.opt(exception=True).error(
            f"Unhandled error in {request.method} {log.escape(request.path)}"
        )
        return problem_response(ApiError("internal_error", status=500), _language(request))


DATABASE_RETRY_AFTER_SECONDS = 5

# A caller refused for his rights, or locked out after failed logins: worth a line of its
# own beside the request line, naming who and why (the message key, never a secret).
_REFUSALS_WORTH_A_WARNING = (403, 429)
# A 403 that refuses nothing: the right password of a user with TOTP on, who goes on at
# /login/mfa (service/accounts/login.py logs it at INFO).
_NO_REFUSAL = frozenset({"second_factor_required"})


def _log_refusal(request: web.Request, error: ApiError) -> None:
    user = request.get(keys.CURRENT_USER)
    who = f"user {user.id}" if user is not None else "an anonymous caller"
    logger.bind(status=error.status).warning(
        f"Refused {who}: {error.message_key} ({request.method} {log.escape(request.path)})"
    )


def deadline(seconds: float) -> Middleware:
    """Cut off a request that is not done in `seconds`, such as a body trickled byte by byte."""

    @web.middleware
    async def enforce_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        timeout = asyncio.timeout(seconds)
        try:
            async with timeout:
                return await handler(request)
        except TimeoutError:
            if not timeout.expired():
                raise
            raise ApiError("request_timeout", status=408, seconds=f"{seconds:g}") from None

    return enforce_deadline


def _from_http_exception(request: web.Request, error: web.HTTPException) -> ApiError:
    if error.status == 404:
        return ApiError("route_not_found", status=404, path=request.path)
    if error.status == 405:
        fixed = fixed_path_methods(request)  # `/users/signup`, not `/users/{user}` too
        allow = ",".join(sorted(fixed)) if fixed else error.headers.get("Allow", "")
        return ApiError(
            "method_not_allowed", status=405, headers={"Allow": allow}, method=request.method
        )
    if error.status == 413:
        return ApiError(
            "body_too_large", status=413, limit=request.app[keys.SETTINGS].max_body_bytes
        )
    return ApiError("http_error", status=error.status, reason=error.reason)


def _language(request: web.Request) -> messages.Language:
    return headers.answer_language(request)
