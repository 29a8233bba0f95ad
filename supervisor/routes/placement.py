"""``POST /api/plan`` (ollamapy only): the memory estimate and the placement the server
would choose for a model, on this machine's GPUs or on an inventory the client describes.

Request: ``{"model": NAME, "num_ctx"?: N, "num_parallel"?: N, "options"?: {...},
"inventory"?: {"gpus": [...], "system"?: {...}}}``. ``options`` are Ollama's load-time
options (``num_gpu``, ``main_gpu``, ``num_batch``…) layered over the model's own
parameters. Without ``inventory`` the server probes its devices; without
``inventory.system`` the server's own system memory is used.

Response: ``{"model", "inventory", "estimate", "placement"}``; when the model fits
nowhere, ``placement`` is null and ``reason`` says what was needed and what was free —
that is an answer to the question, not a failed request. A plan for this machine names
the CPU variant of llama.cpp its runners load (``placement.cpu_backend``) once the
server's probe has found it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ollamapy import envconfig
from ollamapy.api.options import Options
from ollamapy.errors import InvalidRequest, OllamapyError
from ollamapy.store.model import find_model
from ollamapy.supervisor.app_keys import CPU_BACKEND, STORE
from ollamapy.supervisor.placement.cpu_backend import CpuBackendChoice
from ollamapy.supervisor.placement.gpu_probe import (
    Inventory,
    probe_inventory,
    probe_system_memory,
)
from ollamapy.supervisor.placement.plan import estimate_for, plan_placement
from ollamapy.supervisor.routes.http_util import json_response, read_request

__all__ = ["PlanRequest", "setup_placement_routes"]


class PlanRequest(BaseModel):
    """The body of ``POST /api/plan``."""

    model_config = ConfigDict(extra="forbid")

    model: str
    num_ctx: int | None = Field(None, ge=1)
    """Context per sequence; default: the model's parameter, else the server's default."""
    num_parallel: int | None = Field(None, ge=1)
    """Sequences served at once; default ``OLLAMA_NUM_PARALLEL``."""
    options: dict[str, Any] | None = None
    inventory: dict[str, Any] | None = None
    """Devices to plan for instead of the server's: ``{"gpus": [...], "system": {...}}``."""


def _inventory(raw: dict[str, Any] | None) -> Inventory:
    """The described inventory (system memory filled in from this machine), else a fresh probe."""
    if raw is None:
        return probe_inventory(refresh=True)
    if "system" not in raw:
        raw = {**raw, "system": probe_system_memory().model_dump()}
    try:
        return Inventory.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequest(f"invalid inventory: {where}: {first['msg']}" if where else f"invalid inventory: {first['msg']}") from None


def _plan(request: web.Request, req: PlanRequest, cpu_backend: CpuBackendChoice | None) -> dict[str, Any]:
    model = find_model(request.app[STORE], req.model)
    if model.gguf is None:
        raise InvalidRequest(f"model '{req.model}' has no GGUF weights to place")
    options, _ignored = Options.from_layers(model.parameters, req.options or {})
    load = options.load
    if req.num_ctx is not None:
        load = load.model_copy(update={"num_ctx": req.num_ctx})
    inventory = _inventory(req.inventory)
    num_parallel = req.num_parallel or envconfig.num_parallel()
    estimate = estimate_for(model.gguf, load, num_parallel, inventory, projector_paths=model.projector_paths)
    body: dict[str, Any] = {
        "model": model.short_name,
        "inventory": inventory.to_json(),
        "estimate": estimate.to_json(),
    }
    try:
        placement = plan_placement(
            inventory,
            estimate,
            num_gpu=load.num_gpu,
            main_gpu=load.main_gpu,
            sched_spread=envconfig.sched_spread(),
        )
    except InvalidRequest:
        raise
    except OllamapyError as exc:
        body.update(placement=None, reason=exc.message)
    else:
        if cpu_backend is not None and req.inventory is None:
            placement = cpu_backend.apply(placement)
        body["placement"] = placement.to_json()
    return body


async def plan_handler(request: web.Request) -> web.Response:
    req = await read_request(request, PlanRequest)
    return json_response(await asyncio.to_thread(_plan, request, req, request.app[CPU_BACKEND].known))


def setup_placement_routes(app: web.Application) -> None:
    app.router.add_post("/api/plan", plan_handler)
