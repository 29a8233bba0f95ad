"""The one place errors become HTTP responses, as Ollama answers them.

Library code raises ``ollamapy.errors`` classes (each carries its status); routing misses
get Go's plain-text ``404 page not found`` / ``405 method not allowed``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ollamapy.errors import OllamapyError
from ollamapy.supervisor.http_util import json_response

__all__ = ["error_middleware"]

log = logging.getLogger("ollamapy.server")

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
    except Exception as exc:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": str(exc) or type(exc).__name__}, status=500)
