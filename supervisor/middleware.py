"""The one place errors become HTTP responses, as Ollama answers them.

Library code raises ``ollamapy.errors`` classes (each carries its status); routing misses
get Go's plain-text ``404 page not found`` / ``405 method not allowed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ollamapy.errors import OllamapyError, RequestCancelled
from ollamapy.supervisor.app_keys import METRICS
from ollamapy.supervisor.routes.http_util import json_response
from ollamapy.supervisor.routes.streaming import REQUEST_CLIENT_GONE, REQUEST_MODEL, REQUEST_SENT_STATUS, REQUEST_TOKENS

__all__ = ["access_middleware", "error_middleware"]

log = logging.getLogger("ollamapy.server")
access_log = logging.getLogger("ollamapy.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OllamapyError as exc:
        return json_response({"error": exc.message}, status=exc.status_code)
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405, text="405 method not allowed", content_type="text/plain")
    except web.HTTPNotFound:
        return web.Response(status=404, text="404 page not found", content_type="text/plain")
    except web.HTTPException:
        raise
    except ConnectionResetError:
        # the client went away before its answer: Ollama's 499, which no one will read
        return json_response({"error": "request canceled"}, status=RequestCancelled.status_code)
    except Exception as exc:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": str(exc) or type(exc).__name__}, status=500)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request in the metrics and write one structured log line for it.

    A request the client abandoned is marked ``cancelled=true``: with the status already
    sent when its headers went out, else 499 (the status Ollama logs for it)."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        request[REQUEST_CLIENT_GONE] = True
        status = request.get(REQUEST_SENT_STATUS, RequestCancelled.status_code)
        raise
    finally:
        cancelled = request.get(REQUEST_CLIENT_GONE, False) or status == RequestCancelled.status_code
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].requests.labels(request.method, route, str(status)).inc()
        prompt, generated = request.get(REQUEST_TOKENS, (0, 0))
        access_log.info(
            "method=%s route=%s model=%s status=%d duration_ms=%.1f prompt_tokens=%d eval_tokens=%d%s",
            request.method, route, request.get(REQUEST_MODEL, "-"), status,
            (time.monotonic() - started) * 1000, prompt, generated, " cancelled=true" if cancelled else "",
        )
