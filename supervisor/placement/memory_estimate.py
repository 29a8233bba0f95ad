"""How much memory a model needs, from its GGUF header alone.

Placement needs the need *per piece*: llama.cpp offloads whole layers, so the estimate
keeps weights and KV cache per repeating layer, the output layer (offloaded last, and a
copy of ``token_embd`` when the embeddings are tied), the input tensors that always stay
on the CPU, the compute graph, the host logits buffer and any projector.

The sizes follow llama.cpp's own allocations, checked against the buffer sizes it logs
(``tests/test_memory_estimate.py``):

* weights: the tensors' bytes, as the GGUF header states them;
* KV cache: ``cells × (key_length + value_length) × head_count_kv`` per attention layer
  at the cache type's row size, with cells = ``num_ctx × num_parallel`` padded to 256
  (llama.cpp's padding), of the type ``ollamapy.kv_cache`` says the load gets. Recurrent (SSM) layers keep an f32 state per sequence;
* compute graph: the largest of three phases of the worst-case batch of ``T`` tokens —
  attention (the mask, plus the f32 ``KQ`` scores per head without flash attention),
  feed-forward activations, and the output projection (``T × n_vocab`` f32 logits).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ollamapy.api.runner_protocol import KvCacheType
from ollamapy.kv_cache import KV_CACHE_TYPES, effective_kv_cache_type
from ollamapy.store.gguf import GGUFInfo

__all__ = [
    "GIB",
    "MIB",
    "MINIMUM_MEMORY",
    "MeasuredMemory",
    "MemoryEstimate",
    "estimate_memory",
    "measured_memory",
]

MIB = 1 << 20
GIB = 1 << 30
MINIMUM_MEMORY = 457 * MIB
"""VRAM kept free on every GPU on top of ``OLLAMA_GPU_OVERHEAD`` (Ollama's ``MinimumMemory``)."""

_KV_PAD = 256  # llama.cpp pads the number of KV cells to a multiple of this
_F32 = 4
_LAYER = re.compile(r"blk\.(\d+)\.")
_PROJECTOR_PREFIXES = ("v.", "mm.", "a.")  # vision/audio towers embedded in the model GGUF
_BUFFER_LINE = re.compile(r"(\S+)\s+(model|KV|compute|output|RS) buffer size =\s+([0-9.]+) MiB")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


def _row_bytes(ggml_type: GGMLQuantizationType, n: int) -> int:
    """``ggml_row_size``: bytes of ``n`` elements of a (possibly block-quantized) type."""
    block, size = GGML_QUANT_SIZES[ggml_type]
    return size * math.ceil(n / block)


@dataclass(frozen=True)
class MemoryEstimate:
    """A model's memory need, in bytes, split the way llama.cpp places it.

    ``layer_weights[i]``/``layer_kv[i]`` belong to repeating layer ``i``; llama.cpp's
    layer ``block_count`` is the output layer (``output_gpu_weights`` when offloaded,
    ``output_cpu_weights`` when not). ``input_weights`` (the token embeddings) never leave
    the CPU. ``graph`` is one compute buffer; ``logits`` the host output buffer;
    ``reserve`` what every GPU keeps free (``OLLAMA_GPU_OVERHEAD`` + 457 MiB).
    """

    num_ctx: int
    """Context per sequence."""
    num_parallel: int
    num_batch: int
    """Tokens per worst-case batch (``min(num_batch, num_ctx × num_parallel)``)."""
    kv_cache_type: KvCacheType
    flash_attention: bool
    layer_weights: tuple[int, ...]
    layer_kv: tuple[int, ...]
    input_weights: int
    output_gpu_weights: int
    output_cpu_weights: int
    graph: int
    logits: int
    projector: int
    reserve: int

    @property
    def block_count(self) -> int:
        return len(self.layer_weights)

    @property
    def layers_total(self) -> int:
        """Offloadable layers as llama.cpp counts them: the repeating ones plus the output layer."""
        return self.block_count + 1

    @property
    def weights(self) -> int:
        """Every tensor once (what the weights take when the whole model is on the CPU)."""
        return self.input_weights + sum(self.layer_weights) + self.output_cpu_weights

    @property
    def kv(self) -> int:
        return sum(self.layer_kv)

    def layer_gpu_bytes(self, layer: int) -> int:
        """What llama.cpp layer ``layer`` (``block_count`` = output) takes on a GPU."""
        if layer == self.block_count:
            return self.output_gpu_weights
        return self.layer_weights[layer] + self.layer_kv[layer]

    def layer_cpu_bytes(self, layer: int) -> int:
        """What llama.cpp layer ``layer`` takes when it stays on the CPU."""
        if layer == self.block_count:
            return self.output_cpu_weights
        return self.layer_weights[layer] + self.layer_kv[layer]

    @property
    def full_offload(self) -> int:
        """VRAM for the whole model on one GPU: layers, KV, output layer, graph, projector."""
        return sum(self.layer_gpu_bytes(i) for i in range(self.layers_total)) + self.graph + self.projector

    @property
    def cpu_only(self) -> int:
        """System memory for the whole model on the CPU."""
        return self.weights + self.kv + self.graph + self.logits + self.projector

    def to_json(self) -> dict[str, Any]:
        return {
            "num_ctx": self.num_ctx,
            "num_parallel": self.num_parallel,
            "num_batch": self.num_batch,
            "kv_cache_type": self.kv_cache_type,
            "flash_attention": self.flash_attention,
            "block_count": self.block_count,
            "weights": self.weights,
            "layer_weights": sum(self.layer_weights),
            "input_weights": self.input_weights,
            "output_weights": self.output_gpu_weights,
            "kv": self.kv,
            "graph": self.graph,
            "logits": self.logits,
            "projector": self.projector,
            "reserve": self.reserve,
            "full_offload": self.full_offload,
            "cpu_only": self.cpu_only,
        }


def _vocab_size(info: GGUFInfo) -> int:
    tokens = info.kv.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list) and tokens:
        return len(tokens)
    for tensor in info.tensors:
        if tensor.name in ("output.weight", "token_embd.weight") and len(tensor.shape) == 2:
            return tensor.shape[1]
    return 0


