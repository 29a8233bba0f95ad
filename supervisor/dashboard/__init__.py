"""The live dashboard at ``/dashboard``: what the server holds and how busy it is.

One jinja2 page, a stylesheet and a plain script served from this package (no build step,
nothing fetched from elsewhere: the page works offline and its Content-Security-Policy
allows only this origin). The script polls ``/api/ps`` (loaded models, placement, size,
context, expiry) and ``/dashboard/stats`` (queue, slots, KV fill, tokens/s and TTFT), the
latter built from the same numbers as ``/metrics``. The routes sit behind the application's
CORS and DNS-rebinding guard like every API route.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from ollamapy import envconfig
from ollamapy.supervisor.app_keys import METRICS, SCHEDULER
from ollamapy.supervisor.routes.http_util import json_response

__all__ = ["POLL_SECONDS", "dashboard_stats", "setup_dashboard_routes"]

POLL_SECONDS = 2.0
"""How often the page asks for fresh numbers."""

_PACKAGE = resources.files(__name__)
_STATIC_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# Only this origin's script and stylesheet run; the inline SVG icon is a data: URL.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_templates = jinja2.Environment(
    loader=jinja2.FunctionLoader(lambda name: _PACKAGE.joinpath("templates", name).read_text(encoding="utf-8")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


async def dashboard_stats(app: web.Application) -> dict[str, Any]:
    """The dashboard's numbers: the ``/metrics`` gauges, per runner, and the recent rates."""
    metrics = app[METRICS]
    await metrics.refresh()
    usage = metrics.usage()
    return {
        "time": time.time(),
        "queued": app[SCHEDULER].waiting,
        "running": sum(u.running for u in usage),
        "kv_cache_utilization": metrics.kv_utilization(usage),
        "runners": [u.to_json() for u in usage],
        "recent": metrics.recent(),
    }


async def dashboard_handler(request: web.Request) -> web.Response:
    page = _templates.get_template("dashboard.html").render(version=envconfig.api_version(), poll_ms=int(POLL_SECONDS * 1000))
    return web.Response(text=page, content_type="text/html", headers=_SECURITY_HEADERS)


async def stats_handler(request: web.Request) -> web.Response:
    response = json_response(await dashboard_stats(request.app))
    response.headers["Cache-Control"] = "no-store"
    return response


async def static_handler(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC_TYPES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    body = _PACKAGE.joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_SECURITY_HEADERS)


def setup_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard_handler)
    app.router.add_get("/dashboard/stats", stats_handler)
    app.router.add_get("/dashboard/static/{name}", static_handler)
