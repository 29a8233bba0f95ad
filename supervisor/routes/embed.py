"""``/api/embed`` (batch, L2-normalized), ``/api/embeddings`` (legacy) and ``/api/ps``.

The embeddings themselves come from the inference service (``supervisor.inference``);
``/api/ps`` reads the scheduler's loaded runners.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ollamapy.api.types import EmbeddingRequest, EmbedRequest
from ollamapy.golang.timefmt import rfc3339
from ollamapy.supervisor.app_keys import INFERENCE, SCHEDULER
from ollamapy.supervisor.routes.http_util import json_response, read_request
from ollamapy.supervisor.scheduler import LoadedRunner

__all__ = ["setup_embed_routes"]


async def embed_handler(request: web.Request) -> web.Response:
    req = await read_request(request, EmbedRequest)
    return json_response(await request.app[INFERENCE].run_embed(req))


async def embeddings_handler(request: web.Request) -> web.Response:
    req = await read_request(request, EmbeddingRequest)
    return json_response(await request.app[INFERENCE].run_legacy_embedding(req))


def _ps_entry(runner: LoadedRunner) -> dict[str, Any]:
    """One ``/api/ps`` row: sizes from llama.cpp's own buffers when it logged them, else
    from the placement plan; the plan itself as an extra ``placement`` object."""
    model = runner.model
    placement = runner.handle.placement
    size, size_vram = runner.handle.memory_size()
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
