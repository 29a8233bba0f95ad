"""Write a tiny vision model: the tiny text GGUF plus a random-weight LLaVA-style projector.

No vision model small enough for the test suite ships on PyPI, so the serving tests make
their own. The projector is llama.cpp's ``mlp`` type (a CLIP-style ViT tower, then two
linear layers with GELU between them), the type of the original LLaVA projectors, which
mtmd loads for any text model whose ``n_embd`` equals the projector's output width. A
28 × 28 image with 14 px patches gives 4 image tokens, so encoding takes about a
millisecond on a CPU. The projector's first linear layer is scaled up so different images
give clearly different embeddings (and so different logits) in a random model.

``tiny_png`` writes small solid or patterned PNGs without an imaging library, for the
tests to send.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from .tiny_gguf import TinyModelSpec, write_tiny_gguf

__all__ = ["TinyProjectorSpec", "tiny_png", "write_tiny_projector", "write_tiny_vision_model"]


@dataclass(frozen=True)
class TinyProjectorSpec:
    """Shape of the tiny projector; ``projection_dim`` must be the text model's ``n_embd``."""

    image_size: int = 28
    patch_size: int = 14
    embedding_length: int = 32
    block_count: int = 2
    head_count: int = 4
    projection_dim: int = TinyModelSpec().embedding_length
    seed: int = 7

    @property
    def image_tokens(self) -> int:
        """Embeddings (prompt tokens) one image becomes."""
        return (self.image_size // self.patch_size) ** 2


def write_tiny_projector(path: Path | str, spec: TinyProjectorSpec = TinyProjectorSpec()) -> Path:
    """Write the projector GGUF (``general.architecture = clip``) to ``path`` and return it.

    The tower's last block is never run (llava uses the second-to-last layer's output), as
    in real LLaVA projectors; ``block_count = 2`` runs one transformer block.
    """
    path = Path(path)
    rng = np.random.default_rng(spec.seed)
    v, hidden, p = spec.embedding_length, 2 * spec.projection_dim, spec.patch_size

    w = GGUFWriter(str(path), "clip")
    w.add_name("tiny-mmproj")
    w.add_file_type(0)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.embedding_length", v)
    w.add_uint32("clip.vision.feed_forward_length", 2 * v)
    w.add_uint32("clip.vision.block_count", spec.block_count)
    w.add_uint32("clip.vision.projection_dim", spec.projection_dim)
    w.add_uint32("clip.vision.attention.head_count", spec.head_count)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.image_size", spec.image_size)
    w.add_uint32("clip.vision.patch_size", p)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    def normal(*shape: int, scale: float = 0.1) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float32)

    # conv2d kernel: numpy (out, in, kh, kw) is ggml's [kw, kh, in, out]
    w.add_tensor("v.patch_embd.weight", normal(v, 3, p, p))
    w.add_tensor("v.position_embd.weight", normal(spec.image_tokens, v))
    for i in range(spec.block_count):
        prefix = f"v.blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(prefix + name + ".weight", normal(v, v))
            w.add_tensor(prefix + name + ".bias", zeros(v))
        for name in ("ln1", "ln2"):
            w.add_tensor(prefix + name + ".weight", ones(v))
            w.add_tensor(prefix + name + ".bias", zeros(v))
        w.add_tensor(prefix + "ffn_up.weight", normal(2 * v, v))
        w.add_tensor(prefix + "ffn_up.bias", zeros(2 * v))
        w.add_tensor(prefix + "ffn_down.weight", normal(v, 2 * v))
        w.add_tensor(prefix + "ffn_down.bias", zeros(v))
    w.add_tensor("mm.0.weight", normal(hidden, v, scale=1.0))
    w.add_tensor("mm.0.bias", zeros(hidden))
    w.add_tensor("mm.2.weight", normal(spec.projection_dim, hidden, scale=0.5))
    w.add_tensor("mm.2.bias", zeros(spec.projection_dim))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_tiny_vision_model(directory: Path | str) -> tuple[Path, Path]:
    """Write the tiny text model and a projector that fits it into ``directory``;
    returns (model path, projector path), the two ``FROM`` lines of a Modelfile."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = write_tiny_gguf(directory / "tiny-vision.gguf", TinyModelSpec(name="tiny-vision"))
    projector = write_tiny_projector(directory / "tiny-vision-mmproj.gguf")
    return model, projector


def tiny_png(width: int, height: int, rgb: tuple[int, int, int], *, checker: tuple[int, int, int] | None = None) -> bytes:
    """An 8-bit RGB PNG of one colour, or a 7 px checkerboard of ``rgb`` and ``checker``."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = rgb
    if checker is not None:
        pixels[((x // 7) + (y // 7)) % 2 == 1] = checker
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
