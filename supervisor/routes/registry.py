"""``POST /api/pull`` and ``POST /api/push``.

Both stream NDJSON progress (``stream: false`` answers with the last event). Errors before
the first event are real statuses (``invalid model name`` 400, ``model is required`` 400,
``insecure protocol http`` 500); later ones end the stream with ``{"error": …}``, as
Ollama's handlers do. The app holds one :class:`~ollamapy.registry.TransferManager`, so
concurrent pulls of a blob share its download; it is closed when the app stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from ollamapy import envconfig
from ollamapy.api.types import ApiModel
from ollamapy.errors import InvalidModelName, InvalidRequest
from ollamapy.registry import TransferManager, TransferSettings, pull_model, push_model
from ollamapy.store.names import ModelName
from ollamapy.supervisor.app_keys import STORE
from ollamapy.supervisor.routes.http_util import read_request, respond_stream

__all__ = ["TRANSFERS", "RegistryRequest", "pull_events", "setup_registry_routes"]

TRANSFERS: web.AppKey[TransferManager] = web.AppKey("registry_transfers", TransferManager)


class RegistryRequest(ApiModel):
    """``PullRequest`` / ``PushRequest``: the same fields for both."""

    model: str = ""
    name: str = ""
    """Deprecated alias of ``model``."""
    insecure: bool = False
    """Allow plain http (and talk http to the registry)."""
    username: str = ""
    """Accepted and ignored, as by Ollama."""
    password: str = ""
    """Accepted and ignored, as by Ollama."""
    stream: bool | None = None
    """Absent means true."""

    @property
    def target(self) -> str:
        return self.model or self.name

    @property
    def streaming(self) -> bool:
        return self.stream is not False


def pull_events(request: web.Request, name: ModelName, *, insecure: bool) -> AsyncGenerator[dict[str, Any], None]:
    """Pull ``name`` (as the store spells it) with the app's transfers and key: the progress
    events of ``/api/pull``, also streamed by a create whose ``from`` model must be pulled."""
    return pull_model(request.app[TRANSFERS], request.app[STORE], name, insecure=insecure, key_dir=envconfig.home_dir())


async def pull_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, RegistryRequest)
    name = ModelName.parse(req.target)
    if not req.target or not name.is_valid():
        raise InvalidModelName("invalid model name")
    name = await asyncio.to_thread(request.app[STORE].resolve_existing, name)
    return await respond_stream(request, pull_events(request, name, insecure=req.insecure), stream=req.streaming)


async def push_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, RegistryRequest)
    if not req.target:
        raise InvalidRequest("model is required")
    store = request.app[STORE]
    name = await asyncio.to_thread(store.resolve_existing, ModelName.parse(req.target))
    events = push_model(request.app[TRANSFERS], store, name, insecure=req.insecure, key_dir=envconfig.home_dir())
    return await respond_stream(request, events, stream=req.streaming)


def setup_registry_routes(app: web.Application, settings: TransferSettings | None = None) -> None:
    """Register pull/push; ``settings`` (part sizes, stall timeout, …) default to Ollama's."""
    app[TRANSFERS] = TransferManager(settings)

    async def close_transfers(app: web.Application) -> None:
        await app[TRANSFERS].close()

    app.on_cleanup.append(close_transfers)
    app.router.add_post("/api/pull", pull_handler)
    app.router.add_post("/api/push", push_handler)
