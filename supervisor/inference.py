"""Generate, chat and embed as services: validate, schedule, render, run on a runner.

Every API the server speaks (Ollama's ``/api/*``, OpenAI's ``/v1/*``, Anthropic's
``/v1/messages``) answers with this one core; the routes only decode a body, call it and
encode what it returns. ``start_generate``/``start_chat`` check everything a user can get
wrong before anything is loaded (so those errors are plain HTTP errors) and return either
one answer or a stream of Ollama's native chunks. The prompt itself is rendered by
``supervisor.prompting``; output parsing (thinking, tool calls) by ``ollamapy.prompt``.

A runner that dies (or dies while loading) before a request's answer has started costs the
user nothing: the scheduler drops it and the request runs once more on a fresh load, as
Ollama's scheduler replaces dead runners. Only a second failure, or a crash after the
first chunk, reaches the client (a real status, or the stream's error line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest, EmbeddingResponse
from ollamapy.api.types import ChatRequest, EmbeddingRequest, EmbedRequest, GenerateRequest
from ollamapy.errors import InvalidRequest, OllamapyError, RunnerCrashed
from ollamapy.golang.durations import parse_keep_alive
from ollamapy.golang.timefmt import rfc3339_now
from ollamapy.prompt.images import validate_images
from ollamapy.store.model import Model, find_model
from ollamapy.store.model_store import ModelStore
from ollamapy.supervisor.metrics import Metrics
from ollamapy.supervisor.prompting import OutputParser, RenderedPrompt, render_chat, render_generate
from ollamapy.supervisor.scheduler import LoadedRunner, LoadRequest, Scheduler
from ollamapy.supervisor.serving import PreparedRequest, prepare_load

__all__ = ["ChunkStream", "Inference", "NativeResult", "SingleAnswer", "normalize", "parse_format", "resolve_think"]

log = logging.getLogger("ollamapy.server")

_THINK_LEVELS = ("high", "medium", "low", "max")
_ATTEMPTS = 2
"""Runs of a request whose runner died before its answer started: the first and one retry."""

T = TypeVar("T")

Event = dict[str, Any]


@dataclass(frozen=True)
class SingleAnswer:
    """A request answered by one object, streamed or not: a load, an unload, a debug render."""

    body: Event


@dataclass(frozen=True)
class ChunkStream:
    """A generation as Ollama's native chunks. ``collect`` folds the whole stream into the
    ``stream: false`` answer; the compatibility APIs convert either form."""

    events: AsyncGenerator[Event, None]
    collect: Callable[[list[Event]], Event]

    async def whole(self) -> Event:
        """Run the stream to its end and fold it (its runner lease ends here, even on error)."""
        async with contextlib.aclosing(self.events) as events:
            return self.collect([event async for event in events])


NativeResult = SingleAnswer | ChunkStream
"""What ``start_generate`` and ``start_chat`` return."""


def parse_format(value: Any) -> Literal["json"] | dict[str, Any] | None:
    """``format``: ``"json"``, a JSON-schema object, or nothing."""
    if value is None or value == "":
        return None
    if value == "json":
        return "json"
    if isinstance(value, dict):
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


def normalize(vector: list[float]) -> list[float]:
    """L2-normalize; an all-zero vector stays zero."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


def _check_top_logprobs(value: int) -> None:
    if not 0 <= value <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20")


def _final_metrics(chunk: CompletionChunk, started: int, load_duration: int) -> Event:
    return {
        "total_duration": time.monotonic_ns() - started,
        "load_duration": load_duration,
        "prompt_eval_count": chunk.prompt_eval_count,
        "prompt_eval_duration": chunk.prompt_eval_duration,
        "eval_count": chunk.eval_count,
        "eval_duration": chunk.eval_duration,
    }


def _logprobs(chunk: CompletionChunk) -> Event:
    return {"logprobs": [lp.model_dump(exclude_none=True) for lp in chunk.logprobs]} if chunk.logprobs else {}