def _split_weights(info: GGUFInfo, block_count: int) -> tuple[list[int], int, int, int, int]:
    """Tensor bytes per layer, input (CPU), output norm, untied output, embedded projector."""
    layers = [0] * block_count
    inputs = output_norm = output = projector = 0
    for tensor in info.tensors:
        match = _LAYER.match(tensor.name)
        if match and int(match.group(1)) < block_count:
            layers[int(match.group(1))] += tensor.n_bytes
        elif tensor.name.startswith(_PROJECTOR_PREFIXES):
            projector += tensor.n_bytes
        elif tensor.name == "output.weight":
            output += tensor.n_bytes
        elif tensor.name.startswith("output"):
            output_norm += tensor.n_bytes
        else:
            inputs += tensor.n_bytes
    return layers, inputs, output_norm, output, projector


def _kv_per_layer(info: GGUFInfo, cells: int, num_parallel: int, kv_type: KvCacheType) -> list[int]:
    """KV cache bytes per layer; recurrent (SSM) layers hold an f32 state per sequence."""
    key_length, value_length = info.key_length, info.value_length
    ggml_type = KV_CACHE_TYPES[kv_type]
    has_attention = f"{info.architecture}.attention.head_count" in info.kv
    head_count_kv = info.per_layer("attention.head_count_kv", default=info.head_count_kv or 0)
    d_conv = int(info.arch_kv("ssm.conv_kernel", 0))
    recurrent = 0
    if d_conv:
        d_inner = int(info.arch_kv("ssm.inner_size", 0))
        d_state = int(info.arch_kv("ssm.state_size", 0))
        n_group = int(info.arch_kv("ssm.group_count", 1))
        per_sequence = (d_conv - 1) * (d_inner + 2 * n_group * d_state) + d_state * d_inner
        recurrent = _F32 * per_sequence * num_parallel
    out = []
    for n_kv in head_count_kv:
        if has_attention and n_kv > 0:
            out.append(cells * (_row_bytes(ggml_type, key_length * n_kv) + _row_bytes(ggml_type, value_length * n_kv)))
        else:
            out.append(recurrent)
    return out


