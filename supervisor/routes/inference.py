"""``/api/generate`` and ``/api/chat``: decode, run the inference service, answer as NDJSON.

The service (``supervisor.inference``) validates, schedules, renders and parses; a stream
of chunks is sent as NDJSON lines, or with ``stream: false`` folded into one object.
"""

from __future__ import annotations

from aiohttp import web

from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.supervisor.app_keys import INFERENCE
from ollamapy.supervisor.inference import NativeResult, SingleAnswer
from ollamapy.supervisor.routes.http_util import json_response, read_request, respond_stream

__all__ = ["setup_inference_routes"]


async def _respond(request: web.Request, result: NativeResult, *, stream: bool) -> web.StreamResponse:
    if isinstance(result, SingleAnswer):
        return json_response(result.body)
    return await respond_stream(request, result.events, stream=stream, collect=result.collect)


async def generate_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, GenerateRequest)
    return await _respond(request, await request.app[INFERENCE].start_generate(req), stream=req.streaming)


async def chat_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, ChatRequest)
    return await _respond(request, await request.app[INFERENCE].start_chat(req), stream=req.streaming)


def setup_inference_routes(app: web.Application) -> None:
    app.router.add_post("/api/generate", generate_handler)
    app.router.add_post("/api/chat", chat_handler)
