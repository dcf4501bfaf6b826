"""The aiohttp internals service/connection.py and service/worker.py rely on are still there.

Our connection class reads and sets private attributes of aiohttp's RequestHandler, and our
runner rebuilds aiohttp's Server from its private fields. An aiohttp upgrade that renames
or reshapes one of them would break the head deadline or the problem+json refusals quietly
(an AttributeError inside a connection, or aiohttp's own class serving instead): these
tests name each one, so the upgrade fails here first.
"""

from __future__ import annotations

import asyncio
import inspect

from aiohttp import web, web_protocol, web_runner, web_server
from aiohttp.worker import GunicornWebWorker

from service import connection

# Read or written by connection.RequestHandler's deadlines and handle_error.
REQUEST_HANDLER_SLOTS = {
    "_waiter",  # set while the connection waits for a request (idle)
    "_request_count",  # grows when a request head is complete
    "_messages",  # parsed requests not yet taken by the handler, (message, payload)
    "_request_in_progress",  # true while a request is being handled
    "_keepalive_handle",  # the timer that closes an idle connection
    "_next_keepalive_close_time",  # when that timer closes it; moved to the head deadline
    "_loop",
}


def slots(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_request_handler_attributes_the_head_deadline_uses_exist() -> None:
    assert slots(web_protocol.RequestHandler) >= REQUEST_HANDLER_SLOTS
    # Called by the timer we arm: it closes the connection if still idle at the close time.
    assert parameters(web_protocol.RequestHandler._process_keepalive) == ["self"]
    assert parameters(web_protocol.RequestHandler.data_received) == ["self", "data"]
    assert parameters(web_protocol.RequestHandler.connection_made) == ["self", "transport"]
    assert parameters(web_protocol.RequestHandler.connection_lost) == ["self", "exc"]
    assert parameters(web_protocol.RequestHandler.force_close) == ["self"]
    init = inspect.signature(web_protocol.RequestHandler.__init__).parameters
    for name in ("manager", "loop", "keepalive_timeout", "lingering_time"):
        assert name in init, name


def test_handle_error_is_still_the_hook_for_answers_outside_the_middlewares() -> None:
    expected = ["self", "request", "status", "exc", "message"]
    assert parameters(web_protocol.RequestHandler.handle_error) == expected
    assert parameters(connection.RequestHandler.handle_error) == expected
    # Called by aiohttp where its parser refuses a request, and for a failing handler.
    source = inspect.getsource(web_protocol.RequestHandler)
    assert "self.handle_error(" in source


def test_the_server_fields_our_runner_rebuilds_it_from_exist() -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    async def build() -> web_server.Server:
        return web_server.Server(handler, keepalive_timeout=5.0)

    server = asyncio.run(build())
    assert isinstance(server._loop, asyncio.AbstractEventLoop)
    assert server._kwargs == {"keepalive_timeout": 5.0}
    assert server.request_handler is handler
    assert callable(server.request_factory)
    assert server.handler_cancellation is False
    init = inspect.signature(web_server.Server.__init__).parameters
    for name in ("handler", "request_factory", "handler_cancellation", "loop", "kwargs"):
        assert name in init, name
    # The server is the protocol factory: calling it makes each connection's handler.
    assert "RequestHandler(" in inspect.getsource(web_server.Server.__call__)


def test_the_runner_hook_exists_and_is_what_setup_calls() -> None:
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)
    assert "self._make_server()" in inspect.getsource(web_runner.BaseRunner.setup)


async def test_our_runner_serves_with_our_connection_class() -> None:
    app = web.Application()
    runner = connection.AppRunner(app, head_timeout=1.0, keepalive_timeout=7.0)
    await runner.setup()
    try:
        server = runner.server
        assert isinstance(server, connection.Server)
        handler = server()
        assert isinstance(handler, connection.RequestHandler)
        assert handler._head_timeout == 1.0
        assert handler._keepalive_timeout == 7.0
    finally:
        await runner.cleanup()


def test_gunicorns_aiohttp_worker_still_serves_an_app_runner_it_is_given() -> None:
    # service.worker.Worker hands GunicornWebWorker an AppRunner-returning coroutine function.
    source = inspect.getsource(GunicornWebWorker._run)
    assert "isinstance(wsgi, web.AppRunner)" in source
    for name in ("init_process", "load_wsgi", "handle_exit", "handle_quit"):
        assert callable(getattr(GunicornWebWorker, name)), name
