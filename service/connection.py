"""The HTTP connection the service is served with, and the runner that builds it.

Two things aiohttp's own connection (`web_protocol.RequestHandler`) does not do for us:

* Deadlines for a new connection's first byte and for each request head. aiohttp has no
  timeout for reading a head; its keep-alive timer (armed when a connection opens and after
  each response) only closes a connection that is idle. One number cannot do every job: an
  idle connection between requests should outlive a reverse proxy's upstream keep-alive
  (often 60 s; closing first makes the proxy reuse a dead connection and fail a request),
  so that timer gets KEEPALIVE_TIMEOUT_SECONDS; a new connection that sends nothing holds a
  descriptor other clients need, so it gets FIRST_BYTE_TIMEOUT_SECONDS; and a head that has
  begun to arrive must be complete within REQUEST_TIMEOUT_SECONDS of its first byte, as the
  contract says. Whether bytes begin a head is decided from the parser's side (no head
  complete yet, or the previous request's body all in and that request answered), not
  from whether the handler's task already waits for a request: a client's first bytes
  usually arrive with the connection, before that task has run (the slowloris pattern).
* problem+json for requests aiohttp refuses before any middleware sees them. A request head
  over the size limits, too many headers, or Content-Length together with
  Transfer-Encoding fail in aiohttp's HTTP parser; aiohttp then answers from `handle_error`
  in text/plain, echoing part of the client's bytes, and logs them through the standard
  library's logger. Here the answer is a problem document like every other error, and the
  log line names the refusal without the bytes.

aiohttp's `Server` builds its connections from a module-level name, with no parameter to
choose the class, so `AppRunner` below makes a `Server` that builds ours: every way the
service is served (run.py, run.py --workers, gunicorn with service.worker.Worker) starts
through that runner, and nothing is patched for the process. The runner also has the loop
log running out of descriptors once (service/descriptors.py). tests/test_connection.py
fails if the aiohttp internals used here change shape.
"""

from __future__ import annotations

import asyncio
import os
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_request import BaseRequest
from loguru import logger

from service import headers
from service.descriptors import accepted, log_exhaustion
from service.errors import ApiError, problem_response


class RequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection, plus deadlines (first byte, each head) and problem+json refusals."""

    __slots__ = (
        "_first_byte_handle",
        "_first_byte_timeout",
        "_head_handle",
        "_head_of",
        "_head_timeout",
        "_last_payload",
    )

    def __init__(
        self,
        manager: web_server.Server,
        *,
        head_timeout: float | None = None,
        first_byte_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._first_byte_timeout = first_byte_timeout
        self._head_of = -1  # the request count when the current head's deadline was armed
        self._head_handle: asyncio.TimerHandle | None = None
        self._first_byte_handle: asyncio.TimerHandle | None = None
        self._last_payload: StreamReader | None = None  # the body of the latest head parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        accepted(sock.fileno() if sock is not None else -1)
        if self._first_byte_timeout is not None:
            self._first_byte_handle = self._loop.call_later(
                self._first_byte_timeout, self._cut_off, "no first byte"
            )

    def connection_lost(self, exc: BaseException | None) -> None:
        for handle in (self._first_byte_handle, self._head_handle):
            if handle is not None:
                handle.cancel()
        self._last_payload = None  # it refers back to this connection
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._first_byte_handle is not None:
            self._first_byte_handle.cancel()
            self._first_byte_handle = None
        if data and self._head_timeout is not None and self._starts_a_head():
            self._arm_head_deadline(self._head_timeout)
        count = self._request_count
        super().data_received(data)
        if self._request_count != count and self._messages:
            self._last_payload = self._messages[-1][1]

    def _starts_a_head(self) -> bool:
        """Whether bytes arriving now begin a new request head (once per head).

        Before the first head is complete every byte is head; after it, a byte begins the
        next head when the previous request's body is all in and that request is no longer
        being handled. This does not depend on the handler already waiting for a request:
        a client's first bytes usually arrive with the connection, before the handler's
        task has run, and the next head can arrive before it waits again.
        """
        if self._head_of == self._request_count:
            return False  # this head's deadline is already running: trickling cannot move it
        if self._request_count == 0:
            return True
        body_done = self._last_payload is None or self._last_payload.is_eof()
        return body_done and not self._messages and not self._request_in_progress

    def _arm_head_deadline(self, seconds: float) -> None:
        self._head_of = self._request_count
        if self._head_handle is not None:
            self._head_handle.cancel()
        self._head_handle = self._loop.call_later(seconds, self._head_expired)
        # aiohttp's keep-alive timer must not close the connection before this deadline.
        deadline = self._loop.time() + seconds
        self._next_keepalive_close_time = max(self._next_keepalive_close_time, deadline)

    def _head_expired(self) -> None:
        self._head_handle = None
        if self._request_count != self._head_of:
            return  # the head was completed in time
        if self._request_in_progress:
            # A head pipelined behind a request still being handled: the answer in
            # flight is not cut; the head is checked again once more time has passed.
            self._arm_head_deadline(self._head_timeout or 0.0)
            return
        self._cut_off("request head not complete in time")

    def _cut_off(self, why: str) -> None:
        self._first_byte_handle = None
        if self.transport is not None:
            logger.debug(f"Closed a connection: {why}")
        self.force_close()

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
        headers.add_common(response.headers)  # no app signal sees this answer
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

    async def setup(self) -> None:
        # The loop that will accept the connections: running out of descriptors there is
        # logged once per spell, not once per refused connection.
        log_exhaustion(asyncio.get_running_loop())
        await super().setup()

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
