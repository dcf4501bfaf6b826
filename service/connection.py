"""The HTTP connection the service is served with, and the runner that builds it.

Two things aiohttp's own connection (`web_protocol.RequestHandler`) does not do for us:

* A deadline for a request head. aiohttp has no timeout for reading one. Its keep-alive
  timer (armed when a connection opens and after each response) closes a connection whose
  next request has not arrived in full, so it is also what cuts off a client that trickles
  its headers. One number cannot do both jobs: an idle connection should outlive a reverse
  proxy's upstream keep-alive (often 60 s; closing first makes the proxy reuse a dead
  connection and fail a request), while a head that has begun to arrive should be done
  within REQUEST_TIMEOUT_SECONDS, as the contract says. So the keep-alive timer gets
  KEEPALIVE_TIMEOUT_SECONDS, and the first byte of each new request pulls the same timer in
  to REQUEST_TIMEOUT_SECONDS from then: aiohttp's own `_process_keepalive` closes the
  connection if the head is still not complete by then (it closes only while the handler
  waits for a request, and reschedules itself when the close time has moved on).
* problem+json for requests aiohttp refuses before any middleware sees them. A request head
  over the size limits, too many headers, or Content-Length together with
  Transfer-Encoding fail in aiohttp's HTTP parser; aiohttp then answers from `handle_error`
  in text/plain, echoing part of the client's bytes, and logs them through the standard
  library's logger. Here the answer is a problem document like every other error, and the
  log line names the refusal without the bytes.

aiohttp's `Server` builds its connections from a module-level name, with no parameter to
choose the class, so `AppRunner` below makes a `Server` that builds ours: every way the
service is served (run.py, run.py --workers, gunicorn with service.worker.Worker) starts
through that runner, and nothing is patched for the process. tests/test_connection.py
fails if the aiohttp internals used here change shape.
"""

from __future__ import annotations

import os
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_request import BaseRequest
from loguru import logger

from service.errors import ApiError, problem_response


class RequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection, plus a deadline for each head and problem+json refusals."""

    __slots__ = ("_head_of", "_head_timeout")

    def __init__(
        self, manager: web_server.Server, *, head_timeout: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_of = -1  # the request count when the current head's deadline was armed

    def data_received(self, data: bytes) -> None:
        # Idle means the handler waits for a request, so these bytes start a new head: body
        # bytes (of a request being handled, or discarded while lingering) never come then.
        # Armed once per head (the count grows when a head is complete), so bytes trickled
        # into one head cannot push its deadline on. Bytes pipelined behind a request still
        # being handled arm nothing; the next byte after it does.
        idle = self._waiter is not None and not self._waiter.done()
        if (
            self._head_timeout is not None
            and data
            and idle
            and self._head_of != self._request_count
        ):
            self._head_of = self._request_count
            close_time = self._loop.time() + self._head_timeout
            self._next_keepalive_close_time = close_time
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
            self._keepalive_handle = self._loop.call_at(close_time, self._process_keepalive)
        super().data_received(data)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,  # the client's bytes, among other things: never used
    ) -> web.StreamResponse:
        """A problem document for what failed outside every middleware."""
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
            # port, a port scanner) is the internet's background noise: DEBUG, as aiohttp
            # logs it, so that the warnings stay worth reading. Later on a connection it is
            # a client that broke its own stream: a warning like any other refusal.
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


class Server(web_server.Server):
    """aiohttp's low-level server, building our RequestHandler for each connection."""

    def __call__(self) -> RequestHandler:
        # aiohttp's own __call__ retries without the keyword arguments it does not know;
        # ours knows them all (head_timeout included), so a TypeError here is a bug.
        return RequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """web.AppRunner whose server builds our RequestHandler (pass head_timeout=...)."""

    __slots__ = ()

    async def _make_server(self) -> web_server.Server:
        # The app's startup and the keyword arguments it adds stay aiohttp's; only the
        # connection class changes.
        made = await super()._make_server()
        return Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
