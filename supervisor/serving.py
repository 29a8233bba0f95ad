"""From a request to a runner: option merging, num_ctx resolution, placement, starting runners.

Handlers call ``prepare_load`` to turn a model plus request options into the scheduler's
``LoadRequest`` (and the sampling options for the runner), and the scheduler calls a
``RunnerStarter`` to plan where a ``LoadRequest`` goes (beside the runners already loaded)
and to start a runner process there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamapy import envconfig
from ollamapy.api.options import LoadOptions, Options, SamplingOptions
from ollamapy.api.runner_protocol import LoadSpec
from ollamapy.errors import OllamapyError
from ollamapy.store.model import Model
from ollamapy.supervisor.placement.cpu_backend import CpuBackendProbe
from ollamapy.supervisor.placement.gpu_probe import Inventory, probe_inventory
from ollamapy.supervisor.placement.plan import Placement, placement_for, reserve_loaded, resolve_num_ctx
from ollamapy.supervisor.runner_process import RunnerProcess
from ollamapy.supervisor.scheduler import LoadRequest

__all__ = ["PreparedRequest", "RunnerStarter", "prepare_load"]

log = logging.getLogger("ollamapy.server")


@dataclass(frozen=True)
class PreparedRequest:
    """What a handler needs to run one request on a model."""

    load: LoadRequest
    sampling: SamplingOptions


def prepare_load(model: Model, request_options: dict[str, Any] | None) -> PreparedRequest:
    """Merge default → model params → request options and resolve load-time values."""
    options, ignored = Options.from_layers(model.parameters, request_options or {})
    for name in ignored:
        log.warning("invalid option provided option=%s", name)
    if model.gguf is None:
        raise OllamapyError(f"model '{model.short_name}' has no GGUF weights")
    inventory = probe_inventory()
    num_ctx = resolve_num_ctx(model.gguf, options.load.num_ctx, inventory)
    load = options.load.model_copy(update={"num_ctx": num_ctx})
    num_parallel = _num_parallel_choices.get(model, load, inventory)
    return PreparedRequest(load=LoadRequest(model=model, options=load, num_parallel=num_parallel), sampling=options.sampling)


class _NumParallelChoices:
    """``num_parallel`` per model and load options, planned once per probed inventory.

    OLLAMA_NUM_PARALLEL: an explicit value as given; 0 = automatic: 4 when the KV cache
    for 4 sequences fits beside the model as well as for 1 (no layer leaves the GPU, or
    system memory holds it), else 1 (Ollama's default is always 1). Embedding-only models
    serve one request at a time.

    The automatic choice plans a placement twice, which every request would otherwise
    repeat for a model that is already loaded. Its inputs are the model's files, the load
    options, the placement settings and the inventory; the inventory changes only when
    it is probed again (before each load), and then every remembered choice is dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inventory: Inventory | None = None
        self._choices: dict[tuple[object, ...], int] = {}

    def get(self, model: Model, load: LoadOptions, inventory: Inventory) -> int:
        setting = envconfig.num_parallel()
        if _is_embedding_only(model):
            return 1
        if setting > 0:
            return setting
        key = (
            model.model_path, tuple(model.projector_paths), load.model_dump_json(),
            envconfig.kv_cache_type(), envconfig.flash_attention(), envconfig.gpu_overhead(), envconfig.sched_spread(),
        )
        with self._lock:
            if self._inventory is not inventory:
                self._inventory, self._choices = inventory, {}
            choice = self._choices.get(key)
        if choice is None:
            choice = _automatic_num_parallel(model, load, inventory)
            with self._lock:
                if self._inventory is inventory:
                    self._choices[key] = choice
        return choice


def _automatic_num_parallel(model: Model, load: LoadOptions, inventory: Inventory) -> int:
    assert model.gguf is not None  # prepare_load refused a model without weights
    try:
        one, four = (placement_for(model.gguf, load, n, inventory, projector_paths=model.projector_paths) for n in (1, 4))
    except OllamapyError:
        return 1  # too big for 4 (or even 1): the load reports it
    return 4 if four.n_gpu_layers >= one.n_gpu_layers else 1


_num_parallel_choices = _NumParallelChoices()


def _is_embedding_only(model: Model) -> bool:
    caps = model.capabilities()
    return "embedding" in caps and "completion" not in caps


class RunnerStarter:
    """The scheduler's runner factory and ``LoadPlanner``: plan a load on the devices
    probed now, start a runner process there and wait until it serves.

    With a ``cpu_backend`` probe, a runner starts once the probe is done, with its choice
    of CPU variant (without one, or when it failed, the runner chooses by itself).
    """

    def __init__(self, socket_dir: Path, *, load_timeout: float, cpu_backend: CpuBackendProbe | None = None) -> None:
        self.socket_dir = socket_dir
        self.load_timeout = load_timeout
        self.cpu_backend = cpu_backend

    def load_spec(self, request: LoadRequest, placement: Placement) -> LoadSpec:
        """The one place load options and a placement become the runner's llama.cpp parameters."""
        opts: LoadOptions = request.options
        model = request.model
        num_ctx = placement.num_ctx * placement.num_parallel
        embedding = _is_embedding_only(model)
        return LoadSpec(
            model_path=str(model.model_path),
            adapters=[str(p) for p in model.adapter_paths],
            projectors=[str(p) for p in model.projector_paths],
            num_ctx=num_ctx,
            # An embedding input must fit in one batch: embedding models batch the whole context.
            num_batch=num_ctx if embedding else opts.num_batch,
            use_mmap=True if opts.use_mmap is None else opts.use_mmap,
            use_mlock=opts.use_mlock,
            num_thread=opts.num_thread,
            embedding=embedding,
            num_parallel=placement.num_parallel,
            **placement.load_spec_fields(),
        )

    @staticmethod
    def place(request: LoadRequest, loaded: Sequence[Placement] = ()) -> Placement:
        """Probe free memory now, take out what the ``loaded`` runners' plans hold, and
        choose devices (blocking: run in a thread)."""
        assert request.model.gguf is not None  # prepare_load refused a model without weights
        inventory = reserve_loaded(probe_inventory(refresh=True), loaded)
        return placement_for(request.model.gguf, request.options, request.num_parallel, inventory, projector_paths=request.model.projector_paths)

    async def plan(self, request: LoadRequest, loaded: Sequence[Placement]) -> Placement:
        return await asyncio.to_thread(self.place, request, loaded)

    async def gpu_count(self) -> int:
        return len((await asyncio.to_thread(probe_inventory)).gpus)

    async def __call__(self, request: LoadRequest) -> RunnerProcess:
        placement = request.placement or await self.plan(request, ())
        cpu_backend = await self.cpu_backend.result() if self.cpu_backend is not None else None
        if cpu_backend is not None:
            placement = cpu_backend.apply(placement)
        log.info("placing %s: %s", request.model.short_name, placement.reason)
        spec = self.load_spec(request, placement)
        runner = await RunnerProcess.start(
            spec, model_name=request.model.short_name, env=placement.env, socket_dir=self.socket_dir, placement=placement
        )
        try:
            await runner.wait_until_ready(self.load_timeout)
        except BaseException:
            await runner.close()
            raise
        return runner
