"""problem+json for requests that aiohttp refuses before any middleware sees them.

A request head over the size limits, too many headers, or Content-Length together with
Transfer-Encoding fail in aiohttp's HTTP parser. aiohttp then answers from
`RequestHandler.handle_error` in text/plain, echoing part of the client's bytes, and logs
them through the standard library's logger. aiohttp offers no hook for this answer, so
`install()` replaces that one method for the process: the answer becomes a problem
document like every other error, and the log line names the refusal without the bytes.
"""

from __future__ import annotations

import os
import time
from http import HTTPStatus

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_request import BaseRequest
from loguru import logger

from service.errors import ApiError, problem_response


def install() -> None:
    """Answer aiohttp's own refusals with problem+json (idempotent)."""
    web_protocol.RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]


def _handle_error(
    self: web_protocol.RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,  # the client's bytes, among other things: never used
) -> web.StreamResponse:
    started = time.perf_counter()
    if request.writer.output_size > 0:  # as aiohttp does: too late for another answer
        raise ConnectionError("the response was already started; cannot send an error")
    request_id = os.urandom(16).hex()
    reason = _reason(status, exc)
    log = logger.bind(status=status, request_id=request_id, client=request.remote)
    if status >= 500:
        log.opt(exception=exc).error(f"aiohttp could not handle a request: {reason}")
        error = ApiError("internal_error", status=status)  # our fault: say no more
    else:
        # Not HTTP at all as a connection's first bytes (a TLS ClientHello on the plain
        # port, a port scanner) is the internet's background noise: DEBUG, as aiohttp logs
        # it, so that the warnings stay worth reading. Later on a connection it is a client
        # that broke its own stream: a warning like any other refusal.
        first_bytes = self._request_count == 1 and isinstance(exc, BadHttpMethod)
        (log.debug if first_bytes else log.warning)(
            f"Refused a request that could not be parsed: {reason}"
        )
        error = ApiError("unparsable_request", status=status, reason=reason)
    response = problem_response(error, "en")
    response.headers["X-Request-ID"] = request_id
    # As the observe middleware times every other answer (it never sees these).
    response.headers["X-Process-Time-ms"] = f"{(time.perf_counter() - started) * 1000:.2f}"
    response.force_close()  # aiohttp closes the connection after these in any case
    return response


def _reason(status: int, exc: BaseException | None) -> str:
    """What was wrong, in words of ours: aiohttp's messages quote the client's bytes."""
    if isinstance(exc, LineTooLong):
        return "a line of the request head is too long"
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message):
        return "too many headers"
    if isinstance(exc, BadHttpMethod):
        return "the request does not start with an HTTP method"
    if isinstance(exc, BadHttpMessage):
        return "the request is not valid HTTP/1.1"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
