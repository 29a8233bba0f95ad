"""Turn a ``LoadSpec`` into a loaded llama.cpp model and context (the only place that does).

The runner drives llama.cpp's C API directly rather than ``llama_cpp.Llama``: the batched
engine needs a context with several sequences (``n_seq_max``, one KV stream each), which
``Llama`` cannot create, and nothing else of ``Llama`` is used. The
mapping from Ollama's load-time options to llama.cpp's parameter structs is kept in two
small functions so it can be read (and tested) in one place.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from llama_cpp import llama_cpp as llama_lib

from ollamapy.api.runner_protocol import LoadSpec, SplitMode
from ollamapy.kv_cache import KV_CACHE_TYPES, KV_FALLBACK_WARNING, effective_kv_cache_type
from ollamapy.store.gguf import read_gguf

from .backends import load_backends
from .vision import Vision, load_vision

__all__ = [
    "LoadedModel",
    "apply_adapters",
    "context_params",
    "default_threads",
    "install_llama_log",
    "load_model",
    "model_params",
]

log = logging.getLogger("ollamapy.runner")

_SPLIT_MODES: dict[SplitMode, int] = {
    "none": llama_lib.LLAMA_SPLIT_MODE_NONE,
    "layer": llama_lib.LLAMA_SPLIT_MODE_LAYER,
    "row": llama_lib.LLAMA_SPLIT_MODE_ROW,
}

_ALL_LAYERS = 0x7FFFFFFF  # llama.cpp clamps to the model's layer count

_GGML_LOG_DEBUG = 1  # ggml.h (llama-cpp-python's _logger.py has an outdated table)
_GGML_LOG_CONT = 5
_last_log_level = 0


@llama_lib.llama_log_callback
def _llama_log(level: int, text: bytes, _data: ctypes.c_void_p) -> None:
    """llama.cpp's log to stderr without its debug level, which would log every request."""
    global _last_log_level
    if level != _GGML_LOG_CONT:
        _last_log_level = level
    if _last_log_level != _GGML_LOG_DEBUG:
        sys.stderr.write(text.decode("utf-8", errors="replace"))
        sys.stderr.flush()


def install_llama_log() -> None:
    """Send llama.cpp's log (buffer sizes, errors) to stderr, where the front parses it."""
    llama_lib.llama_log_set(_llama_log, ctypes.c_void_p(0))


def default_threads() -> int:
    """Threads when ``num_thread`` is 0: one per physical core this process may run on.

    Ollama's choice (a second hyper-thread per core only slows llama.cpp's kernels down),
    but counted within the CPU affinity mask, so a container pinned to a few CPUs does not
    oversubscribe them. llama-cpp-python's own default, half the logical CPUs, would use
    one thread on a 2-core machine and halve batched decoding there.
    """
    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return max(1, min(physical, round(allowed * physical / logical)))


@dataclass
class _Keep:
    """ctypes objects llama.cpp points into; they must outlive the load call."""

    objects: list[Any] = field(default_factory=list)


def model_params(spec: LoadSpec, progress: Callable[[float], bool] | None = None, keep: _Keep | None = None) -> llama_lib.llama_model_params:
    """``llama_model_params`` for the spec: placement, memory mapping and load progress."""
    keep = keep if keep is not None else _Keep()
    params = llama_lib.llama_model_default_params()
    params.n_gpu_layers = _ALL_LAYERS if spec.n_gpu_layers < 0 else spec.n_gpu_layers
    params.split_mode = _SPLIT_MODES[spec.split_mode]
    params.main_gpu = spec.main_gpu
    # No repacked CPU weights: their matrix-matrix kernels round differently from the
    # matrix-vector ones, so a sequence's greedy output would depend on how many others
    # share its batch. The plain kernels are batch-invariant (and, measured on Gemma 3
    # 270M, as fast for decoding).
    params.use_extra_bufts = False
    if spec.tensor_split:
        split = (ctypes.c_float * llama_lib.llama_max_devices())(*spec.tensor_split)
        keep.objects.append(split)
        params.tensor_split = split
    if spec.use_mmap and spec.use_mlock:
        params.load_mode = llama_lib.LLAMA_LOAD_MODE_MMAP_MLOCK
    elif spec.use_mlock:
        params.load_mode = llama_lib.LLAMA_LOAD_MODE_MLOCK
    elif spec.use_mmap:
        params.load_mode = llama_lib.LLAMA_LOAD_MODE_MMAP
    else:
        params.load_mode = llama_lib.LLAMA_LOAD_MODE_NONE
    if progress is not None:

        @llama_lib.llama_progress_callback
        def on_progress(fraction: float, _data: ctypes.c_void_p) -> bool:
            return progress(fraction)

        keep.objects.append(on_progress)
        params.progress_callback = on_progress
    return params


