"""HTTP plumbing of the compatibility APIs (OpenAI's ``/v1/*``, Anthropic's ``/v1/messages``):
errors in the API's own shape, and answers streamed as server-sent events.

Both follow the native streaming rule: the first native event is awaited before anything
is sent, so a failure to load the model is still a real HTTP status; an error after the
first byte becomes one error event in the API's shape, and the stream ends.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from aiohttp import web

from ollamapy.errors import OllamapyError
from ollamapy.supervisor.routes.http_util import close_events, json_response

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


class SSEStream(Generic[EventT]):
    """How one API writes its events: ``encode`` one event, the event an error becomes,
    and the bytes that end a stream (OpenAI's ``data: [DONE]``; none for Anthropic)."""

    def __init__(self, encode: Callable[[EventT], bytes], error_event: Callable[[int, str], EventT], end: bytes = b"") -> None:
        self.encode = encode
        self.error_event = error_event
        self.end = end

    async def respond(self, request: web.Request, events: AsyncIterator[dict[str, Any]], convert: Callable[[dict[str, Any]], list[EventT]]) -> web.StreamResponse:
        """Stream the native ``events``, each converted to this API's events."""
        iterator = aiter(events)
        try:
            first = await anext(iterator, None)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await response.prepare(request)
            try:
                if first is not None:
                    for event in convert(first):
                        await response.write(self.encode(event))
                async for native in iterator:
                    for event in convert(native):
                        await response.write(self.encode(event))
                if self.end:
                    await response.write(self.end)
            except OllamapyError as exc:
                await response.write(self.encode(self.error_event(exc.status_code, exc.message)))
            except ConnectionResetError:
                raise
            except Exception as exc:  # a bug mid-stream must still end the stream with an error event
                log.exception("error while streaming %s", request.path)
                await response.write(self.encode(self.error_event(500, str(exc) or type(exc).__name__)))
        finally:
            await close_events(iterator)
        await response.write_eof()
        return response
