"""Write a tiny random-weight llama GGUF that llama.cpp loads and runs in milliseconds.

The serving tests run real runner processes on it. Weights are random (gibberish output),
deterministic for a fixed seed. ``output.weight`` is scaled up so greedy decoding has no
near-ties in its logits, which keeps outputs identical between batched and single runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, PoolingType, TokenType

__all__ = ["NORMAL_PIECES", "TinyModelSpec", "write_tiny_gguf", "write_tiny_lora"]

NORMAL_PIECES = ["▁the", "▁sky", "▁is", "▁blue", "▁hello", "▁world", "▁a", "▁an", "▁and", "."]


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny model; defaults give a ~500 KB F32 file."""

    embedding_length: int = 64
    block_count: int = 2
    feed_forward_length: int = 128
    head_count: int = 4
    context_length: int = 4096
    seed: int = 0
    output_scale: float = 4.0
    pooling_type: int | None = None  # set (e.g. 1 = mean) to make an embedding model
    name: str = "tiny-llama"
    chat_template: str | None = None
    tensor_type: GGMLQuantizationType = GGMLQuantizationType.F32
    vision_block_count: int | None = None
    """Set to write ``llama.vision.block_count``, the key that marks Ollama's single-file
    vision models (encoder inside the model GGUF, no projector). Only the key: llama.cpp
    refuses a file with tensors it does not use, and the key is what marks the model."""


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    tokens += NORMAL_PIECES
    types += [TokenType.NORMAL] * len(NORMAL_PIECES)
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(len(NORMAL_PIECES))]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(path: Path | str, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write the model to ``path`` and return it."""
    path = Path(path)
    rng = np.random.default_rng(spec.seed)
    tokens, scores, types = _vocab()
    n_vocab, n_embd, n_ff = len(tokens), spec.embedding_length, spec.feed_forward_length

    w = GGUFWriter(str(path), "llama")
    w.add_name(spec.name)
    w.add_file_type(LlamaFileType.ALL_F32 if spec.tensor_type == GGMLQuantizationType.F32 else LlamaFileType.MOSTLY_F16)
    w.add_context_length(spec.context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(spec.block_count)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(spec.head_count)
    w.add_head_count_kv(spec.head_count)
    w.add_rope_dimension_count(n_embd // spec.head_count)
    w.add_layer_norm_rms_eps(1e-5)
    if spec.pooling_type is not None:
        w.add_pooling_type(PoolingType(spec.pooling_type))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    if spec.chat_template is not None:
        w.add_chat_template(spec.chat_template)
    if spec.vision_block_count is not None:
        w.add_uint32("llama.vision.block_count", spec.vision_block_count)

    def normal(*shape: int, scale: float = 0.1) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def add(name: str, array: np.ndarray) -> None:
        if spec.tensor_type == GGMLQuantizationType.F16 and array.ndim == 2:
            array = array.astype(np.float16)
        w.add_tensor(name, array)

    add("token_embd.weight", normal(n_vocab, n_embd))
    add("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    add("output.weight", normal(n_vocab, n_embd) * spec.output_scale)
    for i in range(spec.block_count):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            add(p + t + ".weight", normal(n_embd, n_embd))
        add(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        add(p + "ffn_gate.weight", normal(n_ff, n_embd))
        add(p + "ffn_up.weight", normal(n_ff, n_embd))
        add(p + "ffn_down.weight", normal(n_embd, n_ff))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_tiny_lora(path: Path | str, spec: TinyModelSpec = TinyModelSpec(), rank: int = 4, seed: int = 1) -> Path:
    """Write a LoRA adapter GGUF for the tiny model that visibly changes its greedy output."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    n_embd = spec.embedding_length
    w = GGUFWriter(str(path), "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(rank))
    for i in range(spec.block_count):
        for t in ("attn_q", "attn_v"):
            w.add_tensor(f"blk.{i}.{t}.weight.lora_a", (rng.standard_normal((rank, n_embd)) * 0.5).astype(np.float32))
            w.add_tensor(f"blk.{i}.{t}.weight.lora_b", (rng.standard_normal((n_embd, rank)) * 0.5).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
