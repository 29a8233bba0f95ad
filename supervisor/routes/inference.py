"""``/api/generate`` and ``/api/chat``: validate, schedule, render, stream (spec §1.5, §3).

Each handler checks everything a user can get wrong before anything is loaded (so those
errors are plain HTTP errors), then streams Ollama's NDJSON chunks from the runner. The
prompt itself is rendered by ``supervisor.prompting``; output parsing (thinking, tool
calls) by ``ollamapy.prompt.thinking`` and ``ollamapy.prompt.tool_parser``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest
from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.errors import InvalidRequest
from ollamapy.golang.durations import parse_keep_alive
from ollamapy.store.model import Model
from ollamapy.supervisor.app_keys import METRICS, SCHEDULER, STORE
from ollamapy.supervisor.prompting import OutputParser, RenderedPrompt, render_chat, render_generate
from ollamapy.supervisor.routes.http_util import json_response, read_request, respond_stream, rfc3339_now
from ollamapy.supervisor.routes.models import find_model
from ollamapy.supervisor.scheduler import LoadedRunner
from ollamapy.supervisor.serving import PreparedRequest, prepare_load

__all__ = ["NativeResult", "parse_format", "resolve_think", "setup_inference_routes", "start_chat", "start_generate"]

_THINK_LEVELS = ("high", "medium", "low", "max")


def parse_format(value: Any) -> str | dict[str, Any] | None:
    """``format``: ``"json"``, a JSON-schema object, or nothing."""
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise InvalidRequest(f'invalid format: {json.dumps(value)}; expected "json" or a valid JSON Schema object')


def resolve_think(value: Any, capabilities: list[str], model_name: str, *, relaxed: bool = False) -> tuple[bool | None, str | None]:
    """``think`` as (enabled, level): absent turns thinking on for models that have it.

    ``relaxed`` (the Anthropic route, whose clients always ask for thinking) treats a
    request to think on a model that cannot as no request, instead of an error."""
    if value is None:
        return (True if "thinking" in capabilities else None), None
    if isinstance(value, bool):
        enabled, level = value, None
    elif isinstance(value, str) and value in _THINK_LEVELS:
        enabled, level = True, value
    elif value in ("true", "false"):
        enabled, level = value == "true", ("medium" if value == "true" else None)
    else:
        raise InvalidRequest(f"invalid think value: {json.dumps(value)} (must be \"high\", \"medium\", \"low\", \"max\", true, or false)")
    if enabled and "thinking" not in capabilities:
        if relaxed:
            return None, None
        raise InvalidRequest(f'"{model_name}" does not support thinking')
    return enabled, level


@dataclass
class NativeResult:
    """A started native request: one answer (load, unload, debug render) or a chunk stream.

    ``collect`` folds a whole stream into the ``stream: false`` answer. The OpenAI
    adapter consumes the same results and converts them.
    """

    single: dict[str, Any] | None = None
    events: AsyncIterator[dict[str, Any]] | None = None
    collect: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None


async def _respond(request: web.Request, result: NativeResult, *, stream: bool) -> web.StreamResponse:
    if result.single is not None:
        return json_response(result.single)
    assert result.events is not None
    return await respond_stream(request, result.events, stream=stream, collect=result.collect)


def _check_top_logprobs(value: int) -> None:
    if not 0 <= value <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20")


def _metrics(chunk: CompletionChunk, started: int, load_duration: int) -> dict[str, Any]:
    return {
        "total_duration": time.monotonic_ns() - started,
        "load_duration": load_duration,
        "prompt_eval_count": chunk.prompt_eval_count,
        "prompt_eval_duration": chunk.prompt_eval_duration,
        "eval_count": chunk.eval_count,
        "eval_duration": chunk.eval_duration,
    }


def _completion_request(prepared: PreparedRequest, prompt: RenderedPrompt, *, fmt: Any, shift: bool | None, logprobs: bool, top_logprobs: int, want_context: bool) -> CompletionRequest:
    sampling = prepared.sampling.model_dump()
    return CompletionRequest(
        prompt=prompt.text,
        **sampling,
        format=fmt,
        shift=shift is not False,
        logprobs=logprobs or top_logprobs > 0,
        top_logprobs=top_logprobs,
        return_context=want_context,
    )


async def _stream(
    app: web.Application,
    prepared: PreparedRequest,
    keep_alive: float | None,
    started: int,
    render: Callable[[LoadedRunner], Awaitable[RenderedPrompt]],
    make_parser: Callable[[RenderedPrompt], OutputParser],
    completion_args: dict[str, Any],
) -> AsyncIterator[tuple[CompletionChunk, str, str, list[dict[str, Any]], dict[str, Any]]]:
    """Hold a runner, render the prompt, and yield parsed pieces of each completion chunk:
    (chunk, thinking, content, tool calls, metrics-or-empty). Empty pieces are skipped."""
    metrics = app[METRICS]
    async with app[SCHEDULER].lease(prepared.load, keep_alive) as runner:
        load_ns = time.monotonic_ns() - started
        name = runner.model.short_name
        rendered = await render(runner)
        completion = _completion_request(prepared, rendered, **completion_args)
        parser = make_parser(rendered)
        last_chunk_ns: int | None = None
        async for chunk in runner.handle.completion(completion):  # type: ignore[attr-defined]
            now = time.monotonic_ns()
            if chunk.content:
                if last_chunk_ns is None:
                    metrics.ttft_seconds.labels(name).observe((now - started) / 1e9)
                else:
                    metrics.itl_seconds.labels(name).observe((now - last_chunk_ns) / 1e9)
                last_chunk_ns = now
            thinking, content, calls = parser.add(chunk.content, final=chunk.done)
            if chunk.done:
                metrics.observe_tokens(name, chunk.prompt_eval_count, chunk.eval_count)
                yield chunk, thinking, content, calls, _metrics(chunk, started, load_ns)
            elif content or thinking or calls or chunk.logprobs:
                yield chunk, thinking, content, calls, {}


def _logprobs(chunk: CompletionChunk) -> dict[str, Any]:
    return {"logprobs": [lp.model_dump(exclude_none=True) for lp in chunk.logprobs]} if chunk.logprobs else {}


# --- /api/generate --------------------------------------------------------------------


def _collect_generate(events: list[dict[str, Any]]) -> dict[str, Any]:
    if not events:
        return {}
    final = dict(events[-1])
    final["response"] = "".join(e.get("response", "") for e in events)
    thinking = "".join(e.get("thinking", "") for e in events)
    if thinking:
        final["thinking"] = thinking
    logprobs = [lp for e in events for lp in e.get("logprobs", [])]
    if logprobs:
        final["logprobs"] = logprobs
    return final


async def start_generate(app: web.Application, req: GenerateRequest) -> NativeResult:
    """Validate and start a generate request: a single answer, or a stream of chunks.

    Everything a user can get wrong raises here, before any chunk exists.
    """
    started = time.monotonic_ns()
    _check_top_logprobs(req.top_logprobs)
    keep_alive = parse_keep_alive(req.keep_alive)
    scheduler = app[SCHEDULER]
    model = await asyncio.to_thread(find_model, app[STORE], req.model)
    if not req.prompt and keep_alive == 0 and req.keep_alive is not None:
        await scheduler.unload(model)
        return NativeResult(single={"model": req.model, "created_at": rfc3339_now(), "response": "", "done": True, "done_reason": "unload"})
    capabilities = await asyncio.to_thread(model.capabilities)
    if "completion" not in capabilities:
        raise InvalidRequest(f'"{req.model}" does not support generate')
    if req.raw and (req.template or req.system or req.context):
        raise InvalidRequest("raw mode does not support template, system, or context")
    if req.suffix and "insert" not in capabilities:
        raise InvalidRequest(f"{model.name} does not support insert")
    if req.images and "vision" not in capabilities:
        raise InvalidRequest(f"{model.name} does not support vision")
    think, think_level = resolve_think(req.think, capabilities, req.model)
    fmt = parse_format(req.format)
    prepared = await asyncio.to_thread(prepare_load, model, req.options)

    if req.debug_render_only:
        rendered = await render_generate(model, req, think=think, think_level=think_level, runner=None)
        return NativeResult(single=_debug_info(req.model, rendered))
    if not req.prompt:
        async with scheduler.lease(prepared.load, keep_alive):
            return NativeResult(single={"model": req.model, "created_at": rfc3339_now(), "response": "", "done": True, "done_reason": "load"})

    async def events() -> AsyncIterator[dict[str, Any]]:
        pieces = _stream(
            app, prepared, keep_alive, started,
            lambda runner: render_generate(model, req, think=think, think_level=think_level, runner=runner),
            lambda rendered: OutputParser.for_generate(model, rendered, think=think),
            {"fmt": fmt, "shift": req.shift, "logprobs": req.logprobs, "top_logprobs": req.top_logprobs, "want_context": not req.raw},
        )
        async for chunk, thinking, content, _calls, metrics in pieces:
            out: dict[str, Any] = {"model": req.model, "created_at": rfc3339_now(), "response": content}
            if thinking:
                out["thinking"] = thinking
            out.update(_logprobs(chunk))
            out["done"] = chunk.done
            if chunk.done:
                out.update(done_reason=chunk.done_reason, **metrics)
                if chunk.context is not None and not req.raw:
                    out["context"] = chunk.context
            yield out

    return NativeResult(events=events(), collect=_collect_generate)


async def generate_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, GenerateRequest)
    return await _respond(request, await start_generate(request.app, req), stream=req.streaming)


def _debug_info(model_name: str, rendered: RenderedPrompt) -> dict[str, Any]:
    return {
        "model": model_name,
        "created_at": rfc3339_now(),
        "done": True,
        "_debug_info": {"rendered_template": rendered.text, "image_count": rendered.image_count},
    }


# --- /api/chat ----------------------------------------------------------------------


def _collect_chat(events: list[dict[str, Any]]) -> dict[str, Any]:
    if not events:
        return {}
    final = dict(events[-1])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(e["message"].get("content", "") for e in events)}
    thinking = "".join(e["message"].get("thinking", "") for e in events)
    if thinking:
        message["thinking"] = thinking
    calls = [c for e in events for c in e["message"].get("tool_calls", [])]
    if calls:
        message["tool_calls"] = calls
    final["message"] = message
    logprobs = [lp for e in events for lp in e.get("logprobs", [])]
    if logprobs:
        final["logprobs"] = logprobs
    return final


def _check_chat(model: Model, req: ChatRequest, capabilities: list[str]) -> None:
    if "completion" not in capabilities:
        raise InvalidRequest(f'"{req.model}" does not support chat')
    if req.tools and "tools" not in capabilities:
        raise InvalidRequest(f"{model.name} does not support tools")
    if any(m.images for m in req.messages) and "vision" not in capabilities:
        raise InvalidRequest(f"{model.name} does not support vision")


async def start_chat(app: web.Application, req: ChatRequest, *, relax_thinking: bool = False) -> NativeResult:
    """Validate and start a chat request: a single answer, or a stream of chunks
    (``relax_thinking``: see :func:`resolve_think`)."""
    started = time.monotonic_ns()
    _check_top_logprobs(req.top_logprobs)
    if not req.model:
        raise InvalidRequest("model is required")
    keep_alive = parse_keep_alive(req.keep_alive)
    scheduler = app[SCHEDULER]
    model = await asyncio.to_thread(find_model, app[STORE], req.model)
    empty = {"model": req.model, "created_at": rfc3339_now(), "message": {"role": "assistant", "content": ""}, "done": True}
    if not req.messages and keep_alive == 0 and req.keep_alive is not None:
        await scheduler.unload(model)
        return NativeResult(single={**empty, "done_reason": "unload"})
    capabilities = await asyncio.to_thread(model.capabilities)
    _check_chat(model, req, capabilities)
    think, think_level = resolve_think(req.think, capabilities, req.model, relaxed=relax_thinking)
    fmt = parse_format(req.format)
    prepared = await asyncio.to_thread(prepare_load, model, req.options)

    if req.debug_render_only:
        rendered = await render_chat(model, req, think=think, think_level=think_level, runner=None)
        return NativeResult(single=_debug_info(req.model, rendered))
    if not req.messages:
        async with scheduler.lease(prepared.load, keep_alive):
            return NativeResult(single={**empty, "done_reason": "load"})

    async def events() -> AsyncIterator[dict[str, Any]]:
        pieces = _stream(
            app, prepared, keep_alive, started,
            lambda runner: render_chat(model, req, think=think, think_level=think_level, runner=runner),
            lambda rendered: OutputParser.for_chat(model, rendered, think=think, tools=req.tools),
            {"fmt": fmt, "shift": req.shift, "logprobs": req.logprobs, "top_logprobs": req.top_logprobs, "want_context": False},
        )
        async for chunk, thinking, content, calls, metrics in pieces:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = calls
            out: dict[str, Any] = {"model": req.model, "created_at": rfc3339_now(), "message": message, **_logprobs(chunk)}
            out["done"] = chunk.done
            if chunk.done:
                out.update(done_reason=chunk.done_reason, **metrics)
            yield out

    return NativeResult(events=events(), collect=_collect_chat)


async def chat_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, ChatRequest)
    return await _respond(request, await start_chat(request.app, req), stream=req.streaming)


def setup_inference_routes(app: web.Application) -> None:
    app.router.add_post("/api/generate", generate_handler)
    app.router.add_post("/api/chat", chat_handler)
