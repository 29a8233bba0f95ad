"""Model-management endpoints: tags, show, create, copy, delete, blobs.

Handlers validate, then call library code in ``ollamapy/`` through a thread (the store does
blocking file I/O); messages and status codes are Ollama's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from ollamapy.api.options import format_parameters
from ollamapy.api.types import CopyRequest, CreateRequest, DeleteRequest, ShowRequest, ShowResponse
from ollamapy.errors import BlobNotFound, InvalidRequest, ModelNotFound
from ollamapy.golang.timefmt import rfc3339
from ollamapy.store import create as model_create
from ollamapy.store.gguf import read_gguf
from ollamapy.store.model import find_model
from ollamapy.store.model_store import ModelStore
from ollamapy.store.modelfile import format_show_modelfile
from ollamapy.store.names import ModelName
from ollamapy.supervisor.app_keys import STORE
from ollamapy.supervisor.catalog import list_models
from ollamapy.supervisor.routes.http_util import json_response, read_request, respond_stream
from ollamapy.supervisor.routes.registry import pull_events
from ollamapy.supervisor.threads import stream_from_thread

__all__ = ["setup_model_routes"]

log = logging.getLogger("ollamapy.server")

_BLOB_CHUNK = 1 << 20


def _store(request: web.Request) -> ModelStore:
    return request.app[STORE]


async def list_handler(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(list_models, _store(request)))


def _show(store: ModelStore, req: ShowRequest) -> dict[str, Any]:
    model = find_model(store, req.target)
    if req.system or req.template:
        model = dataclasses.replace(model, system=req.system or model.system, template=req.template or model.template, _capabilities=None)
    info = model.gguf
    response = ShowResponse(
        license="\n".join(model.licenses) or None,
        modelfile=format_show_modelfile(
            short_name=model.short_name,
            model_path=str(model.model_path or ""),
            adapter_paths=[str(p) for p in model.adapter_paths],
            projector_paths=[str(p) for p in model.projector_paths],
            template=model.template,
            system=model.system or "",
            parameters=model.parameters,
            licenses=model.licenses,
            messages=[m.to_wire() for m in model.messages],
            renderer=model.config.get("renderer") or "",
            parser=model.config.get("parser") or "",
        ),
        parameters=format_parameters(model.parameters) or None,
        template=model.template,
        system=model.system,
        renderer=model.config.get("renderer") or None,
        parser=model.config.get("parser") or None,
        details=model.details(),
        messages=model.messages or None,
        model_info=info.model_info(req.verbose) if info else {},
        projector_info=read_gguf(model.projector_paths[0]).model_info(req.verbose) if model.projector_paths else None,
        tensors=[{"name": t.name, "type": t.type_name, "shape": list(t.shape)} for t in info.tensors] if info and req.verbose else None,
        capabilities=model.capabilities(),
        modified_at=rfc3339(model.modified_at),
        requires=model.config.get("requires") or None,
    )
    return response.to_wire()


async def show_handler(request: web.Request) -> web.Response:
    req = await read_request(request, ShowRequest)
    if not req.target:
        raise InvalidRequest("model is required")
    return json_response(await asyncio.to_thread(_show, _store(request), req))


async def _create_events(request: web.Request, job: model_create.CreateJob) -> AsyncIterator[dict[str, Any]]:
    """The create's progress, after the pull's when its ``from`` model must be pulled first.

    As in Ollama, the pull's own lines (``pulling manifest`` … ``success``) come first and
    a failed pull ends the create with the pull's error. Ollama pulls with default
    registry options, so only https; ollamapy also pulls over plain http when ``from``
    spells the scheme out (``http://host/ns/model``), the create's way to say insecure.
    """
    if job.pull_from is not None:
        insecure = job.pull_from.scheme == "http"
        async with aclosing(pull_events(request, job.pull_from, insecure=insecure)) as pulled:
            async for event in pulled:
                yield event
    store = _store(request)
    async for event in stream_from_thread(lambda emit: model_create.run_create(store, job, emit)):
        yield event


async def create_handler(request: web.Request) -> web.StreamResponse:
    req = await read_request(request, CreateRequest)
    job = await asyncio.to_thread(model_create.prepare_create, _store(request), req)
    return await respond_stream(request, _create_events(request, job), stream=req.streaming)


def _copy(store: ModelStore, req: CopyRequest) -> None:
    source = ModelName.parse(req.source)
    if not req.source or not source.is_valid():
        raise InvalidRequest(f'source "{req.source}" is invalid')
    destination = ModelName.parse(req.destination)
    if not req.destination or not destination.is_valid():
        raise InvalidRequest(f'destination "{req.destination}" is invalid')
    source = store.resolve_existing(source)
    if not store.has_manifest(source):
        raise ModelNotFound(f'model "{req.source}" not found')
    store.copy(source, store.resolve_existing(destination))


async def copy_handler(request: web.Request) -> web.Response:
    req = await read_request(request, CopyRequest)
    await asyncio.to_thread(_copy, _store(request), req)
    return web.Response(status=200)


def _delete(store: ModelStore, req: DeleteRequest) -> None:
    name = ModelName.parse(req.target)
    if not req.target or not name.is_valid():
        raise InvalidRequest(f'name "{req.target}" is invalid')
    name = store.resolve_existing(name)
    if not store.has_manifest(name):
        raise ModelNotFound(f"model '{req.target}' not found")
    store.delete(name)


async def delete_handler(request: web.Request) -> web.Response:
    req = await read_request(request, DeleteRequest)
    await asyncio.to_thread(_delete, _store(request), req)
    return web.Response(status=200)


async def head_blob_handler(request: web.Request) -> web.Response:
    digest = request.match_info["digest"]
    store = _store(request)
    store.blob_path(digest)  # 400 invalid digest format
    if not await asyncio.to_thread(store.has_blob, digest):
        raise BlobNotFound(f'blob "{digest}" not found')
    return web.Response(status=200)


async def create_blob_handler(request: web.Request) -> web.Response:
    """Stream an upload to a temp file, hashing as it goes; never hold it in memory."""
    digest = request.match_info["digest"]
    store = _store(request)
    store.blob_path(digest)
    if await asyncio.to_thread(store.has_blob, digest):
        return web.Response(status=200)
    writer = await asyncio.to_thread(store.open_blob_writer, digest)
    try:
        while chunk := await request.content.read(_BLOB_CHUNK):
            await asyncio.to_thread(writer.write, chunk)
        created = await asyncio.to_thread(writer.commit)
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise
    return web.Response(status=201 if created else 200)


def setup_model_routes(app: web.Application) -> None:
    app.router.add_get("/api/tags", list_handler)
    app.router.add_post("/api/show", show_handler)
    app.router.add_post("/api/create", create_handler)
    app.router.add_post("/api/copy", copy_handler)
    app.router.add_delete("/api/delete", delete_handler)
    app.router.add_head("/api/blobs/{digest}", head_blob_handler)
    app.router.add_post("/api/blobs/{digest}", create_blob_handler)
