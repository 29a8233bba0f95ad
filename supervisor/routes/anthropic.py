"""``POST /v1/messages``: Anthropic's Messages API over the native chat core (and
``/v1/messages/count_tokens``, Ollama's estimate of a prompt's size).

The handler decodes a Messages body, converts it with ``ollamapy.compat.anthropic``, runs
the same core ``/api/chat`` runs (thinking relaxed: asking a model that cannot think to
think is not an error here, as in Ollama), and converts the answer back: a ``message``
object, or its server-sent events. Every error leaves in Anthropic's shape
(``{"type": "error", "error": {"type", "message"}}``).
"""

from __future__ import annotations

from aiohttp import web

from ollamapy.compat.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    MessageStream,
    error_body,
    estimate_input_tokens,
    forced_tool_names,
    from_messages_request,
    new_message_id,
    to_message,
)
from ollamapy.compat.openai import force_tool_call
from ollamapy.errors import InvalidRequest
from ollamapy.supervisor.app_keys import INFERENCE
from ollamapy.supervisor.inference import ChunkStream
from ollamapy.supervisor.routes.compat_http import NamedEvent, SSEStream, answer_errors_as, named_event
from ollamapy.supervisor.routes.http_util import json_response, native_answer, read_request

__all__ = ["setup_anthropic_routes"]


def _error_event(status: int, message: str) -> NamedEvent:
    body = error_body(status, message)
    return "error", {"type": "error", "error": body["error"]}


_SSE: SSEStream[NamedEvent] = SSEStream(named_event, _error_event)


@answer_errors_as(error_body)
async def messages_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, MessagesRequest, empty_message="EOF")
    forced = forced_tool_names(req)
    result = await request.app[INFERENCE].start_chat(from_messages_request(req), relax_thinking=True)
    message_id = new_message_id()
    if req.stream and isinstance(result, ChunkStream):
        stream = MessageStream(message_id, req.model, estimated_input_tokens=estimate_input_tokens(req), forced_tools=forced)
        return await _SSE.respond(request, result.events, stream.feed)
    return json_response(to_message(message_id, force_tool_call(await native_answer(request, result), forced)))


@answer_errors_as(error_body)
async def count_tokens_handler(request: web.Request) -> web.StreamResponse:
    """Ollama's estimate (characters / 4), not a tokenization: a count must not load a model."""
    req = await read_request(request, CountTokensRequest, empty_message="EOF")
    if not req.model:
        raise InvalidRequest("model is required")
    if not req.messages:
        raise InvalidRequest("messages is required")
    await request.app[INFERENCE].find_model(req.model)  # 404 for an unknown model
    return json_response({"input_tokens": estimate_input_tokens(req)})


def setup_anthropic_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages_handler)
    app.router.add_post("/v1/messages/count_tokens", count_tokens_handler)
