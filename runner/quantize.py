"""Quantize a GGUF in a child process: ``python -m ollamapy.runner.quantize SRC DST TYPE``.

The front process never imports llama.cpp, so ``/api/create -q`` runs llama.cpp's
quantizer here. llama.cpp logs one line per tensor (``[  3/ 21] blk.0.attn_q.weight - …``)
to stderr; the front parses those lines for per-tensor progress.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["FILE_TYPES", "main"]

# Ollama's quantize names (case-insensitive) → llama.cpp ftype constant names.
FILE_TYPES: dict[str, str] = {
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "q3_k_s": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "q3_k_l": "LLAMA_FTYPE_MOSTLY_Q3_K_L",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m ollamapy.runner.quantize SRC DST TYPE", file=sys.stderr)
        return 2
    src, dst, qtype = argv
    name = FILE_TYPES.get(qtype.lower())
    if name is None:
        print(f"error: unsupported quantization type {qtype}", file=sys.stderr)
        return 2
    import llama_cpp
    from llama_cpp import _logger

    _logger.logger.setLevel(logging.DEBUG)  # keep llama.cpp's per-tensor lines
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, name)
    params.nthread = 0
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"error: llama_model_quantize failed with code {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
