"""HTTP plumbing of the compatibility APIs (OpenAI's ``/v1/*``, Anthropic's ``/v1/messages``):
errors in the API's own shape, and answers streamed as server-sent events.

Both are written by the one stream writer every route shares, with the native streaming
rule: a failure before the first byte is a real HTTP status in the API's shape; after it,
one error event in the API's shape, and the stream ends.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from ollamapy.errors import OllamapyError
from ollamapy.supervisor.routes.http_util import json_response
from ollamapy.supervisor.routes.streaming import Framing

__all__ = ["ErrorBody", "NamedEvent", "SSEStream", "answer_errors_as", "named_event"]

log = logging.getLogger("ollamapy.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorBody = Callable[[int, str], dict[str, Any]]
"""The API's error object for a status and a message."""
EventT = TypeVar("EventT")
NamedEvent = tuple[str, dict[str, Any]]
"""An event with a name (``event:`` line) and a JSON object (``data:`` line)."""


def named_event(event: NamedEvent) -> bytes:
    """``event: <name>`` and ``data: <json>``: how Anthropic and OpenAI's Responses API frame events."""
    name, data = event
    return f"event: {name}\ndata: ".encode() + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def answer_errors_as(error_body: ErrorBody) -> Callable[[Handler], Handler]:
    """Decorate a handler so every error it raises is answered as ``error_body`` with its status."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except OllamapyError as exc:
                return json_response(error_body(exc.status_code, exc.message), status=exc.status_code)
            except (web.HTTPException, ConnectionResetError):
                raise
            except Exception as exc:
                log.exception("unhandled error on %s %s", request.method, request.path)
                return json_response(error_body(500, str(exc) or type(exc).__name__), status=500)

        return wrapped

    return decorate


class SSEStream(Framing[EventT]):
    """Server-sent events as one API writes them: ``encode`` one event, the event an error
    becomes, and the bytes that end a stream (OpenAI's ``data: [DONE]``; none for Anthropic).
    ``respond`` is the shared stream writer (``supervisor.routes.streaming``)."""

    def __init__(self, encode: Callable[[EventT], bytes], error_event: Callable[[int, str], EventT], end: bytes = b"") -> None:
        super().__init__(encode, error_event, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, end=end)
