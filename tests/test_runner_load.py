"""The one mapping from a LoadSpec to llama.cpp's model and context parameters."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from llama_cpp import llama_cpp as llama_lib

from ollamapy.api.runner_protocol import LoadSpec
from ollamapy.runner.load import context_params, default_threads, model_params
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf


def test_defaults_map_to_a_cpu_load_with_mean_pooling_fallback(tiny_gguf: Path) -> None:
    spec = LoadSpec(model_path=str(tiny_gguf))
    model, ctx = model_params(spec), context_params(spec)
    assert model.n_gpu_layers == 0 and model.load_mode == llama_lib.LLAMA_LOAD_MODE_MMAP
    assert model.split_mode == llama_lib.LLAMA_SPLIT_MODE_LAYER
    assert not model.use_extra_bufts  # batch-invariant kernels
    assert ctx.n_ctx == 4096 and ctx.n_batch == ctx.n_ubatch == 512
    assert ctx.n_seq_max == 1 and not ctx.kv_unified  # one KV stream per sequence
    assert ctx.type_k == ctx.type_v == llama_lib.GGML_TYPE_F16
    assert ctx.flash_attn_type == llama_lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
    assert ctx.pooling_type == llama_lib.LLAMA_POOLING_TYPE_MEAN
    assert ctx.n_threads == ctx.n_threads_batch == default_threads()
    assert not ctx.embeddings


def test_flash_attention_keeps_one_kv_stream_per_sequence(tiny_gguf: Path) -> None:
    ctx = context_params(LoadSpec(model_path=str(tiny_gguf), num_parallel=4, flash_attn=True))
    assert ctx.flash_attn_type == llama_lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
    assert ctx.n_seq_max == 4 and not ctx.kv_unified


@pytest.mark.parametrize(
    ("logical_cpus", "physical", "allowed", "threads"),
    [
        (2, 2, 2, 2),  # this machine: two cores, no hyper-threads
        (16, 8, 16, 8),  # hyper-threads are not counted
        (16, 8, 4, 2),  # a container pinned to 4 of the 16 CPUs
        (16, 8, 1, 1),
        (4, None, 4, 4),  # physical cores unknown
    ],
)
def test_default_threads_are_the_physical_cores_we_may_run_on(
    monkeypatch: pytest.MonkeyPatch, logical_cpus: int, physical: int | None, allowed: int, threads: int
) -> None:
    def cpu_count(logical: bool = True) -> int | None:
        return logical_cpus if logical else physical

    monkeypatch.setattr("psutil.cpu_count", cpu_count)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(allowed)))
    assert default_threads() == threads


def test_every_load_option_reaches_llama_cpp(tmp_path: Path) -> None:
    two_heads = write_tiny_gguf(tmp_path / "heads-of-32.gguf", TinyModelSpec(head_count=2))  # q8_0 blocks fit
    spec = LoadSpec(
        model_path=str(two_heads), num_ctx=8192, num_parallel=4, num_batch=256, n_gpu_layers=-1, main_gpu=1,
        split_mode="row", tensor_split=[0.25, 0.75], use_mmap=False, use_mlock=True, num_thread=3, flash_attn=True,
        kv_cache_type="q8_0", embedding=True, seed=7,
    )
    model, ctx = model_params(spec), context_params(spec)
    assert model.n_gpu_layers == 0x7FFFFFFF and model.main_gpu == 1
    assert model.split_mode == llama_lib.LLAMA_SPLIT_MODE_ROW
    assert [model.tensor_split[i] for i in range(2)] == [0.25, 0.75]
    assert model.load_mode == llama_lib.LLAMA_LOAD_MODE_MLOCK
    assert (ctx.n_ctx, ctx.n_batch, ctx.n_ubatch, ctx.n_seq_max) == (8192, 256, 256, 4)
    assert (ctx.n_threads, ctx.n_threads_batch) == (3, 3)
    assert ctx.flash_attn_type == llama_lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
    assert ctx.type_k == ctx.type_v == llama_lib.GGML_TYPE_Q8_0
    assert ctx.embeddings


def test_load_progress_reaches_the_callback(tiny_gguf: Path) -> None:
    seen: list[float] = []
    params = model_params(LoadSpec(model_path=str(tiny_gguf)), lambda p: seen.append(p) or True)
    assert params.progress_callback(ctypes.c_float(0.5), None)
    assert seen == [0.5]


def test_quantized_kv_cache_needs_flash_attention(tiny_gguf: Path) -> None:
    ctx = context_params(LoadSpec(model_path=str(tiny_gguf), kv_cache_type="q4_0", flash_attn=False))
    assert ctx.type_k == ctx.type_v == llama_lib.GGML_TYPE_F16


def test_quantized_kv_cache_needs_heads_of_whole_blocks(tiny_gguf: Path) -> None:
    # The tiny model's heads have 16 values; q8_0 and q4_0 blocks have 32.
    ctx = context_params(LoadSpec(model_path=str(tiny_gguf), kv_cache_type="q8_0", flash_attn=True))
    assert ctx.type_k == ctx.type_v == llama_lib.GGML_TYPE_F16


def test_declared_pooling_is_kept(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "cls.gguf", TinyModelSpec(pooling_type=llama_lib.LLAMA_POOLING_TYPE_CLS))
    assert context_params(LoadSpec(model_path=str(path))).pooling_type == llama_lib.LLAMA_POOLING_TYPE_CLS
