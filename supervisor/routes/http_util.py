"""Request decoding and Ollama-style streaming responses, shared by every handler.

Ollama's streaming rule: an error before the first byte is a real HTTP status with a JSON
body; after the stream has started, it is one more NDJSON line ``{"error": "..."}`` and the
stream ends. ``stream: false`` collects the stream into one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ollamapy.errors import InvalidRequest, OllamapyError
from ollamapy.supervisor.lifecycle import SHUTDOWN_ERROR, StreamTracker

__all__ = ["REQUEST_MODEL", "REQUEST_TOKENS", "STREAMS", "close_events", "json_response", "read_request", "respond_stream", "rfc3339", "rfc3339_now"]

log = logging.getLogger("ollamapy.server")

REQUEST_MODEL: web.RequestKey[str] = web.RequestKey("model", str)
"""Where the stream records the model it served (for the access log)."""
REQUEST_TOKENS: web.RequestKey[tuple[int, int]] = web.RequestKey("tokens", tuple)
"""(prompt tokens, generated tokens) of the request (for the access log)."""

STREAMS: web.AppKey[StreamTracker] = web.AppKey("streams", StreamTracker)
"""The application's in-flight streams, drained at shutdown."""

RequestT = TypeVar("RequestT", bound=BaseModel)


async def read_request(request: web.Request, model: type[RequestT], *, empty_message: str = "missing request body") -> RequestT:
    """Decode the JSON body into ``model`` with Ollama's messages for empty and bad bodies.

    The native API says ``missing request body`` for an empty body; the OpenAI routes pass
    Go's ``EOF``, which is what Ollama's middleware answers there.
    """
    raw = await request.read()
    if not raw.strip():
        raise InvalidRequest(empty_message)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid character in JSON body: {exc.msg} at offset {exc.pos}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"json: cannot unmarshal {type(data).__name__} into Go value of type object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"invalid value for field {field!r}: {first['msg']}") from None


def json_response(body: Any, status: int = 200) -> web.Response:
    """A compact JSON response as Go's encoder writes it (``application/json; charset=utf-8``)."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8")


def _line(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _note(request: web.Request, event: dict[str, Any]) -> None:
    """Remember the model and token counts of a finished generation for the access log."""
    if "model" in event:
        request[REQUEST_MODEL] = event["model"]
    if "eval_count" in event:
        request[REQUEST_TOKENS] = (event.get("prompt_eval_count", 0), event["eval_count"])


async def respond_stream(
    request: web.Request,
    events: AsyncIterator[dict[str, Any]],
    *,
    stream: bool,
    collect: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
) -> web.StreamResponse:
    """Send ``events`` as NDJSON, or (``stream=False``) as one object built by ``collect``.

    ``collect`` defaults to "the last event", which is what create/pull/push answer. A
    stream cut short by server shutdown ends with an error line, not silence.
    """
    if not stream:
        seen = [event async for event in events]
        body = collect(seen) if collect else (seen[-1] if seen else {})
        _note(request, body)
        return json_response(body)

    iterator = aiter(events)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        return json_response({})
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    await response.write(_line(first))
    tracker = request.app.get(STREAMS) or StreamTracker()
    last = first
    try:
        with tracker.track():
            async for event in iterator:
                await response.write(_line(event))
                last = event
        _note(request, last)
    except OllamapyError as exc:
        await response.write(_line({"error": exc.message}))
    except asyncio.CancelledError:
        if not tracker.draining:
            raise  # the client went away
        # the shutdown grace period ran out: end the stream with a reason
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("client connection closed during shutdown") from None
        await response.write(_line({"error": SHUTDOWN_ERROR}))
    except ConnectionResetError:
        raise
    except Exception as exc:  # a bug mid-stream must still end the stream with an error line
        log.exception("error while streaming %s", request.path)
        await response.write(_line({"error": str(exc) or type(exc).__name__}))
    finally:
        await close_events(iterator)
    await response.write_eof()
    return response


async def close_events(iterator: AsyncIterator[Any]) -> None:
    """Close a stream of events early or late; for a generator this runs its cleanup
    (the runner lease, the runner connection) now rather than at garbage collection."""
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        await closer()


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with nanosecond-style fraction, as Go marshals ``time.Time``."""
    moment = moment.astimezone(UTC)
    frac = f"{moment.microsecond:06d}".rstrip("0")
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def rfc3339_now() -> str:
    return rfc3339(datetime.now(UTC))
