"""The HTTP connection run.py serves with: long idle keep-alive, short time for a head.

aiohttp has no timeout for reading a request head. Its keep-alive timer (armed when a
connection opens and after each response) closes a connection whose next request has not
arrived in full, so it is also what cuts off a client that trickles its headers. One
number cannot do both jobs: an idle connection should outlive a reverse proxy's upstream
keep-alive (often 60 s; closing first makes the proxy reuse a dead connection and fail a
request), while a head that has begun to arrive should be done within
REQUEST_TIMEOUT_SECONDS, as the contract says. So the keep-alive timer gets
KEEPALIVE_TIMEOUT_SECONDS, and the first byte of each new request pulls the same timer in
to REQUEST_TIMEOUT_SECONDS from then: aiohttp's own `_process_keepalive` closes the
connection if the head is still not complete by then (it closes only while the handler
waits for a request, and reschedules itself when the close time has moved on).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web_protocol, web_server


class RequestHandler(web_protocol.RequestHandler):
    """aiohttp's protocol, plus a deadline for a request head once its first byte is in."""

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


def install() -> None:
    """Make aiohttp's Server build our RequestHandler (it is a no-op without head_timeout)."""
    web_server.RequestHandler = RequestHandler  # type: ignore[attr-defined]
