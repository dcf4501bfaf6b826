"""Which methods a fixed path serves, when a path template matches it too.

OpenAPI matches a fixed path (`/users/signup`) before a template (`/users/{user}`), but
aiohttp's router tries every resource that matches: its 405 `Allow` would name the
template's methods too, and PATCH /users/signup would reach the template's handler.
"""

from __future__ import annotations

from aiohttp import web


def fixed_path_methods(request: web.Request) -> set[str]:
    """The methods of the route whose path is exactly this request's; empty if none."""
    return {
        route.method
        for resource in request.app.router.resources()
        if isinstance(resource, web.PlainResource) and resource.canonical == request.path
        for route in resource
    }
