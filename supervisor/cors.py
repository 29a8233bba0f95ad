"""Browser safety: CORS and the DNS-rebinding guard, as Ollama configures them.

* CORS (gin-contrib/cors as Ollama sets it up): a request without ``Origin``, or whose
  origin is the server itself, passes untouched; an origin not in the allowed list
  (``OLLAMA_ORIGINS`` plus the built-ins, ``*`` as a wildcard, a lone ``*`` allowing all)
  is refused with an empty 403; an allowed ``OPTIONS`` is a preflight answered 204 with
  the allowed methods and headers (including the ``x-stainless-*`` family the openai
  client sends); any other allowed request gets ``Access-Control-Allow-Origin``.
* The DNS-rebinding guard is active only when the server listens on loopback: then the
  ``Host`` header must name a loopback, private, unspecified or local-interface address,
  ``localhost``, this machine's hostname, or a ``.localhost``/``.local``/``.internal``
  name; anything else is an empty 403. A web page on an attacker's domain that rebinds
  to 127.0.0.1 still sends its own domain as ``Host``, and is refused.

The CORS headers of a normal request are attached in ``on_response_prepare`` (see
:func:`setup_browser_safety`), so streamed responses carry them too.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

import psutil
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ollamapy import envconfig

__all__ = [
    "ALLOWED_HEADERS",
    "allowed_host",
    "cors_middleware",
    "host_guard_middleware",
    "is_loopback_listener",
    "setup_browser_safety",
]

ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "User-Agent",
    "Accept",
    "X-Requested-With",
    "OpenAI-Beta",
    "x-stainless-arch",
    "x-stainless-async",
    "x-stainless-custom-poll-interval",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-poll-helper",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
_ALLOWED_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
_MAX_AGE = str(12 * 3600)
_CORS_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("cors_headers", dict)
# Go's netip.Addr.IsPrivate: RFC 1918 and RFC 4193 only (not link-local, not CGNAT).
_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def _canonical_header(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-stainless-os`` → ``X-Stainless-Os``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _origin_pattern(origins: Sequence[str]) -> tuple[bool, re.Pattern[str]]:
    """(allow every origin, matcher) for configured origins; ``*`` matches any run of
    characters, comparison ignores case (gin-contrib lower-cases the configured list)."""
    cleaned = [o.strip().lower() for o in origins if o.strip()]
    alternatives = "|".join(".*".join(re.escape(piece) for piece in o.split("*")) for o in cleaned)
    return "*" in cleaned, re.compile(f"(?:{alternatives})" if alternatives else r"(?!)")


def cors_middleware(origins: Sequence[str] | None = None) -> Middleware:
    """The CORS middleware for ``origins`` (default ``envconfig.origins()``, which already
    holds Ollama's built-in list)."""
    allow_all, pattern = _origin_pattern(envconfig.origins() if origins is None else origins)
    allow_headers = ",".join(dict.fromkeys(_canonical_header(h) for h in ALLOWED_HEADERS))

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        host = request.headers.get("Host", "")
        if not origin or origin in (f"http://{host}", f"https://{host}"):
            return await handler(request)
        if not allow_all and not pattern.fullmatch(origin.lower()):
            return web.Response(status=403)
        allow_origin = "*" if allow_all else origin
        if request.method == "OPTIONS":
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": allow_origin,
                    "Access-Control-Allow-Methods": _ALLOWED_METHODS,
                    "Access-Control-Allow-Headers": allow_headers,
                    "Access-Control-Max-Age": _MAX_AGE,
                    "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                },
            )
        request[_CORS_HEADERS] = {"Access-Control-Allow-Origin": allow_origin, "Vary": "Origin"}
        return await handler(request)

    return cors


async def _apply_cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare``: add the CORS headers the middleware chose, just before
    any response (plain, streamed or an error) starts."""
    for name, value in request.get(_CORS_HEADERS, {}).items():
        response.headers.setdefault(name, value)


def _host_only(host_header: str) -> str:
    """The host part of a ``Host`` header (Go's ``net.SplitHostPort`` or the whole value)."""
    try:
        ipaddress.ip_address(host_header)
        return host_header  # a bare IPv6 address
    except ValueError:
        pass
    if host_header.startswith("[") and "]" in host_header:
        return host_header[1 : host_header.index("]")]
    name, sep, _port = host_header.rpartition(":")
    return name if sep and ":" not in name else host_header


def _is_local_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            try:
                if ipaddress.ip_address(address.address.split("%", 1)[0]) == ip:
                    return True
            except ValueError:
                continue
    return False


def allowed_host(host_header: str) -> bool:
    """Whether a ``Host`` header may reach a loopback-only server."""
    host = _host_only(host_header)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback or ip.is_unspecified or any(ip in n for n in _PRIVATE_NETWORKS) or _is_local_ip(ip)
    host = host.lower()
    return host in ("", "localhost", socket.gethostname().lower()) or host.endswith(_LOCAL_SUFFIXES)


def is_loopback_listener(listen_host: str | None) -> bool:
    """Whether binding ``listen_host`` (``None``/``""`` = every interface) listens on
    loopback only; a hostname counts by what it resolves to."""
    if not listen_host:
        return False
    try:
        return ipaddress.ip_address(listen_host).is_loopback
    except ValueError:
        pass
    try:
        resolved = socket.getaddrinfo(listen_host, None)
    except OSError:
        return False
    return bool(resolved) and ipaddress.ip_address(str(resolved[0][4][0]).split("%", 1)[0]).is_loopback


def host_guard_middleware(listen_host: str | None) -> Middleware:
    """The DNS-rebinding guard for a server bound to ``listen_host`` (as
    ``envconfig.host().bind_host``); it lets everything through unless that is loopback."""
    active = is_loopback_listener(listen_host)

    @web.middleware
    async def host_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not active:
            return await handler(request)
        host = request.headers.get("Host", "")
        if not allowed_host(host):
            return web.Response(status=403)
        try:
            ipaddress.ip_address(_host_only(host))
        except ValueError:
            if request.method == "OPTIONS":  # a name (not an address): Ollama ends OPTIONS here
                return web.Response(status=204)
        return await handler(request)

    return host_guard


def setup_browser_safety(app: web.Application, *, listen_host: str | None, origins: Sequence[str] | None = None) -> None:
    """Install CORS then the host guard (CORS outermost, as Ollama orders them), and the
    hook that puts CORS headers on every response. Call before the app starts."""
    app.middlewares.append(cors_middleware(origins))
    app.middlewares.append(host_guard_middleware(listen_host))
    app.on_response_prepare.append(_apply_cors_headers)