def _debug_info(model_name: str, rendered: RenderedPrompt) -> Event:
    return {
        "model": model_name,
        "created_at": rfc3339_now(),
        "done": True,
        "_debug_info": {"rendered_template": rendered.text, "image_count": rendered.image_count},
    }


def _joined_logprobs(final: Event, events: list[Event]) -> None:
    logprobs = [lp for e in events for lp in e.get("logprobs", [])]
    if logprobs:
        final["logprobs"] = logprobs


def _collect_generate(events: list[Event]) -> Event:
    if not events:
        return {}
    final = dict(events[-1])
    final["response"] = "".join(e.get("response", "") for e in events)
    thinking = "".join(e.get("thinking", "") for e in events)
    if thinking:
        final["thinking"] = thinking
    _joined_logprobs(final, events)
    return final


def _collect_chat(events: list[Event]) -> Event:
    if not events:
        return {}
    final = dict(events[-1])
    message: Event = {"role": "assistant", "content": "".join(e["message"].get("content", "") for e in events)}
    thinking = "".join(e["message"].get("thinking", "") for e in events)
    if thinking:
        message["thinking"] = thinking
    calls = [c for e in events for c in e["message"].get("tool_calls", [])]
    if calls:
        message["tool_calls"] = calls
    final["message"] = message
    _joined_logprobs(final, events)
    return final


def _check_chat(model: Model, req: ChatRequest, capabilities: list[str]) -> None:
    if "completion" not in capabilities:
        raise InvalidRequest(f'"{req.model}" does not support chat')
    if req.tools and "tools" not in capabilities:
        raise InvalidRequest(f"{model.name} does not support tools")
    _check_images(model, [image for m in req.messages for image in m.images or ()], capabilities)


def _check_images(model: Model, images: list[str], capabilities: list[str]) -> None:
    """A request's images need a model that sees them, and must each be a decodable image.

    A model whose vision encoder is inside its GGUF (Ollama's newer single-file format)
    has the ``vision`` capability, but llama.cpp loads encoders only from a separate
    projector file, so its images could not reach it: refused, never dropped.
    """
    if not images:
        return
    if "vision" not in capabilities:
        raise InvalidRequest(f"{model.name} does not support vision")
    if not model.projector_paths:
        raise InvalidRequest(
            f"{model.name} keeps its vision encoder inside the model file (Ollama's single-file format), "
            "which llama.cpp cannot load; images need a model with a separate projector"
        )
    validate_images(images)


def _inputs(value: Any) -> list[str]:
    """``input`` as a list: a string (``""`` = none) or a list of strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest("invalid input type")


@dataclass(frozen=True)
class _Generation:
    """How one request turns a runner's chunks into native events."""

    prepared: PreparedRequest
    keep_alive: float | None
    started: int
    render: Callable[[LoadedRunner], Awaitable[RenderedPrompt]]
    make_parser: Callable[[RenderedPrompt], OutputParser]
    fmt: Literal["json"] | dict[str, Any] | None
    shift: bool | None
    logprobs: bool
    top_logprobs: int
    want_context: bool

    def completion_request(self, prompt: RenderedPrompt) -> CompletionRequest:
        return CompletionRequest(
            prompt=prompt.text,
            images=list(prompt.images),
            **self.prepared.sampling.model_dump(),
            format=self.fmt,
            format_after=list(prompt.thinking_end) or None,
            shift=self.shift is not False,
            logprobs=self.logprobs or self.top_logprobs > 0,
            top_logprobs=self.top_logprobs,
            return_context=self.want_context,
        )


