"""Which KV cache type a load really gets: one rule for the front's memory estimate and
the runner's context, so ``/api/ps`` reports what llama.cpp allocates."""

from __future__ import annotations

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ollamapy.api.runner_protocol import KvCacheType
from ollamapy.store.gguf import GGUFInfo

__all__ = ["KV_CACHE_TYPES", "KV_FALLBACK_WARNING", "effective_kv_cache_type"]

KV_CACHE_TYPES: dict[KvCacheType, GGMLQuantizationType] = {
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
    "q4_0": GGMLQuantizationType.Q4_0,
}
"""The types ``OLLAMA_KV_CACHE_TYPE`` may name; the values are also ggml's type numbers."""

KV_FALLBACK_WARNING = "kv cache type %s not supported by this model or without flash attention, using %s"
"""Logged (requested, effective) where a load gets another type than it asked for."""


def effective_kv_cache_type(requested: str, flash_attention: bool, info: GGUFInfo) -> KvCacheType:
    """The type ``requested`` (``OLLAMA_KV_CACHE_TYPE``) becomes for this model.

    Unknown or empty values mean f16, as Ollama treats them. A quantized type needs flash
    attention (llama.cpp refuses a quantized V cache without it) and heads whose key and
    value sizes are whole blocks of the type (llama.cpp refuses the context otherwise);
    the load falls back to f16 instead of failing.
    """
    kv_type: KvCacheType = requested if requested in KV_CACHE_TYPES else "f16"
    if kv_type == "f16" or not flash_attention:
        return "f16"
    block = GGML_QUANT_SIZES[KV_CACHE_TYPES[kv_type]][0]
    if info.key_length % block or info.value_length % block:
        return "f16"
    return kv_type
