"""``/api/embed`` (batch, L2-normalized), ``/api/embeddings`` (legacy) and ``/api/ps``."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ollamapy.api.types import EmbeddingRequest, EmbedRequest
from ollamapy.errors import InvalidRequest, OllamapyError
from ollamapy.golang.durations import parse_keep_alive
from ollamapy.supervisor.app_keys import SCHEDULER, STORE
from ollamapy.supervisor.routes.http_util import json_response, read_request, rfc3339
from ollamapy.supervisor.routes.models import find_model
from ollamapy.supervisor.scheduler import LoadedRunner
from ollamapy.supervisor.serving import prepare_load

__all__ = ["normalize", "run_embed", "setup_embed_routes"]


def _inputs(value: Any) -> list[str]:
    """``input`` as a list: a string (``""`` = none) or a list of strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest("invalid input type")


def normalize(vector: list[float]) -> list[float]:
    """L2-normalize; an all-zero vector stays zero."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


async def _fit_to_context(runner: LoadedRunner, texts: list[str], truncate: bool) -> tuple[list[str], int]:
    """Truncate each input to what one embedding batch holds, or refuse it; count tokens.

    The limit is the context (and the runner's batch, which must hold the whole input)
    minus one for BOS/EOS. Cutting tokens and detokenizing can re-tokenize longer, so the
    cut repeats until the text fits.
    """
    handle: Any = runner.handle
    batch = getattr(getattr(handle, "spec", None), "num_batch", None) or (runner.options.num_ctx or 4096)
    limit = min(runner.options.num_ctx or 4096, batch) - 1
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


async def run_embed(app: web.Application, req: EmbedRequest) -> dict[str, Any]:
    """``/api/embed``'s answer (also what the OpenAI adapter converts)."""
    started = time.monotonic_ns()
    texts = _inputs(req.input)
    keep_alive = parse_keep_alive(req.keep_alive)
    model = await asyncio.to_thread(find_model, app[STORE], req.model)
    prepared = await asyncio.to_thread(prepare_load, model, req.options)
    async with app[SCHEDULER].lease(prepared.load, keep_alive) as runner:
        loaded = time.monotonic_ns()
        if not texts:
            return {"model": req.model, "embeddings": []}
        fitted, count = await _fit_to_context(runner, texts, req.truncate is not False)
        result = await runner.handle.embed(fitted)  # type: ignore[attr-defined]
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


async def embed_handler(request: web.Request) -> web.Response:
    req = await read_request(request, EmbedRequest)
    return json_response(await run_embed(request.app, req))


async def embeddings_handler(request: web.Request) -> web.Response:
    req = await read_request(request, EmbeddingRequest)
    if not req.model:
        raise InvalidRequest("model is required")
    keep_alive = parse_keep_alive(req.keep_alive)
    model = await asyncio.to_thread(find_model, request.app[STORE], req.model)
    prepared = await asyncio.to_thread(prepare_load, model, req.options)
    async with request.app[SCHEDULER].lease(prepared.load, keep_alive) as runner:
        if not req.prompt:
            return json_response({"embedding": []})
        fitted, _ = await _fit_to_context(runner, [req.prompt], True)
        result = await runner.handle.embed(fitted)  # type: ignore[attr-defined]
    return json_response({"embedding": result.embeddings[0]})


def _ps_entry(runner: LoadedRunner) -> dict[str, Any]:
    """One ``/api/ps`` row: sizes from llama.cpp's own buffers when it logged them, else
    from the placement plan; the plan itself as an extra ``placement`` object."""
    model = runner.model
    handle: Any = runner.handle
    placement = getattr(handle, "placement", None)
    size, size_vram = handle.memory_size() if hasattr(handle, "memory_size") else (0, 0)
    if size == 0 and placement is not None:
        size, size_vram = placement.size, placement.size_vram
    expires = datetime.fromtimestamp(runner.expiry_for_ps(), tz=UTC)
    entry: dict[str, Any] = {
        "name": model.short_name,
        "model": model.short_name,
        "size": size or model.size,
        "digest": model.digest,
        "details": model.details().model_dump(exclude_none=True),
        "expires_at": rfc3339(expires),
        "size_vram": size_vram,
        "context_length": runner.options.num_ctx,
    }
    if placement is not None:
        entry["placement"] = placement.to_json()
    return entry


async def ps_handler(request: web.Request) -> web.Response:
    return json_response({"models": [_ps_entry(r) for r in request.app[SCHEDULER].loaded()]})


def setup_embed_routes(app: web.Application) -> None:
    app.router.add_post("/api/embed", embed_handler)
    app.router.add_post("/api/embeddings", embeddings_handler)
    app.router.add_get("/api/ps", ps_handler)