def context_params(spec: LoadSpec) -> llama_lib.llama_context_params:
    """``llama_context_params`` for the spec.

    The ``num_ctx`` KV cells are split into one stream per sequence (``num_parallel`` of
    them, not one unified cache): a sequence then only ever attends over its own cells in
    its own order, so its logits are the same bits whoever else is in the batch (over a
    unified cache, other sequences' cells change the summation order and greedy output
    changed on Gemma 3 270M), at no measured cost in batched throughput.
    """
    info = read_gguf(spec.model_path)
    kv_type = effective_kv_cache_type(spec.kv_cache_type, spec.flash_attn, info)
    if kv_type != spec.kv_cache_type:
        log.warning(KV_FALLBACK_WARNING, spec.kv_cache_type, kv_type)
    params = llama_lib.llama_context_default_params()
    params.n_ctx = spec.num_ctx
    params.n_batch = spec.num_batch
    # one physical batch per logical batch: non-causal embedding models need the whole
    # input in one ubatch, and Ollama runs llama.cpp this way too.
    params.n_ubatch = spec.num_batch
    params.n_seq_max = spec.num_parallel
    params.kv_unified = False
    params.flash_attn_type = llama_lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if spec.flash_attn else llama_lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.type_k = params.type_v = int(KV_CACHE_TYPES[kv_type])  # ggml's type numbers
    # Any runner can embed; mean pooling when the GGUF declares none (llama.cpp fixes
    # pooling when the context is made, and without it there is no sequence embedding).
    params.embeddings = spec.embedding
    params.pooling_type = llama_lib.LLAMA_POOLING_TYPE_MEAN if info.pooling_type is None else info.pooling_type
    params.n_threads = params.n_threads_batch = spec.num_thread if spec.num_thread > 0 else default_threads()
    params.no_perf = True
    return params


def apply_adapters(model: llama_lib.llama_model_p, ctx: llama_lib.llama_context_p, paths: list[str]) -> list[Any]:
    """Apply LoRA adapters (scale 1.0) to the context; returns the handles to keep alive."""
    if not paths:
        return []
    handles = []
    for path in paths:
        handle = llama_lib.llama_adapter_lora_init(model, path.encode())
        if not handle:
            raise RuntimeError(f"error: failed to load adapter {path}")
        handles.append(handle)
    array = (llama_lib.llama_adapter_lora_p_ctypes * len(handles))(*handles)
    scales = (ctypes.c_float * len(handles))(*([1.0] * len(handles)))
    if llama_lib.llama_set_adapters_lora(ctx, array, len(handles), scales) != 0:
        raise RuntimeError("error: failed to apply adapters")
    return handles


@dataclass
class LoadedModel:
    """A model, its context and what hangs off them; ``close`` frees them."""

    model: llama_lib.llama_model_p
    ctx: llama_lib.llama_context_p
    vocab: llama_lib.llama_vocab_p
    memory: llama_lib.llama_memory_t | None
    """The KV cache, or None for models without one (non-causal encoders)."""
    adapters: list[Any]
    vision: Vision | None = None
    """The projector (mmproj) that turns images into embeddings, when the model has one."""

    def close(self) -> None:
        """Free the projector, the context, then the model; the handles become NULL, so a
        second close is a no-op."""
        if self.vision is not None:
            self.vision.close()
            self.vision = None
        if self.ctx:
            llama_lib.llama_free(self.ctx)
            self.ctx = llama_lib.llama_context_p(0)
        if self.model:
            llama_lib.llama_model_free(self.model)
            self.model = llama_lib.llama_model_p(0)


def load_model(spec: LoadSpec, progress: Callable[[float], bool]) -> LoadedModel:
    """Load the model with its adapters and projector; ``progress`` returning False aborts the load."""
    install_llama_log()
    load_backends()
    llama_lib.llama_backend_init()
    if not os.path.exists(spec.model_path):
        raise RuntimeError(f"model path does not exist: {spec.model_path}")
    keep = _Keep()
    model = llama_lib.llama_model_load_from_file(spec.model_path.encode(), model_params(spec, progress, keep))
    if not model:
        raise RuntimeError(f"error loading model {spec.model_path}")
    ctx = llama_lib.llama_init_from_model(model, context_params(spec))
    if not ctx:
        llama_lib.llama_model_free(model)
        raise RuntimeError(f"error: failed to create a context for {spec.model_path}")
    memory = llama_lib.llama_get_memory(ctx) or None
    loaded = LoadedModel(model=model, ctx=ctx, vocab=llama_lib.llama_model_get_vocab(model), memory=memory, adapters=[])
    try:
        loaded.adapters = apply_adapters(model, ctx, spec.adapters)
        if spec.projectors:
            threads = spec.num_thread if spec.num_thread > 0 else default_threads()
            loaded.vision = load_vision(model, spec.projectors[0], threads, spec.n_gpu_layers != 0, _llama_log)
    except BaseException:
        loaded.close()
        raise
    return loaded
