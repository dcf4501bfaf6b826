"""The metrics in the app: the request middleware, GET /metrics, the login outcomes.

GET /metrics is left out of the OpenAPI document: it is for the operator's Prometheus, in
Prometheus's own text format, and every address outside METRICS_ALLOW_IPS gets the 404 of
an unknown route, so the API's clients never see it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractResource
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from service import keys
from service.accounts import errors
from service.client_address import client_address
from service.errors import ApiError
from service.metrics.registry import LoginOutcome, Metrics
from service.middlewares import CLIENT_CLOSED_REQUEST
from service.settings import Settings

PATH = "/metrics"
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)
OTHER = "other"  # the method label of a method no route has
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_LOGIN_REFUSALS: dict[type[errors.AccountError], LoginOutcome] = {
    errors.IncorrectLogin: LoginOutcome.FAILURE,
    errors.LoginLocked: LoginOutcome.THROTTLED,
    errors.InactiveUser: LoginOutcome.INACTIVE,
    errors.EmailNotVerified: LoginOutcome.UNVERIFIED,
    errors.SecondFactorRequired: LoginOutcome.SECOND_FACTOR,
    errors.IncorrectLoginCode: LoginOutcome.FAILURE,  # /login/mfa: a wrong code
}


def setup_metrics(app: web.Application, settings: Settings) -> None:
    """With METRICS_ENABLED: the metrics, their middleware (outermost) and GET /metrics."""
    if not settings.metrics_enabled:
        return
    metrics = Metrics(multiprocess_dir=settings.metrics_multiprocess_dir)
    app[keys.METRICS] = metrics
    app.middlewares.insert(0, _middleware(metrics))
    # Every method, so that a client outside METRICS_ALLOW_IPS gets 404 whatever it sends
    # (a router's 405 would tell it that the route exists).
    app.router.add_route("*", PATH, _serve)


def _middleware(metrics: Metrics) -> Middleware:
    # Each route's label, made on its first request: the app's routes are a fixed few.
    labels: dict[AbstractResource, str] = {}

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count and time every request by method, route template and status."""
        started = time.perf_counter()
        status = 500  # an exception no middleware turned into an answer
        metrics.request_started()
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:  # a redirect, say, that aiohttp sends
            status = error.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            method = request.method if request.method in METHODS else OTHER
            route = _route_label(labels, request.match_info.route.resource)
            metrics.request_answered(method, route, status, time.perf_counter() - started)

    return count


def _route_label(labels: dict[AbstractResource, str], resource: AbstractResource | None) -> str:
    """The route's label, as the API document writes it (`/products/` and `/products` are one)."""
    if resource is None:
        return UNMATCHED
    label = labels.get(resource)
    if label is None:
        label = labels[resource] = resource.canonical.rstrip("/") or "/"
    return label


async def _serve(request: web.Request) -> web.Response:
    """The metrics in Prometheus's text format, for METRICS_ALLOW_IPS; others get a 404."""
    if not _allowed(request):
        raise web.HTTPNotFound()
    if request.method not in ("GET", "HEAD"):
        raise ApiError(
            "method_not_allowed", status=405, headers={"Allow": "GET,HEAD"}, method=request.method
        )
    # With several workers this reads one small file per process: a millisecond or two.
    body = generate_latest(request.app[keys.METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def _allowed(request: web.Request) -> bool:
    # The client as FORWARDED_ALLOW_IPS resolves it, not the peer: behind a trusted proxy
    # on the same host every client's peer is loopback (README, Metrics).
    address = client_address(request)
    if address is None:
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    allowed = request.app[keys.SETTINGS].metrics_allow_ips
    return any(parsed in network for network in allowed)


def counts_login_outcomes(handler: Handler) -> Handler:
    """Count a login route's outcomes (place it right above the handler).

    On /login/access-token and /login/mfa: a user with TOTP on counts `second_factor` for
    the password, then `success`, `failure` or `throttled` for the code.
    """

    @functools.wraps(handler)
    async def counted(request: web.Request) -> web.StreamResponse:
        metrics = request.app.get(keys.METRICS)
        try:
            response = await handler(request)
        except errors.AccountError as error:
            outcome = _LOGIN_REFUSALS.get(type(error))
            if metrics is not None and outcome is not None:
                metrics.login_attempted(outcome)
            raise
        if metrics is not None:
            metrics.login_attempted(LoginOutcome.SUCCESS)
        return response

    return counted
