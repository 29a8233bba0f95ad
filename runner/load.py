"""Turn a ``LoadSpec`` into a loaded ``llama_cpp.Llama`` (the only place that does).

Kept apart from the engine so the mapping from Ollama's load-time options to
llama-cpp-python's keyword arguments can be read (and tested) in one function, as
llama-cpp-python's own ``load_llama_from_model_settings`` does.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp
from llama_cpp import llama_cpp as llama_lib

from ollamapy.gguf_meta import read_gguf
from ollamapy.runner_protocol import KvCacheType, LoadSpec, SplitMode

__all__ = ["apply_adapters", "declared_pooling_type", "install_llama_log", "llama_kwargs", "load_llama"]

log = logging.getLogger("ollamapy.runner")

_KV_TYPES: dict[KvCacheType, int] = {
    "f16": llama_lib.GGML_TYPE_F16,
    "q8_0": llama_lib.GGML_TYPE_Q8_0,
    "q4_0": llama_lib.GGML_TYPE_Q4_0,
}

_SPLIT_MODES: dict[SplitMode, int] = {
    "none": llama_lib.LLAMA_SPLIT_MODE_NONE,
    "layer": llama_lib.LLAMA_SPLIT_MODE_LAYER,
    "row": llama_lib.LLAMA_SPLIT_MODE_ROW,
}


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
    """Replace llama-cpp-python's log callback (which prints debug lines when verbose)."""
    llama_lib.llama_log_set(_llama_log, ctypes.c_void_p(0))


def declared_pooling_type(model_path: str) -> int | None:
    """The ``<arch>.pooling_type`` the GGUF declares, or None.

    Read before the context exists because llama.cpp fixes pooling at context creation and
    a model without the key would get no pooling at all (no sequence embedding).
    """
    return read_gguf(model_path).pooling_type


def llama_kwargs(spec: LoadSpec) -> dict[str, Any]:
    """Map the load spec to ``llama_cpp.Llama(**kwargs)``; adapters are applied afterwards."""
    kv_type = spec.kv_cache_type
    if kv_type != "f16" and not spec.flash_attn:
        # llama.cpp refuses a quantized V cache without flash attention; Ollama falls back too.
        log.warning("kv cache type %s needs flash attention, using f16", kv_type)
        kv_type = "f16"
    declared = declared_pooling_type(spec.model_path)
    kwargs: dict[str, Any] = {
        "model_path": spec.model_path,
        # placement
        "n_gpu_layers": spec.n_gpu_layers,
        "main_gpu": spec.main_gpu,
        "split_mode": _SPLIT_MODES[spec.split_mode],
        "tensor_split": spec.tensor_split,
        # memory
        "use_mmap": spec.use_mmap,
        "use_mlock": spec.use_mlock,
        # context
        "n_ctx": spec.num_ctx,
        "n_batch": spec.num_batch,
        # one physical batch per logical batch: non-causal embedding models need the whole
        # input in one ubatch, and Ollama runs llama.cpp this way too.
        "n_ubatch": spec.num_batch,
        "flash_attn": spec.flash_attn,
        "type_k": _KV_TYPES[kv_type],
        "type_v": _KV_TYPES[kv_type],
        # embeddings: any runner can embed; mean pooling when the GGUF declares none
        "embedding": spec.embedding,
        "pooling_type": llama_lib.LLAMA_POOLING_TYPE_MEAN if declared is None else declared,
        # sampling default
        "seed": spec.seed & 0xFFFFFFFF,
        # llama.cpp's log (buffer sizes, errors) goes to stderr for the front to parse
        "verbose": True,
    }
    if spec.num_thread > 0:
        kwargs["n_threads"] = spec.num_thread
        kwargs["n_threads_batch"] = spec.num_thread
    return kwargs


@contextlib.contextmanager
def _load_progress(callback: Callable[[float], bool]) -> Iterator[None]:
    """Route llama.cpp's model-load progress to ``callback`` while a Llama is constructed.

    ``Llama.__init__`` takes no progress callback, but it builds its model params from
    ``llama_model_default_params()``; wrapping that function for the duration of the load is
    the one seam that reaches ``llama_model_params.progress_callback``.
    """
    original = llama_lib.llama_model_default_params

    @llama_lib.llama_progress_callback
    def on_progress(progress: float, _data: ctypes.c_void_p) -> bool:
        return callback(progress)

    def with_progress() -> llama_lib.llama_model_params:
        params = original()
        params.progress_callback = on_progress
        return params

    llama_lib.llama_model_default_params = with_progress
    try:
        yield
    finally:
        llama_lib.llama_model_default_params = original


def apply_adapters(llm: llama_cpp.Llama, paths: list[str]) -> list[Any]:
    """Apply LoRA adapters (scale 1.0) to the context; returns the handles to keep alive.

    Done with the low-level API because ``Llama(lora_path=…)`` takes one adapter only and
    turns mmap off.
    """
    if not paths:
        return []
    handles = []
    for path in paths:
        handle = llama_lib.llama_adapter_lora_init(llm.model, path.encode())
        if not handle:
            raise RuntimeError(f"error: failed to load adapter {path}")
        handles.append(handle)
    array = (llama_lib.llama_adapter_lora_p_ctypes * len(handles))(*handles)
    scales = (ctypes.c_float * len(handles))(*([1.0] * len(handles)))
    if llama_lib.llama_set_adapters_lora(llm.ctx, array, len(handles), scales) != 0:
        raise RuntimeError("error: failed to apply adapters")
    return handles


def load_llama(spec: LoadSpec, progress: Callable[[float], bool]) -> tuple[llama_cpp.Llama, list[Any]]:
    """Load the model with its adapters; ``progress`` returning False aborts the load."""
    install_llama_log()
    with _load_progress(progress):
        llm = llama_cpp.Llama(**llama_kwargs(spec))
    return llm, apply_adapters(llm, spec.adapters)
