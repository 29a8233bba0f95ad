"""The one stream writer, with each API's framing, over scripted native events.

Every streamed route goes through ``Framing.respond``; these tests drive it with events a
test controls (no runner, no llama.cpp) through the real application and its middlewares,
and check what a client and an operator see: the frames, the error event in each API's
shape, the shutdown drain, the access log line and a client that leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ollamapy.compat import anthropic, openai
from ollamapy.errors import ModelNotFound, RunnerCrashed
from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.lifecycle import STREAMS
from ollamapy.supervisor.routes.compat_http import SSEStream, named_event
from ollamapy.supervisor.routes.http_util import NDJSON
from ollamapy.supervisor.routes.streaming import Framing
from ollamapy.testing.access_log import AccessLines

Native = dict[str, Any]
Script = Callable[[web.Request], AsyncIterator[Native]]

CHUNK = {"model": "tiny", "response": "hi", "done": False}
FINAL = {"model": "tiny", "response": "", "done": True, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 2}


def _openai_sse(payload: Native) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _anthropic_error(status: int, message: str) -> tuple[str, Native]:
    return "error", {"type": "error", "error": anthropic.error_body(status, message)["error"]}


FRAMINGS: dict[str, Framing[Any]] = {
    "ndjson": NDJSON,
    "openai": SSEStream(_openai_sse, openai.error_body, end=b"data: [DONE]\n\n"),
    "anthropic": SSEStream(named_event, _anthropic_error),
}


def _frames(kind: str, text: str) -> list[Any]:
    """The decoded frames of a body (``[DONE]`` kept as the string)."""
    if kind == "ndjson":
        return [json.loads(line) for line in text.splitlines()]
    frames = []
    for block in text.split("\n\n")[:-1]:
        data = block.rpartition("data: ")[2]
        frames.append(data if data == "[DONE]" else json.loads(data))
    return frames


def _error_frame(kind: str, message: str) -> Any:
    """The error event each API ends a failed stream with (its 500 shape)."""
    if kind == "ndjson":
        return {"error": message}
    if kind == "openai":
        return {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    return {"type": "error", "error": {"type": "api_error", "message": message}}


async def _client(aiohttp_client: Any, models_dir: Path, framing: Framing[Any], script: Script, convert: Callable[[Native], list[Any]] | None = None) -> TestClient:
    """The real application with one more route streaming ``script``'s events."""
    app = create_app(models_dir)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await framing.respond(request, script(request), convert)

    app.router.add_post("/test/stream", handler)
    return await aiohttp_client(app)


def _convert(kind: str) -> Callable[[Native], list[Any]] | None:
    """A conversion as the compatibility APIs do one (native events as their payloads)."""
    if kind == "anthropic":
        return lambda native: [("content_block_delta", native)]
    return None


@pytest.mark.parametrize("kind", FRAMINGS)
@pytest.mark.parametrize(
    "error",
    [RunnerCrashed("model runner has unexpectedly stopped"), KeyError("a bug"), ConnectionResetError("runner connection lost")],
    ids=["ollamapy-error", "bug", "connection-reset-from-the-events"],
)
async def test_an_error_after_the_first_event_is_one_error_event_in_the_apis_shape(aiohttp_client: Any, models_dir: Path, kind: str, error: Exception) -> None:
    async def script(request: web.Request) -> AsyncIterator[Native]:
        yield CHUNK
        raise error

    client = await _client(aiohttp_client, models_dir, FRAMINGS[kind], script, _convert(kind))
    resp = await client.post("/test/stream")
    assert resp.status == 200
    frames = _frames(kind, await resp.text())
    assert len(frames) == 2  # the event, then the error; no end marker
    # a ConnectionResetError from the events is not the client leaving: the client is told
    assert frames[-1] == _error_frame(kind, "'a bug'" if isinstance(error, KeyError) else str(error))


@pytest.mark.parametrize("kind", FRAMINGS)
async def test_a_stream_that_finishes_ends_with_the_apis_marker(aiohttp_client: Any, models_dir: Path, kind: str) -> None:
    async def script(request: web.Request) -> AsyncIterator[Native]:
        yield CHUNK
        yield FINAL

    client = await _client(aiohttp_client, models_dir, FRAMINGS[kind], script, _convert(kind))
    resp = await client.post("/test/stream")
    frames = _frames(kind, await resp.text())
    assert frames[-1] == ("[DONE]" if kind == "openai" else FINAL)
    assert resp.headers["Content-Type"] == ("application/x-ndjson" if kind == "ndjson" else "text/event-stream")


