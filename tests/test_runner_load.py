"""The one mapping from a LoadSpec to llama_cpp.Llama keyword arguments."""

from __future__ import annotations

from pathlib import Path

from llama_cpp import llama_cpp as llama_lib

from ollamapy.runner.load import declared_pooling_type, llama_kwargs
from ollamapy.runner_protocol import LoadSpec
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf


def test_defaults_map_to_a_cpu_load_with_mean_pooling_fallback(tiny_gguf: Path) -> None:
    kwargs = llama_kwargs(LoadSpec(model_path=str(tiny_gguf)))
    assert kwargs["n_ctx"] == 4096 and kwargs["n_batch"] == kwargs["n_ubatch"] == 512
    assert kwargs["n_gpu_layers"] == 0 and kwargs["use_mmap"] and not kwargs["use_mlock"]
    assert kwargs["split_mode"] == llama_lib.LLAMA_SPLIT_MODE_LAYER
    assert kwargs["type_k"] == kwargs["type_v"] == llama_lib.GGML_TYPE_F16
    assert declared_pooling_type(str(tiny_gguf)) is None
    assert kwargs["pooling_type"] == llama_lib.LLAMA_POOLING_TYPE_MEAN
    assert "n_threads" not in kwargs  # llama-cpp-python picks


def test_every_load_option_reaches_llama(tiny_gguf: Path) -> None:
    spec = LoadSpec(
        model_path=str(tiny_gguf), num_ctx=8192, num_batch=256, n_gpu_layers=-1, main_gpu=1, split_mode="row",
        tensor_split=[0.25, 0.75], use_mmap=False, use_mlock=True, num_thread=3, flash_attn=True,
        kv_cache_type="q8_0", embedding=True, seed=7,
    )
    kwargs = llama_kwargs(spec)
    assert (kwargs["n_ctx"], kwargs["n_batch"], kwargs["n_gpu_layers"], kwargs["main_gpu"]) == (8192, 256, -1, 1)
    assert kwargs["split_mode"] == llama_lib.LLAMA_SPLIT_MODE_ROW and kwargs["tensor_split"] == [0.25, 0.75]
    assert (kwargs["use_mmap"], kwargs["use_mlock"], kwargs["n_threads"], kwargs["n_threads_batch"]) == (False, True, 3, 3)
    assert kwargs["flash_attn"] and kwargs["type_k"] == kwargs["type_v"] == llama_lib.GGML_TYPE_Q8_0
    assert kwargs["embedding"] and kwargs["seed"] == 7


def test_quantized_kv_cache_needs_flash_attention(tiny_gguf: Path) -> None:
    kwargs = llama_kwargs(LoadSpec(model_path=str(tiny_gguf), kv_cache_type="q4_0", flash_attn=False))
    assert kwargs["type_k"] == kwargs["type_v"] == llama_lib.GGML_TYPE_F16


def test_declared_pooling_is_kept(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "cls.gguf", TinyModelSpec(pooling_type=llama_lib.LLAMA_POOLING_TYPE_CLS))
    assert declared_pooling_type(str(path)) == llama_lib.LLAMA_POOLING_TYPE_CLS
    assert llama_kwargs(LoadSpec(model_path=str(path)))["pooling_type"] == llama_lib.LLAMA_POOLING_TYPE_CLS
