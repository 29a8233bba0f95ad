"""From a request to a runner: option merging, num_ctx resolution, and starting runners.

Handlers call ``prepare_load`` to turn a model plus request options into the scheduler's
``LoadRequest`` (and the sampling options for the runner), and the scheduler calls a
``RunnerStarter`` to start a runner process for a ``LoadRequest``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamapy import envconfig
from ollamapy.model import Model
from ollamapy.options import LoadOptions, Options, SamplingOptions
from ollamapy.runner_protocol import LoadSpec
from ollamapy.supervisor.runner_process import RunnerProcess
from ollamapy.supervisor.scheduler import LoadRequest

__all__ = ["PreparedRequest", "prepare_load", "resolve_num_ctx", "RunnerStarter", "default_context_length"]

log = logging.getLogger("ollamapy.server")

_GIB = 1 << 30


def default_context_length(total_vram: int) -> int:
    """Ollama's VRAM tiers (spec §4.6): ≥47 GiB → 262144, ≥23 GiB → 32768, else 4096."""
    if total_vram >= 47 * _GIB:
        return 262144
    if total_vram >= 23 * _GIB:
        return 32768
    return 4096


def resolve_num_ctx(requested: int | None, trained: int | None, total_vram: int = 0) -> int:
    """Request/model ``num_ctx``, else ``OLLAMA_CONTEXT_LENGTH``, else the VRAM tier;
    clamped to the model's trained context and to at least 4."""
    num_ctx = requested or envconfig.context_length() or default_context_length(total_vram)
    if trained:
        num_ctx = min(num_ctx, trained)
    return max(num_ctx, 4)


@dataclass(frozen=True)
class PreparedRequest:
    """What a handler needs to run one request on a model."""

    load: LoadRequest
    sampling: SamplingOptions


def prepare_load(model: Model, request_options: dict[str, Any] | None, *, total_vram: int = 0) -> PreparedRequest:
    """Merge default → model params → request options and resolve load-time values."""
    options, ignored = Options.from_layers(model.parameters, request_options or {})
    for name in ignored:
        log.warning("invalid option provided option=%s", name)
    trained = model.gguf.context_length if model.gguf else None
    load = options.load.model_copy(update={"num_ctx": resolve_num_ctx(options.load.num_ctx, trained, total_vram)})
    return PreparedRequest(load=LoadRequest(model=model, options=load, num_parallel=1), sampling=options.sampling)


def _is_embedding_only(model: Model) -> bool:
    caps = model.capabilities()
    return "embedding" in caps and "completion" not in caps


class RunnerStarter:
    """The scheduler's runner factory: start a runner process and wait until it serves."""

    def __init__(self, socket_dir: Path, *, load_timeout: float) -> None:
        self.socket_dir = socket_dir
        self.load_timeout = load_timeout

    def load_spec(self, request: LoadRequest) -> LoadSpec:
        """The one place load options become the runner's llama.cpp parameters."""
        opts: LoadOptions = request.options
        model = request.model
        flash = envconfig.flash_attention()
        kv_type = envconfig.kv_cache_type() or "f16"
        if kv_type not in ("f16", "q8_0", "q4_0"):
            log.warning("unsupported OLLAMA_KV_CACHE_TYPE %r, using f16", kv_type)
            kv_type = "f16"
        num_ctx = opts.num_ctx or 4096
        embedding = _is_embedding_only(model)
        return LoadSpec(
            model_path=str(model.model_path),
            adapters=[str(p) for p in model.adapter_paths],
            num_ctx=num_ctx,
            # An embedding input must fit in one batch: embedding models batch the whole context.
            num_batch=num_ctx if embedding else opts.num_batch,
            n_gpu_layers=max(opts.num_gpu, 0),
            main_gpu=opts.main_gpu or 0,
            use_mmap=True if opts.use_mmap is None else opts.use_mmap,
            use_mlock=opts.use_mlock,
            num_thread=opts.num_thread,
            flash_attn=bool(flash),
            kv_cache_type=kv_type,  # type: ignore[arg-type]
            embedding=embedding,
        )

    async def __call__(self, request: LoadRequest) -> RunnerProcess:
        spec = self.load_spec(request)
        runner = await RunnerProcess.start(spec, model_name=request.model.short_name, socket_dir=self.socket_dir)
        try:
            await runner.wait_until_ready(self.load_timeout)
        except BaseException:
            await runner.close()
            raise
        return runner
