"""Build a llama.cpp sampler chain and grammar for one completion request.

The chain follows llama-server's order (penalties, grammar, top_k, typical_p, top_p, min_p,
temperature, distribution), so outputs match what Ollama's llama-server would sample.
Sampling itself then runs in C (``llama_sampler_sample``) with no per-token Python work.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from llama_cpp import llama_cpp as llama_lib
from llama_cpp._internals import LlamaSampler
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from ollamapy.api.runner_protocol import CompletionRequest
from ollamapy.errors import InvalidRequest

__all__ = ["GrammarGate", "build_sampler", "grammar_text"]


def grammar_text(request: CompletionRequest) -> str | None:
    """The GBNF grammar for the request's ``grammar`` or ``format``, or None."""
    if request.grammar is not None:
        return request.grammar
    if request.format == "json":
        return JSON_GBNF
    if isinstance(request.format, dict):
        try:
            return json_schema_to_gbnf(json.dumps(request.format))
        except Exception as err:  # the converter raises bare Exceptions/ValueErrors/KeyErrors
            raise InvalidRequest(f"invalid JSON schema in format: {err}") from err
    return None


class GrammarGate:
    """Watches a thinking model's output for the end of its thinking section, where the
    request's grammar starts to apply (so ``format`` constrains the answer, not the
    reasoning, as Ollama does)."""

    def __init__(self, markers: Sequence[str]) -> None:
        self._markers = [m.encode() for m in markers if m]
        self._keep = max((len(m) for m in self._markers), default=1) - 1
        self._tail = b""

    def push(self, piece: bytes) -> bool:
        """Feed one generated token's bytes; True when a marker has just been completed."""
        text = self._tail + piece
        if any(m in text for m in self._markers):
            return True
        self._tail = text[-self._keep :] if self._keep else b""
        return False


def build_sampler(
    vocab: llama_lib.llama_vocab_p,
    request: CompletionRequest,
    prompt: list[int],
    n_ctx: int,
    default_seed: int = -1,
    *,
    constrained: bool = True,
) -> LlamaSampler:
    """The sampler chain for ``request`` (one per sequence, so each keeps its own seed,
    grammar and penalty state); the prompt's last tokens prime the penalties. A request
    without a seed gets ``default_seed`` (the load spec's), else a random one. Without
    ``constrained`` the grammar is left out (until the thinking section ends)."""
    chain = LlamaSampler()
    n_vocab = llama_lib.llama_vocab_n_tokens(vocab)
    last_n = n_ctx if request.repeat_last_n < 0 else request.repeat_last_n
    if last_n > 0 and (request.repeat_penalty != 1.0 or request.frequency_penalty != 0.0 or request.presence_penalty != 0.0):
        chain.add_penalties(n_vocab, last_n, request.repeat_penalty, request.frequency_penalty, request.presence_penalty)
        # llama-server counts the prompt in the penalty window too; only the penalty
        # sampler (index 0) sees it, the grammar must not.
        penalties = llama_lib.llama_sampler_chain_get(chain.sampler, 0)
        for token in prompt[-last_n:]:
            llama_lib.llama_sampler_accept(penalties, token)

    grammar = grammar_text(request) if constrained else None
    if grammar is not None:
        sampler = llama_lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not sampler:
            raise InvalidRequest("failed to parse grammar")
        llama_lib.llama_sampler_chain_add(chain.sampler, sampler)

    seed = request.seed if request.seed >= 0 else default_seed
    seed = llama_lib.LLAMA_DEFAULT_SEED if seed < 0 else seed & 0xFFFFFFFF
    if request.temperature <= 0.0:
        chain.add_greedy()
    elif request.mirostat == 1:
        chain.add_temp(request.temperature)
        chain.add_mirostat(n_vocab, seed, request.mirostat_tau, request.mirostat_eta, 100)
    elif request.mirostat == 2:
        chain.add_temp(request.temperature)
        chain.add_mirostat_v2(seed, request.mirostat_tau, request.mirostat_eta)
    else:
        chain.add_top_k(request.top_k)
        chain.add_typical(request.typical_p, 1)
        chain.add_top_p(request.top_p, 1)
        chain.add_min_p(request.min_p, 1)
        chain.add_temp(request.temperature)
        chain.add_dist(seed)
    return chain
