"""Sample one completion's tokens: repetition penalties, grammar, then greedy or random.

The order is llama-server's (penalties, grammar, top_k, typical_p, top_p, min_p,
temperature, distribution), so outputs match what Ollama's llama-server would sample.
Everything after the penalties runs in llama.cpp's sampler chain, except plain greedy
decoding, which is an argmax over the logits. The penalties are applied here, to the few
tokens of their window: llama.cpp's penalty sampler looks every vocabulary entry up in a
hash map, every token (about 1.4 ms a token for Gemma 3's 262k entries, 7 % of a decode
step of Gemma 3 270M on 2 cores), and Ollama turns it on by default (``repeat_penalty`` 1.1).
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Sequence

import numpy as np
from llama_cpp import llama_cpp as llama_lib
from llama_cpp._internals import LlamaSampler
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from ollamapy.api.runner_protocol import CompletionRequest
from ollamapy.errors import InvalidRequest

__all__ = ["GrammarGate", "RepeatPenalty", "TokenSampler", "build_sampler", "grammar_text"]


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


class RepeatPenalty:
    """llama.cpp's repeat, frequency and presence penalties over the last ``last_n`` tokens,
    with the same float32 arithmetic, applied in place to the tokens in the window only."""

    def __init__(self, last_n: int, repeat: float, frequency: float, presence: float, primer: Sequence[int]) -> None:
        self._window: deque[int] = deque(maxlen=last_n)
        self._counts: Counter[int] = Counter()
        self._repeat = np.float32(repeat)
        self._frequency = np.float32(frequency)
        self._presence = np.float32(presence)
        for token in primer[-last_n:]:
            self.accept(token)

    def accept(self, token: int) -> None:
        """Count a token into the window (the prompt's last tokens, then each sampled one)."""
        window = self._window
        if len(window) == window.maxlen:
            oldest = window[0]
            self._counts[oldest] -= 1
            if not self._counts[oldest]:
                del self._counts[oldest]
        window.append(token)
        self._counts[token] += 1

    def apply(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penalize ``logits`` in place; returns (token ids, their logits before) to restore."""
        ids = np.fromiter(self._counts.keys(), dtype=np.intp, count=len(self._counts))
        counts = np.fromiter(self._counts.values(), dtype=np.float32, count=len(self._counts))
        before = logits[ids]
        after = np.where(before <= 0, before * self._repeat, before / self._repeat)
        logits[ids] = after - (counts * self._frequency + self._presence)
        return ids, before


class TokenSampler:
    """One sequence's sampler: penalties (:class:`RepeatPenalty`), then llama.cpp's chain,
    or an argmax when the chain would only pick the best token (greedy, no grammar).

    The logits are restored after sampling: log probabilities report the model's own."""

    def __init__(self, chain: LlamaSampler | None, penalty: RepeatPenalty | None, n_vocab: int) -> None:
        self._chain = chain
        self._penalty = penalty
        self._n_vocab = n_vocab

    def sample(self, ctx: llama_lib.llama_context_p, index: int) -> int:
        """Sample from row ``index`` of the last batch's logits and accept the token."""
        logits = np.ctypeslib.as_array(llama_lib.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,))
        saved = self._penalty.apply(logits) if self._penalty is not None else None
        if self._chain is None:
            token = int(logits.argmax())  # llama.cpp's greedy: the first of the highest
        else:
            token = llama_lib.llama_sampler_sample(self._chain.sampler, ctx, index)
        if saved is not None:
            ids, before = saved
            logits[ids] = before
            assert self._penalty is not None
            self._penalty.accept(token)
        return token

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()


def build_sampler(
    vocab: llama_lib.llama_vocab_p,
    request: CompletionRequest,
    prompt: list[int],
    n_ctx: int,
    default_seed: int = -1,
    *,
    constrained: bool = True,
) -> TokenSampler:
    """The sampler for ``request`` (one per sequence, so each keeps its own seed, grammar
    and penalty state); the prompt's last tokens prime the penalties. A request without a
    seed gets ``default_seed`` (the load spec's), else a random one. Without
    ``constrained`` the grammar is left out (until the thinking section ends)."""
    n_vocab = llama_lib.llama_vocab_n_tokens(vocab)
    last_n = n_ctx if request.repeat_last_n < 0 else request.repeat_last_n
    penalty = None
    if last_n > 0 and (request.repeat_penalty != 1.0 or request.frequency_penalty != 0.0 or request.presence_penalty != 0.0):
        # llama-server counts the prompt in the penalty window too
        penalty = RepeatPenalty(last_n, request.repeat_penalty, request.frequency_penalty, request.presence_penalty, prompt)

    grammar = grammar_text(request) if constrained else None
    if grammar is None and request.temperature <= 0.0:
        return TokenSampler(None, penalty, n_vocab)
    chain = LlamaSampler()
    if grammar is not None:
        sampler = llama_lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not sampler:
            chain.close()
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
    return TokenSampler(chain, penalty, n_vocab)
