"""The one writer of every streamed answer: Ollama's NDJSON and the compatibility APIs' SSE.

Only the framing differs between APIs (the headers, how one event is encoded, the event an
error becomes, the bytes that end a stream); everything else is shared so no route drifts:

* Ollama's streaming rule: the first native event is awaited before anything is sent, so
  a failure before it is a real HTTP status; an error after the first byte becomes one
  error event in the API's shape, and the stream ends.
* Graceful shutdown: every stream is registered with the application's ``StreamTracker``.
  On SIGTERM it gets the grace period to finish; after it, the stream ends with a
  ``server is shutting down`` error event instead of a cut connection.
* The access log: the model and the token counts are read from the native events, before
  any conversion to another API's events.
* A client that goes away: the native event iterator is closed at once, which releases
  the runner lease and stops the generation; the access log keeps the status already sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Generic, TypeVar

from aiohttp import web

from ollamapy.errors import OllamapyError, RequestCancelled
from ollamapy.supervisor.lifecycle import SHUTDOWN_ERROR, STREAMS, StreamTracker

__all__ = ["REQUEST_CLIENT_GONE", "REQUEST_MODEL", "REQUEST_SENT_STATUS", "REQUEST_TOKENS", "Framing", "close_events", "record_usage"]

log = logging.getLogger("ollamapy.server")

REQUEST_MODEL: web.RequestKey[str] = web.RequestKey("model", str)
"""Where a request records the model it served (for the access log)."""
REQUEST_TOKENS: web.RequestKey[tuple[int, int]] = web.RequestKey("tokens", tuple)
"""(prompt tokens, generated tokens) of the request (for the access log)."""
REQUEST_SENT_STATUS: web.RequestKey[int] = web.RequestKey("sent_status", int)
"""The status of a streamed response whose headers went out: a stream cancelled after them
is logged with it, not with the status of the exception its cancellation raised."""
REQUEST_CLIENT_GONE: web.RequestKey[bool] = web.RequestKey("client_gone", bool)
"""Set when the client left before its answer was complete (for the access log)."""

EventT = TypeVar("EventT")
Native = dict[str, Any]


def record_usage(request: web.Request, event: Native) -> None:
    """Remember the model and token counts of a native event for the access log."""
    if "model" in event:
        request[REQUEST_MODEL] = event["model"]
    if "eval_count" in event:
        request[REQUEST_TOKENS] = (event.get("prompt_eval_count", 0), event["eval_count"])


async def close_events(iterator: AsyncIterator[Any]) -> None:
    """Close a stream of events early or late; for a generator this runs its cleanup
    (the runner lease, the runner connection) now rather than at garbage collection."""
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        await closer()


class _ClientGone(Exception):
    """A write to the client failed: it went away. Kept apart from a ``ConnectionResetError``
    the events themselves raise (a lost runner connection), which must still end the
    stream with an error event."""


def _unchanged(native: Native) -> list[Any]:
    return [native]


class Framing(Generic[EventT]):
    """How one API frames a stream: its ``headers``, ``encode`` for one event, the event an
    error becomes (``error_event(status, message)``) and the bytes that end a stream that
    finished normally (OpenAI's ``data: [DONE]``; nothing for NDJSON or Anthropic)."""

    def __init__(self, encode: Callable[[EventT], bytes], error_event: Callable[[int, str], EventT], *, headers: Mapping[str, str], end: bytes = b"") -> None:
        self.encode = encode
        self.error_event = error_event
        self.headers = dict(headers)
        self.end = end

    async def respond(self, request: web.Request, events: AsyncIterator[Native], convert: Callable[[Native], list[EventT]] | None = None) -> web.StreamResponse:
        """Stream the native ``events``, each turned into this API's events by ``convert``
        (by default sent as they are)."""
        iterator = aiter(events)
        tracker = request.app.get(STREAMS) or StreamTracker()
        response = web.StreamResponse(headers=self.headers)
        error: OllamapyError | None = None
        try:
            with tracker.track():
                first = await anext(iterator, None)
                await self._prepare(request, response)
                if first is not None:
                    await self._send(request, response, first, convert or _unchanged)
                async for native in iterator:
                    await self._send(request, response, native, convert or _unchanged)
                if self.end:
                    await self._write(response, self.end)
        except asyncio.CancelledError:
            if not tracker.draining:
                raise  # the server is stopping without a grace period, or the client went away
            # the shutdown grace period ran out: end the stream with a reason
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            error = OllamapyError(SHUTDOWN_ERROR)
        except _ClientGone:
            # the client went away after the headers (before them, _prepare raised 499)
            request[REQUEST_CLIENT_GONE] = True
            return response
        except OllamapyError as exc:
            error = exc
        except Exception as exc:  # a bug must still end the stream with an error event
            log.exception("error while streaming %s", request.path)
            error = OllamapyError(str(exc) or type(exc).__name__)
        finally:
            await close_events(iterator)
        try:
            if error is not None:
                if REQUEST_SENT_STATUS not in request:
                    raise error  # nothing sent yet: a real HTTP status
                await response.write(self.encode(self.error_event(error.status_code, error.message)))
            await response.write_eof()
        except ConnectionResetError:
            request[REQUEST_CLIENT_GONE] = True
        return response

    @staticmethod
    async def _prepare(request: web.Request, response: web.StreamResponse) -> None:
        """Send the headers; a client already gone is Ollama's 499 ``request canceled``."""
        try:
            await response.prepare(request)
        except ConnectionResetError:
            raise RequestCancelled("request canceled") from None
        request[REQUEST_SENT_STATUS] = response.status

    async def _send(self, request: web.Request, response: web.StreamResponse, native: Native, convert: Callable[[Native], list[EventT]]) -> None:
        record_usage(request, native)
        for event in convert(native):
            await self._write(response, self.encode(event))

    @staticmethod
    async def _write(response: web.StreamResponse, data: bytes) -> None:
        try:
            await response.write(data)
        except ConnectionResetError:
            raise _ClientGone from None
