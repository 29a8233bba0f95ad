"""Quantize a GGUF in a child process: ``python -m ollamapy.runner.quantize SRC DST TYPE``.

The front process never imports llama.cpp, so ``/api/create -q`` runs llama.cpp's
quantizer here. llama.cpp logs one line per tensor (``[  3/ 21] blk.0.attn_q.weight - …``)
to stderr; the front parses those lines for per-tensor progress.
"""

from __future__ import annotations

import ctypes
import logging
import sys

from ollamapy.store.gguf import QUANTIZE_FILE_TYPES

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Quantize ``SRC`` into ``DST``; the exit code and stderr are what the front reads."""
    if len(argv) != 3:
        print("usage: python -m ollamapy.runner.quantize SRC DST TYPE", file=sys.stderr)
        return 2
    src, dst, qtype = argv
    file_type = QUANTIZE_FILE_TYPES.get(qtype.lower())
    if file_type is None:
        print(f"error: unsupported quantization type {qtype}", file=sys.stderr)
        return 2
    import llama_cpp
    from llama_cpp import _logger

    _logger.logger.setLevel(logging.DEBUG)  # keep llama.cpp's per-tensor lines
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type.value
    params.nthread = 0
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"error: llama_model_quantize failed with code {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
