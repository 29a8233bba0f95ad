"""The child processes of the CPU backend probe (``runner/backends.py``).

``python -m ollamapy.runner.cpu_check scores NAME…`` prints each variant's
``ggml_backend_score()`` as a JSON line, as it goes. ``… check NAME`` loads variant NAME
alone and computes with it: a tiny model in F16, Q4_K_M and Q4_0, loaded with the
runner's own parameters and again with llama.cpp's extra buffer types (the AMX and
repacked kernels, which LoRA adapters use even in the runner), each decoding a prompt of
more rows than one AMX tile and a few single-token steps. A variant whose instructions
this machine cannot execute kills the process; exiting cleanly is the pass.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from gguf import GGMLQuantizationType
from llama_cpp import llama_cpp as llama_lib

from ollamapy.api.runner_protocol import LoadSpec
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf

from . import quantize
from .backends import cpu_variants, libggml, load_module, module_score
from .load import context_params, install_llama_log, model_params

__all__ = ["check", "main", "scores"]

# rows of 256: whole blocks of every quantization, and shapes the AMX kernels take
_MODEL = TinyModelSpec(embedding_length=256, feed_forward_length=512, tensor_type=GGMLQuantizationType.F16)
_QUANTIZATIONS = ("q4_k_m", "q4_0")
_PROMPT_TOKENS = 40
_STEPS = 3


def scores(names: list[str]) -> None:
    """Print ``[name, score]`` per variant, flushed one by one (a crash shows where)."""
    libggml()  # the modules need libggml-base loaded
    variants = cpu_variants()
    for name in names:
        print(json.dumps([name, module_score(variants[name])]), flush=True)


def _generate(model_path: Path, extra_buffer_types: bool) -> None:
    """Load the model as the runner does and decode a prompt, then a few greedy tokens."""
    spec = LoadSpec(model_path=str(model_path), num_ctx=256, num_batch=64, num_parallel=1, num_thread=0)
    params = model_params(spec)
    params.use_extra_bufts = extra_buffer_types
    model = llama_lib.llama_model_load_from_file(str(model_path).encode(), params)
    if not model:
        raise SystemExit(f"loading {model_path.name} failed")
    ctx = llama_lib.llama_init_from_model(model, context_params(spec))
    try:
        if not ctx:
            raise SystemExit(f"no context for {model_path.name}")
        n_vocab = llama_lib.llama_vocab_n_tokens(llama_lib.llama_model_get_vocab(model))
        tokens = [3 + (7 * i) % (n_vocab - 3) for i in range(_PROMPT_TOKENS)]
        for _ in range(1 + _STEPS):
            array = (llama_lib.llama_token * len(tokens))(*tokens)
            if llama_lib.llama_decode(ctx, llama_lib.llama_batch_get_one(array, len(tokens))) != 0:
                raise SystemExit(f"decoding with {model_path.name} failed")
            logits = llama_lib.llama_get_logits_ith(ctx, -1)
            tokens = [max(range(n_vocab), key=lambda t: logits[t])]
    finally:
        if ctx:
            llama_lib.llama_free(ctx)
        llama_lib.llama_model_free(model)


def check(name: str) -> None:
    """Load variant ``name`` alone and compute with it; dying here is the verdict."""
    install_llama_log()
    if not load_module(libggml(), cpu_variants()[name]):
        raise SystemExit(f"{name} does not load")
    with tempfile.TemporaryDirectory(prefix="ollamapy-cpu-check-") as tmp:
        f16 = write_tiny_gguf(Path(tmp) / "f16.gguf", _MODEL)
        models = [f16]
        for qtype in _QUANTIZATIONS:
            models.append(Path(tmp) / f"{qtype}.gguf")
            if quantize.main([str(f16), str(models[-1]), qtype]) != 0:
                raise SystemExit(f"quantizing the check's model to {qtype} failed")
        for model in models:
            for extra in (False, True):
                _generate(model, extra)


def main(argv: list[str]) -> int:
    if argv[:1] == ["scores"]:
        scores(argv[1:])
        return 0
    if argv[:1] == ["check"] and len(argv) == 2:
        check(argv[1])
        return 0
    print("usage: python -m ollamapy.runner.cpu_check scores NAME... | check NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
