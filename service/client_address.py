"""The client's address: the peer's, or what the trusted proxies say (FORWARDED_ALLOW_IPS).

One function decides it for the login throttle, the session row and the request's log
line. A forwarding header is read only when the peer is a trusted proxy, and then from the
right: each trusted proxy appends the address it received from, so the rightmost address
that is not a trusted proxy is the client. Anything to its left was sent by the client and
is never believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from service import keys
from service.accounts.context import Caller
from service.settings import ForwardedHeader, IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def caller(request: web.Request) -> Caller:
    """Who is asking, as the accounts layer needs it: address and User-Agent."""
    return Caller(
        address=client_address(request),
        user_agent=request.headers.get("User-Agent", ""),
    )


def client_address(request: web.Request) -> str | None:
    """The request's client address (None for a peer without one, a Unix socket say)."""
    if keys.CLIENT_ADDRESS in request:
        return request[keys.CLIENT_ADDRESS]
    settings = request.app[keys.SETTINGS]
    hops: list[str] = []
    if settings.forwarded_allow_ips:
        hops = _hops(request, settings.forwarded_header)
    address = decide(request.remote, hops, settings.forwarded_allow_ips)
    request[keys.CLIENT_ADDRESS] = address
    return address


def decide(peer: str | None, hops: Sequence[str], trusted: Sequence[IPNetwork]) -> str | None:
    """The rightmost address, from the peer back through `hops`, that is not `trusted`.

    A hop that is no address (`unknown`, garbage) ends the walk at the proxy that sent it.
    When every hop is trusted, the leftmost is the client.
    """
    current = _address(peer or "")
    if current is None:
        return peer or None
    for hop in reversed(hops):
        if not any(current in network for network in trusted):
            break
        previous = _address(hop)
        if previous is None:
            break
        current = previous
    return str(current)


def _hops(request: web.Request, header: ForwardedHeader) -> list[str]:
    """The addresses in the forwarding header, left to right, over all its lines."""
    if header is ForwardedHeader.FORWARDED:
        return [element.get("for", "") for element in request.forwarded]
    lines = request.headers.getall("X-Forwarded-For", [])
    return [hop.strip() for line in lines for hop in line.split(",")]


def _address(text: str) -> IPAddress | None:
    """An address as a proxy writes it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[::1]:80`."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped  # ::ffff:1.2.3.4 is the IPv4 client 1.2.3.4
    return parsed
