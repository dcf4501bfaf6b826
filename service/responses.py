"""JSON responses, written the same way by every route."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial

from aiohttp import web

_dumps = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


def json_response(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`data` as an application/json response."""
    return web.Response(
        text=_dumps(data), status=status, headers=headers, content_type="application/json"
    )