class Inference:
    """The inference core over one store, scheduler and set of metrics (one per application)."""

    def __init__(self, store: ModelStore, scheduler: Scheduler, metrics: Metrics) -> None:
        self.store = store
        self.scheduler = scheduler
        self.metrics = metrics

    async def find_model(self, name: str) -> Model:
        """The named model (the store reads files: off the event loop); 404 when missing."""
        return await asyncio.to_thread(find_model, self.store, name)

    # -- generation ---------------------------------------------------------------------

    @staticmethod
    def _retry(err: RunnerCrashed, attempt: int, load: LoadRequest) -> bool:
        """Whether a request that lost its runner before answering runs again (and say so)."""
        if attempt >= _ATTEMPTS:
            return False
        log.warning("runner for %s failed before answering (%s); retrying on a fresh runner", load.model.short_name, err)
        return True

    async def _leased(self, load: LoadRequest, keep_alive: float | None, work: Callable[[LoadedRunner], Awaitable[T]]) -> T:
        """``work`` on a runner of ``load``, retried once on a fresh runner if its runner dies."""
        attempt = 1
        while True:
            try:
                async with self.scheduler.lease(load, keep_alive) as runner:
                    return await work(runner)
            except RunnerCrashed as err:
                if not self._retry(err, attempt, load):
                    raise
                attempt += 1

    async def _pieces(self, gen: _Generation) -> AsyncGenerator[tuple[CompletionChunk, str, str, list[Event], Event], None]:
        """Hold a runner, render the prompt, and yield parsed pieces of each completion chunk:
        (chunk, thinking, content, tool calls, metrics-or-empty). Empty pieces are skipped.
        Until the first piece is out, a dead runner is replaced once."""
        attempt = 1
        while True:
            answered = False
            try:
                async with (
                    self.scheduler.lease(gen.prepared.load, gen.keep_alive) as runner,
                    contextlib.aclosing(self._pieces_on(runner, gen)) as pieces,
                ):
                    async for piece in pieces:
                        answered = True
                        yield piece
                return
            except RunnerCrashed as err:
                if answered or not self._retry(err, attempt, gen.prepared.load):
                    raise
                attempt += 1

    async def _pieces_on(self, runner: LoadedRunner, gen: _Generation) -> AsyncGenerator[tuple[CompletionChunk, str, str, list[Event], Event], None]:
        """``_pieces`` on one runner."""
        load_ns = time.monotonic_ns() - gen.started
        # the model's metric series, looked up once rather than for every chunk
        name = runner.model.short_name
        ttft, itl = self.metrics.ttft_seconds.labels(name), self.metrics.itl_seconds.labels(name)
        generated_tokens = self.metrics.generated_tokens.labels(name)
        rendered = await gen.render(runner)
        parser = gen.make_parser(rendered)
        last_chunk_ns: int | None = None
        counted = 0  # generated tokens already counted: chunks carry running totals, so the
        # token counter (and the dashboard's tokens/s) moves while a long answer streams
        async for chunk in runner.handle.completion(gen.completion_request(rendered)):
            now = time.monotonic_ns()
            if chunk.content:
                if last_chunk_ns is None:
                    ttft.observe((now - gen.started) / 1e9)
                else:
                    itl.observe((now - last_chunk_ns) / 1e9)
                last_chunk_ns = now
            generated = max(chunk.eval_count - counted, 0)
            counted += generated
            generated_tokens.inc(generated)
            if chunk.done:
                self.metrics.prompt_tokens.labels(name).inc(chunk.prompt_eval_count)
            thinking, content, calls = parser.add(chunk.content, final=chunk.done)
            if chunk.done:
                yield chunk, thinking, content, calls, _final_metrics(chunk, gen.started, load_ns)
            elif content or thinking or calls or chunk.logprobs:
                yield chunk, thinking, content, calls, {}

    async def start_generate(self, req: GenerateRequest) -> NativeResult:
        """Validate and start a generate request: a single answer, or a stream of chunks.

        Everything a user can get wrong raises here, before any chunk exists.
        """
        started = time.monotonic_ns()
        _check_top_logprobs(req.top_logprobs)
        keep_alive = parse_keep_alive(req.keep_alive)
        model = await self.find_model(req.model)
        if not req.prompt and keep_alive == 0 and req.keep_alive is not None:
            await self.scheduler.unload(model)
            return SingleAnswer({"model": req.model, "created_at": rfc3339_now(), "response": "", "done": True, "done_reason": "unload"})
        capabilities = await asyncio.to_thread(model.capabilities)
        if "completion" not in capabilities:
            raise InvalidRequest(f'"{req.model}" does not support generate')
        if req.raw and (req.template or req.system or req.context):
            raise InvalidRequest("raw mode does not support template, system, or context")
        if req.suffix and "insert" not in capabilities:
            raise InvalidRequest(f"{model.name} does not support insert")
        _check_images(model, list(req.images or ()), capabilities)
        think, think_level = resolve_think(req.think, capabilities, req.model)
        fmt = parse_format(req.format)
        prepared = await asyncio.to_thread(prepare_load, model, req.options)

        if req.debug_render_only:
            return SingleAnswer(_debug_info(req.model, await render_generate(model, req, think=think, think_level=think_level, runner=None)))
        if not req.prompt:
            await self._leased(prepared.load, keep_alive, _loaded)
            return SingleAnswer({"model": req.model, "created_at": rfc3339_now(), "response": "", "done": True, "done_reason": "load"})

        gen = _Generation(
            prepared, keep_alive, started,
            render=lambda runner: render_generate(model, req, think=think, think_level=think_level, runner=runner),
            make_parser=lambda rendered: OutputParser.for_generate(rendered),
            fmt=fmt, shift=req.shift, logprobs=req.logprobs, top_logprobs=req.top_logprobs, want_context=not req.raw,
        )

        async def events() -> AsyncGenerator[Event, None]:
            async with contextlib.aclosing(self._pieces(gen)) as pieces:
                async for chunk, thinking, content, _calls, metrics in pieces:
                    out: Event = {"model": req.model, "created_at": rfc3339_now(), "response": content}
                    if thinking:
                        out["thinking"] = thinking
                    out.update(_logprobs(chunk))
                    out["done"] = chunk.done
                    if chunk.done:
                        out.update(done_reason=chunk.done_reason, **metrics)
                        if chunk.context is not None and not req.raw:
                            out["context"] = chunk.context
                    yield out

        return ChunkStream(events(), _collect_generate)

    async def start_chat(self, req: ChatRequest, *, relax_thinking: bool = False) -> NativeResult:
        """Validate and start a chat request: a single answer, or a stream of chunks
        (``relax_thinking``: see :func:`resolve_think`)."""
        started = time.monotonic_ns()
        _check_top_logprobs(req.top_logprobs)
        if not req.model:
            raise InvalidRequest("model is required")
        keep_alive = parse_keep_alive(req.keep_alive)
        model = await self.find_model(req.model)
        empty = {"model": req.model, "created_at": rfc3339_now(), "message": {"role": "assistant", "content": ""}, "done": True}
        if not req.messages and keep_alive == 0 and req.keep_alive is not None:
            await self.scheduler.unload(model)
            return SingleAnswer({**empty, "done_reason": "unload"})
        capabilities = await asyncio.to_thread(model.capabilities)
        _check_chat(model, req, capabilities)
        think, think_level = resolve_think(req.think, capabilities, req.model, relaxed=relax_thinking)
        fmt = parse_format(req.format)
        prepared = await asyncio.to_thread(prepare_load, model, req.options)

        if req.debug_render_only:
            return SingleAnswer(_debug_info(req.model, await render_chat(model, req, think=think, think_level=think_level, runner=None)))
        if not req.messages:
            await self._leased(prepared.load, keep_alive, _loaded)
            return SingleAnswer({**empty, "done_reason": "load"})

        gen = _Generation(
            prepared, keep_alive, started,
            render=lambda runner: render_chat(model, req, think=think, think_level=think_level, runner=runner),
            make_parser=lambda rendered: OutputParser.for_chat(model, rendered),
            fmt=fmt, shift=req.shift, logprobs=req.logprobs, top_logprobs=req.top_logprobs, want_context=False,
        )

        async def events() -> AsyncGenerator[Event, None]:
            async with contextlib.aclosing(self._pieces(gen)) as pieces:
                async for chunk, thinking, content, calls, metrics in pieces:
                    message: Event = {"role": "assistant", "content": content}
                    if thinking:
                        message["thinking"] = thinking
                    if calls:
                        message["tool_calls"] = calls
                    out: Event = {"model": req.model, "created_at": rfc3339_now(), "message": message, **_logprobs(chunk)}
                    out["done"] = chunk.done
                    if chunk.done:
                        out.update(done_reason=chunk.done_reason, **metrics)
                    yield out

        return ChunkStream(events(), _collect_chat)

    # -- embeddings ---------------------------------------------------------------------

    async def run_embed(self, req: EmbedRequest) -> Event:
        """``/api/embed``'s answer: one L2-normalized vector per input (also what the
        OpenAI adapter converts)."""
        started = time.monotonic_ns()
        texts = _inputs(req.input)
        keep_alive = parse_keep_alive(req.keep_alive)
        model = await self.find_model(req.model)
        prepared = await asyncio.to_thread(prepare_load, model, req.options)
        if not texts:
            await self._leased(prepared.load, keep_alive, _loaded)
            return {"model": req.model, "embeddings": []}

        async def embed(runner: LoadedRunner) -> tuple[int, EmbeddingResponse, int]:
            loaded = time.monotonic_ns()
            fitted, count = await _fit_to_context(runner, texts, req.truncate is not False)
            return loaded, await runner.handle.embed(fitted), count

        loaded, result, count = await self._leased(prepared.load, keep_alive, embed)
        embeddings = []
        for vector in result.embeddings:
            if any(math.isnan(x) or math.isinf(x) for x in vector):
                raise OllamapyError("embedding contains NaN or Inf values")
            vector = normalize(vector)
            if 0 < req.dimensions < len(vector):
                vector = normalize(vector[: req.dimensions])
            embeddings.append(vector)
        return {
            "model": req.model,
            "embeddings": embeddings,
            "total_duration": time.monotonic_ns() - started,
            "load_duration": loaded - started,
            "prompt_eval_count": count,
        }

    async def run_legacy_embedding(self, req: EmbeddingRequest) -> Event:
        """``/api/embeddings``' answer: one unnormalized vector, the input always truncated."""
        if not req.model:
            raise InvalidRequest("model is required")
        keep_alive = parse_keep_alive(req.keep_alive)
        model = await self.find_model(req.model)
        prepared = await asyncio.to_thread(prepare_load, model, req.options)
        if not req.prompt:
            await self._leased(prepared.load, keep_alive, _loaded)
            return {"embedding": []}

        async def embed(runner: LoadedRunner) -> EmbeddingResponse:
            fitted, _ = await _fit_to_context(runner, [req.prompt], True)
            return await runner.handle.embed(fitted)

        return {"embedding": (await self._leased(prepared.load, keep_alive, embed)).embeddings[0]}


async def _loaded(runner: LoadedRunner) -> None:
    """Nothing to run: the request only loads the model (or keeps it loaded)."""


async def _fit_to_context(runner: LoadedRunner, texts: list[str], truncate: bool) -> tuple[list[str], int]:
    """Truncate each input to what one embedding batch holds, or refuse it; count tokens.

    The limit is the context (and the runner's batch, which must hold the whole input)
    minus one for BOS/EOS. Cutting tokens and detokenizing can re-tokenize longer, so the
    cut repeats until the text fits.
    """
    handle = runner.handle
    limit = min(runner.options.num_ctx or 4096, handle.spec.num_batch) - 1
    fitted, total = [], 0
    for text in texts:
        tokens = await handle.tokenize(text, add_special=True)
        if len(tokens) > limit and not truncate:
            raise InvalidRequest("the input length exceeds the context length")
        if len(tokens) > limit:
            plain = await handle.tokenize(text, add_special=False)
            keep = limit - (len(tokens) - len(plain))
            while len(tokens) > limit and keep > 0:
                text = await handle.detokenize(plain[:keep])
                tokens = await handle.tokenize(text, add_special=True)
                keep -= max(len(tokens) - limit, 0)
        fitted.append(text)
        total += len(tokens)
    return fitted, total