async def test_an_error_before_the_first_event_is_a_real_status(aiohttp_client: Any, models_dir: Path) -> None:
    async def script(request: web.Request) -> AsyncIterator[Native]:
        raise ModelNotFound("model 'ghost' not found")
        yield CHUNK  # unreachable: makes this a generator

    client = await _client(aiohttp_client, models_dir, NDJSON, script)
    resp = await client.post("/test/stream")
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'ghost' not found"}


@pytest.mark.parametrize("kind", FRAMINGS)
async def test_the_shutdown_drain_ends_a_stream_with_the_error_in_its_shape(aiohttp_client: Any, models_dir: Path, kind: str) -> None:
    closed = asyncio.Event()

    async def script(request: web.Request) -> AsyncIterator[Native]:
        try:
            yield CHUNK
            await asyncio.Event().wait()  # a generation that would never end
        finally:
            closed.set()

    client = await _client(aiohttp_client, models_dir, FRAMINGS[kind], script, _convert(kind))
    resp = await client.post("/test/stream")
    await resp.content.readany()  # the first event arrived: the stream is in flight
    await client.app[STREAMS].drain(0)
    frames = _frames(kind, await resp.text())
    assert frames[-1] == _error_frame(kind, "server is shutting down")
    assert closed.is_set()


async def test_the_shutdown_drain_answers_a_stream_not_yet_started_with_a_real_status(aiohttp_client: Any, models_dir: Path) -> None:
    waiting = asyncio.Event()

    async def script(request: web.Request) -> AsyncIterator[Native]:
        waiting.set()
        await asyncio.Event().wait()  # a prompt that would never finish evaluating
        yield CHUNK

    client = await _client(aiohttp_client, models_dir, NDJSON, script)
    answer = asyncio.create_task(client.post("/test/stream"))
    await waiting.wait()
    await client.app[STREAMS].drain(0)
    resp = await answer
    assert resp.status == 500
    assert await resp.json() == {"error": "server is shutting down"}


@pytest.mark.parametrize("kind", FRAMINGS)
async def test_the_access_log_takes_model_and_tokens_from_the_native_events(aiohttp_client: Any, models_dir: Path, kind: str, access_log: AccessLines) -> None:
    async def script(request: web.Request) -> AsyncIterator[Native]:
        yield CHUNK
        yield FINAL

    # a conversion that sends nothing: the counts cannot come from the converted events
    client = await _client(aiohttp_client, models_dir, FRAMINGS[kind], script, lambda native: [])
    await (await client.post("/test/stream")).read()
    line = await access_log.next_line()
    assert "route=/test/stream model=tiny status=200" in line
    assert "prompt_tokens=7 eval_tokens=2" in line and "cancelled" not in line


@pytest.mark.parametrize("kind", FRAMINGS)
async def test_a_client_that_leaves_closes_the_events_and_is_logged_with_the_sent_status(aiohttp_client: Any, models_dir: Path, kind: str, access_log: AccessLines) -> None:
    closed = asyncio.Event()

    async def script(request: web.Request) -> AsyncIterator[Native]:
        try:
            yield CHUNK
            assert request.transport is not None
            request.transport.close()  # the connection is gone, as when a client leaves
            while True:
                yield CHUNK
        finally:
            closed.set()

    client = await _client(aiohttp_client, models_dir, FRAMINGS[kind], script, _convert(kind))
    resp = await client.post("/test/stream")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientError):
        await resp.read()
    line = await access_log.next_line()
    assert closed.is_set()  # the events were closed: a runner lease would be released
    assert "route=/test/stream model=tiny status=200" in line and line.endswith(" cancelled=true")


async def test_a_client_that_leaves_before_the_headers_is_logged_499(aiohttp_client: Any, models_dir: Path, access_log: AccessLines) -> None:
    async def script(request: web.Request) -> AsyncIterator[Native]:
        assert request.transport is not None
        request.transport.close()  # gone while the first token was computed
        yield CHUNK

    client = await _client(aiohttp_client, models_dir, NDJSON, script)
    with pytest.raises(aiohttp.ClientError):
        await (await client.post("/test/stream")).read()
    line = await access_log.next_line()
    assert "route=/test/stream model=- status=499" in line and line.endswith(" cancelled=true")


async def test_a_connection_lost_while_reading_the_request_is_logged_499(aiohttp_client: Any, models_dir: Path, access_log: AccessLines) -> None:
    app = create_app(models_dir)

    async def handler(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("Connection lost")  # what reading the body of a client that left raises

    app.router.add_post("/test/upload", handler)
    client = await aiohttp_client(app)
    resp = await client.post("/test/upload")
    assert resp.status == 499  # nobody is left to read it, but it is the status logged
    line = await access_log.next_line()
    assert "route=/test/upload model=- status=499" in line and line.endswith(" cancelled=true")
