"""``/v1/*``: the OpenAI-compatible API over the native core.

Each handler decodes an OpenAI body, converts it with ``ollamapy.compat.openai``, runs the
same inference service ``/api/chat``, ``/api/generate`` and ``/api/embed`` run
(``supervisor.inference``), and converts the answer
back. Every error leaves in OpenAI's shape (``{"error": {"message", "type", …}}``), never
the native ``{"error": "…"}``: before the first byte as a real status, after it as a
``data: {"error": …}`` event, which the openai client raises as ``APIError``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ollamapy.compat.openai import (
    ChatCompletionRequest,
    ChatStream,
    CompletionRequest,
    CompletionStream,
    EmbeddingRequest,
    error_body,
    force_tool_call,
    forced_tool_names,
    from_chat_request,
    from_completion_request,
    from_embedding_request,
    new_id,
    to_chat_completion,
    to_completion,
    to_embedding_list,
    to_model,
    to_model_list,
)
from ollamapy.compat.openai_responses import ResponsesRequest, ResponsesStream, from_responses_request, new_response_ids, to_response
from ollamapy.compat.openai_responses import forced_tool_names as forced_response_tools
from ollamapy.errors import InvalidRequest
from ollamapy.supervisor.app_keys import INFERENCE, STORE
from ollamapy.supervisor.catalog import list_models
from ollamapy.supervisor.inference import ChunkStream
from ollamapy.supervisor.routes.compat_http import SSEStream, answer_errors_as, named_event
from ollamapy.supervisor.routes.http_util import json_response, native_answer, read_request

__all__ = ["setup_openai_routes"]

RequestT = TypeVar("RequestT", bound=BaseModel)


async def _decode(request: web.Request, model: type[RequestT]) -> RequestT:
    """The JSON body as ``model``; an empty body is Go's ``EOF``."""
    return await read_request(request, model, empty_message="EOF")


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


_openai_errors = answer_errors_as(error_body)
_SSE = SSEStream(_sse, error_body, end=b"data: [DONE]\n\n")


@_openai_errors
async def chat_completions_handler(request: web.Request) -> web.StreamResponse:
    req = await _decode(request, ChatCompletionRequest)
    if not req.messages:
        raise InvalidRequest("[] is too short - 'messages'")
    forced = forced_tool_names(req)
    result = await request.app[INFERENCE].start_chat(from_chat_request(req))
    completion_id = new_id("chatcmpl")
    if req.stream and isinstance(result, ChunkStream):
        stream = ChatStream(completion_id, int(time.time()), include_usage=req.include_usage, forced_tools=forced)
        return await _SSE.respond(request, result.events, stream.feed)
    return json_response(to_chat_completion(completion_id, force_tool_call(await native_answer(request, result), forced)))


@_openai_errors
async def responses_handler(request: web.Request) -> web.StreamResponse:
    req = await _decode(request, ResponsesRequest)
    forced = forced_response_tools(req)
    result = await request.app[INFERENCE].start_chat(from_responses_request(req))
    response_id, item_id = new_response_ids()
    if req.stream and isinstance(result, ChunkStream):
        stream = ResponsesStream(response_id, item_id, req, forced_tools=forced)
        return await SSEStream(named_event, stream.error_event).respond(request, result.events, stream.feed)
    return json_response(to_response(response_id, item_id, force_tool_call(await native_answer(request, result), forced), req))


@_openai_errors
async def completions_handler(request: web.Request) -> web.StreamResponse:
    req = await _decode(request, CompletionRequest)
    result = await request.app[INFERENCE].start_generate(from_completion_request(req))
    completion_id = new_id("cmpl")
    if req.stream and isinstance(result, ChunkStream):
        stream = CompletionStream(completion_id, int(time.time()), include_usage=req.include_usage)
        return await _SSE.respond(request, result.events, stream.feed)
    return json_response(to_completion(completion_id, await native_answer(request, result)))


@_openai_errors
async def embeddings_handler(request: web.Request) -> web.StreamResponse:
    req = await _decode(request, EmbeddingRequest)
    native = await request.app[INFERENCE].run_embed(from_embedding_request(req))
    return json_response(to_embedding_list(req.model, native, req.encoding_format))


@_openai_errors
async def list_models_handler(request: web.Request) -> web.StreamResponse:
    return json_response(to_model_list(await asyncio.to_thread(list_models, request.app[STORE])))


@_openai_errors
async def retrieve_model_handler(request: web.Request) -> web.StreamResponse:
    name = request.match_info["model"]
    model = await request.app[INFERENCE].find_model(name)
    return json_response(to_model(name, model.modified_at))


def setup_openai_routes(app: web.Application) -> None:
    """Register ``/v1/*``; a model id may contain ``/`` (``library/tiny:latest``)."""
    app.router.add_post("/v1/chat/completions", chat_completions_handler)
    app.router.add_post("/v1/completions", completions_handler)
    app.router.add_post("/v1/responses", responses_handler)
    app.router.add_post("/v1/embeddings", embeddings_handler)
    app.router.add_get("/v1/models", list_models_handler)
    app.router.add_get("/v1/models/{model:.+}", retrieve_model_handler)