def _graph_bytes(info: GGUFInfo, tokens: int, cells: int, n_vocab: int, flash_attention: bool) -> int:
    """The compute buffer: the largest of the attention, feed-forward and output phases."""
    n_embd = info.embedding_length or 0
    n_head = info.head_count or 1
    n_ff = max(info.per_layer("feed_forward_length") or [0])
    expert_ff = int(info.arch_kv("expert_feed_forward_length", 0)) * int(info.arch_kv("expert_used_count", 0))
    n_ff = max(n_ff, expert_ff)
    if flash_attention:
        mask = 2 * tokens * cells  # f16 mask; the scores never materialise
        attention = mask + _F32 * tokens * 5 * n_embd
    else:
        mask = _F32 * tokens * cells
        attention = mask + _F32 * tokens * (cells * n_head + 7 * n_embd)
    feed_forward = mask + _F32 * tokens * (3 * n_ff + 3 * n_embd)
    output = _F32 * tokens * (n_vocab + 2 * n_embd)
    return max(attention, feed_forward, output)


def estimate_memory(
    info: GGUFInfo,
    *,
    num_ctx: int,
    num_parallel: int = 1,
    num_batch: int = 512,
    kv_cache_type: str = "f16",
    flash_attention: bool = False,
    projector_bytes: int = 0,
    gpu_overhead: int = 0,
) -> MemoryEstimate:
    """Estimate the memory of ``info`` loaded with these settings (pure: no environment).

    ``num_ctx`` is per sequence; the KV cache holds ``num_ctx × num_parallel`` cells, as
    Ollama sizes it for all slots. ``projector_bytes`` is the size of separate projector
    files (vision towers inside the model GGUF are counted automatically);
    ``gpu_overhead`` is ``OLLAMA_GPU_OVERHEAD``.
    """
    block_count = info.block_count or 0
    kv_type = effective_kv_cache_type(kv_cache_type, flash_attention, info)
    total_ctx = max(num_ctx, 1) * max(num_parallel, 1)
    cells = _KV_PAD * math.ceil(total_ctx / _KV_PAD)
    tokens = max(1, min(num_batch, total_ctx))
    n_vocab = _vocab_size(info)
    layers, inputs, output_norm, output, embedded_projector = _split_weights(info, block_count)
    tied = output == 0
    token_embd = next((t.n_bytes for t in info.tensors if t.name == "token_embd.weight"), 0)
    return MemoryEstimate(
        num_ctx=num_ctx,
        num_parallel=max(num_parallel, 1),
        num_batch=tokens,
        kv_cache_type=kv_type,
        flash_attention=flash_attention,
        layer_weights=tuple(layers),
        layer_kv=tuple(_kv_per_layer(info, cells, max(num_parallel, 1), kv_type)),
        input_weights=inputs,
        output_gpu_weights=output_norm + (token_embd if tied else output),
        output_cpu_weights=output_norm + output,
        graph=_graph_bytes(info, tokens, cells, n_vocab, flash_attention),
        logits=_F32 * n_vocab * max(num_parallel, 1),
        projector=projector_bytes + embedded_projector,
        reserve=gpu_overhead + MINIMUM_MEMORY,
    )


@dataclass(frozen=True)
class MeasuredMemory:
    """What llama.cpp logged allocating for a loaded model."""

    size: int
    size_vram: int
    buffers: dict[str, int]
    """Bytes per buffer kind (``model``, ``KV``, ``compute``, ``output``, ``RS``) on all devices."""


def _is_host_buffer(name: str) -> bool:
    return name in ("CPU", "BLAS") or name.startswith("CPU_") or name.endswith("_Host")


def measured_memory(log: str) -> MeasuredMemory | None:
    """``/api/ps`` sizes from a runner's load log, as Ollama derives them; None if nothing was logged.

    Every ``<device> <kind> buffer size = N MiB`` line counts toward ``size``; those not on
    a host buffer (``CPU``, ``CPU_*``, ``BLAS``, ``*_Host``) toward ``size_vram``. When
    llama.cpp reports every layer offloaded, ``size`` is ``size_vram``, as in Ollama.
    """
    size = vram = 0
    buffers: dict[str, int] = {}
    for device, kind, mib in _BUFFER_LINE.findall(log):
        n = round(float(mib) * MIB)
        size += n
        buffers[kind] = buffers.get(kind, 0) + n
        if not _is_host_buffer(device):
            vram += n
    if not buffers:
        return None
    offloaded = _OFFLOADED.search(log)
    if offloaded and offloaded.group(1) == offloaded.group(2):
        size = vram
    return MeasuredMemory(size=size, size_vram=vram, buffers=buffers)
