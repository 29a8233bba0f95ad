"""The generation engine: one model, one request at a time, behind the ``Engine`` interface.

The runner's HTTP server only talks to an ``Engine``, so a batching engine (several
sequences per decode) can replace ``LlamaEngine`` without touching the server or the front.

``LlamaEngine`` drives llama-cpp-python's ``Llama`` at the level of ``eval`` and the
sampler chain rather than ``Llama.generate``, because it needs what ``generate`` does not
offer: a context shift when the context fills, per-token cancellation, an abortable prompt
evaluation, logprobs and Ollama's stop rules. It keeps ``Llama.input_ids``/``n_tokens`` in
step with the KV cache so the next request reuses the common prefix.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol

import llama_cpp
import numpy as np
from llama_cpp import llama_cpp as llama_lib
from llama_cpp._internals import LlamaSampler

from ollamapy.errors import InvalidRequest
from ollamapy.runner_protocol import (
    CompletionChunk,
    CompletionRequest,
    EmbeddingResponse,
    LoadSpec,
    Logprob,
    TokenLogprob,
)

from .load import load_llama
from .sampling import build_sampler
from .textstream import OutputFilter

__all__ = ["MAX_TOKEN_REPEAT", "Engine", "LlamaEngine"]

log = logging.getLogger("ollamapy.runner")

MAX_TOKEN_REPEAT = 30
"""Ollama aborts a generation when the same token text comes more than this many times in a row."""

_WHITESPACE = b" \t\n\r\v\f"


class Engine(Protocol):
    """What the runner server needs from a model. Calls come from one worker thread at a
    time, except ``tokenize``/``detokenize``, which may run concurrently with the others."""

    tokens_generated: int
    """Tokens sampled since load (reported by /health, so tests can see generation stop)."""

    def load(self, spec: LoadSpec, progress: Callable[[float], bool]) -> None:
        """Load the model; ``progress`` gets 0.0–1.0 and returning False aborts the load."""
        ...

    def complete(self, request: CompletionRequest, cancel: threading.Event) -> Iterator[CompletionChunk]:
        """Validate the request now (raising ``InvalidRequest``) and return the chunk stream.

        The stream ends with a ``done`` chunk, or early and silently once ``cancel`` is set.
        """
        ...

    def embed(self, texts: list[str], cancel: threading.Event) -> EmbeddingResponse:
        """One pooled, unnormalized vector per text."""
        ...

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        ...

    def detokenize(self, tokens: list[int]) -> str:
        ...


class LlamaEngine:
    """``Engine`` over one ``llama_cpp.Llama``, one sequence at a time."""

    def __init__(self) -> None:
        self.tokens_generated = 0
        self._llm: llama_cpp.Llama | None = None
        self._adapters: list[Any] = []
        self._pieces: dict[int, bytes] = {}
        self._cancel: threading.Event | None = None
        # Kept on self: llama.cpp holds the pointer while the callback is installed.
        self._abort_callback = llama_lib.ggml_abort_callback(self._should_abort)
        self._no_abort_callback = llama_lib.ggml_abort_callback()

    @property
    def llm(self) -> llama_cpp.Llama:
        if self._llm is None:
            raise RuntimeError("model not loaded")
        return self._llm

    # -- Engine -------------------------------------------------------------------------

    def load(self, spec: LoadSpec, progress: Callable[[float], bool]) -> None:
        self._llm, self._adapters = load_llama(spec, progress)
        # llama.cpp pads its context to a multiple of 256, but Llama.input_ids (and Ollama's
        # num_ctx) is the size asked for: that is the limit.
        self._n_ctx = spec.num_ctx
        # Generation is the resting state, also for a context made in embedding mode;
        # embed() switches embeddings on for its own duration.
        llama_lib.llama_set_embeddings(self._llm.ctx, False)
        # Some memory types (recurrent models…) cannot shift; they end with `length` instead.
        self._can_shift = bool(llama_lib.llama_memory_can_shift(llama_lib.llama_get_memory(self._llm.ctx)))
        self._vocab = llama_lib.llama_model_get_vocab(self._llm.model)
        self._n_vocab = self._llm.n_vocab()

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def detokenize(self, tokens: list[int]) -> str:
        self._check_ids(tokens)
        return b"".join(self._piece(t) for t in tokens).decode("utf-8", errors="replace")

    def complete(self, request: CompletionRequest, cancel: threading.Event) -> Iterator[CompletionChunk]:
        n_ctx = self._n_ctx
        if request.tokens is not None:
            prompt = list(request.tokens)
            self._check_ids(prompt)
        else:
            prompt = self.tokenize(request.prompt or "", add_special=True)
        if not prompt:
            raise InvalidRequest("prompt is empty")
        num_keep = len(prompt) if request.num_keep < 0 else request.num_keep
        # Leave room for a shift to discard at least one token.
        num_keep = max(0, min(num_keep, n_ctx - 2))
        window = prompt
        if len(prompt) > n_ctx:
            if not request.shift:
                raise InvalidRequest("input exceeds maximum context length")
            discard = len(prompt) - n_ctx
            window = prompt[:num_keep] + prompt[num_keep + discard :]
            log.warning("truncating input prompt: limit=%d prompt=%d keep=%d new=%d", n_ctx, len(prompt), num_keep, len(window))
        sampler = build_sampler(self.llm, request, window, n_ctx)
        return self._generate(request, prompt, window, num_keep, sampler, cancel)

    def embed(self, texts: list[str], cancel: threading.Event) -> EmbeddingResponse:
        llm = self.llm
        n_batch = llm.n_batch
        n_out = n_embd = llm.n_embd()
        if llm._ctx.pooling_type() == llama_lib.LLAMA_POOLING_TYPE_RANK:
            n_out = llama_lib.llama_model_n_cls_out(llm.model)
        tokenized = [self.tokenize(text, add_special=True) for text in texts]
        for tokens in tokenized:
            if not tokens:
                raise InvalidRequest("input is empty")
            if len(tokens) > n_batch:
                raise InvalidRequest("input is too large to process. increase the physical batch size")
        vectors: list[list[float]] = []
        # The KV cache is reused for embeddings: forget the completion prefix.
        llm.n_tokens = 0
        llama_lib.llama_set_embeddings(llm.ctx, True)
        try:
            for tokens in tokenized:
                if cancel.is_set():
                    break
                llm._ctx.kv_cache_clear()
                llm._batch.reset()
                llm._batch.add_sequence(tokens, 0, True)
                llm._ctx.decode(llm._batch)
                pointer = llama_lib.llama_get_embeddings_seq(llm.ctx, 0)
                vectors.append(pointer[:n_out] if pointer else [0.0] * n_embd)
        finally:
            llm._ctx.kv_cache_clear()
            llama_lib.llama_set_embeddings(llm.ctx, False)
        return EmbeddingResponse(embeddings=vectors, prompt_eval_count=sum(map(len, tokenized)))

    # -- generation ---------------------------------------------------------------------

    def _generate(
        self,
        request: CompletionRequest,
        prompt: list[int],
        window: list[int],
        num_keep: int,
        sampler: LlamaSampler,
        cancel: threading.Event,
    ) -> Iterator[CompletionChunk]:
        llm = self.llm
        n_ctx = self._n_ctx
        limit = self._predict_limit(request.num_predict, n_ctx)
        try:
            started = time.perf_counter_ns()
            cached = self._reuse_prefix(window)
            if not self._eval_prompt(window[cached:], cancel):
                log.info("completion cancelled during prompt evaluation")
                return
            prompt_ns = time.perf_counter_ns() - started

            out = OutputFilter(request.stop)
            generated: list[int] = []
            ends: list[int] = []  # where each generated token's text ends in the output
            eval_ns = 0
            repeat, last_key = 0, b""
            reason: Literal["stop", "length"] = "length"
            while True:
                step = time.perf_counter_ns()
                token = sampler.sample(llm._ctx, -1)
                generated.append(token)
                self.tokens_generated += 1
                if llama_lib.llama_vocab_is_eog(self._vocab, token):
                    eval_ns += time.perf_counter_ns() - step
                    reason = "stop"
                    break
                piece = self._piece(token)
                key = piece.strip(_WHITESPACE)
                repeat, last_key = (repeat + 1 if key == last_key else 0), key
                if repeat > MAX_TOKEN_REPEAT:
                    log.info("prediction aborted, token repeat limit reached")
                    eval_ns += time.perf_counter_ns() - step
                    reason = "stop"
                    break
                logprob = self._logprob(token, request.top_logprobs) if request.logprobs else None
                text, logprobs = out.push(piece, logprob)
                ends.append(out.decoded_length)
                eval_ns += time.perf_counter_ns() - step
                if text or logprobs:
                    yield CompletionChunk(content=text, logprobs=logprobs or None, eval_count=len(generated), eval_duration=eval_ns)
                if out.stopped:
                    reason = "stop"
                    break
                if len(generated) >= limit:
                    break
                if cancel.is_set():
                    log.info("completion cancelled after %d tokens", len(generated))
                    return
                step = time.perf_counter_ns()
                if llm.n_tokens >= n_ctx:
                    if not (request.shift and self._can_shift) or request.num_predict == -2:
                        break
                    self._shift_context(num_keep)
                llm.eval([token])
                eval_ns += time.perf_counter_ns() - step
        finally:
            sampler.close()

        text, logprobs = out.finish()
        context = None
        if request.return_context:
            # The response's tokens: no EOS, none that reaches into a stop string.
            limit_at = out.stop_offset if out.stop_offset is not None else out.decoded_length
            context = prompt + [t for t, end in zip(generated, ends) if end <= limit_at]
        log.info(
            "completion done: prompt %d tokens (%d cached) in %.1f ms, %d tokens in %.1f ms, %s",
            len(window), cached, prompt_ns / 1e6, len(generated), eval_ns / 1e6, reason,
        )
        yield CompletionChunk(
            content=text,
            logprobs=logprobs or None,
            eval_count=len(generated),
            eval_duration=eval_ns,
            done=True,
            done_reason=reason,
            prompt_eval_count=len(window),
            prompt_eval_duration=prompt_ns,
            prompt_cached_count=cached,
            context=context,
        )

    @staticmethod
    def _predict_limit(num_predict: int, n_ctx: int) -> int:
        """Ollama's num_predict: N > 0 tokens, -2 until the context is full, else 10 × num_ctx."""
        if num_predict > 0:
            return num_predict
        if num_predict == -2:
            return n_ctx
        return 10 * n_ctx

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the KV entries shared with the previous request; returns how many.

        At least the last prompt token is always evaluated again, so fresh logits exist.
        """
        llm = self.llm
        previous = llm.input_ids[: min(llm.n_tokens, len(tokens) - 1)]
        mismatch = np.flatnonzero(previous != np.asarray(tokens[: len(previous)], dtype=previous.dtype))
        common = int(mismatch[0]) if len(mismatch) else len(previous)
        if common > 0 and llm._ctx.kv_cache_seq_rm(-1, common, -1):
            llm.n_tokens = common
            return common
        llm.reset()
        llm._ctx.kv_cache_clear()
        return 0

    def _eval_prompt(self, tokens: list[int], cancel: threading.Event) -> bool:
        """Evaluate the prompt (in num_batch chunks); False if cancelled midway.

        llama.cpp's abort callback is installed for the duration, so even one long batch
        stops within a graph node of ``cancel`` being set.
        """
        llm = self.llm
        self._cancel = cancel
        llama_lib.llama_set_abort_callback(llm.ctx, self._abort_callback, None)
        try:
            llm.eval(tokens)
        except RuntimeError:
            if cancel.is_set():
                return False
            raise
        finally:
            llama_lib.llama_set_abort_callback(llm.ctx, self._no_abort_callback, None)
            self._cancel = None
        return not cancel.is_set()

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        cancel = self._cancel
        return cancel is not None and cancel.is_set()

    def _shift_context(self, num_keep: int) -> None:
        """Drop half of the tokens after ``num_keep`` and slide the rest down (llama.cpp's
        context shift), keeping ``input_ids`` in step with the KV cache."""
        llm = self.llm
        n_past = llm.n_tokens
        discard = (n_past - num_keep) // 2
        log.info("context shift: keep %d, discard %d of %d", num_keep, discard, n_past)
        llm._ctx.kv_cache_seq_rm(0, num_keep, num_keep + discard)
        llm._ctx.kv_cache_seq_shift(0, num_keep + discard, n_past, -discard)
        ids = llm.input_ids
        ids[num_keep : n_past - discard] = ids[num_keep + discard : n_past].copy()
        llm.n_tokens = n_past - discard

    def _logprob(self, token: int, top: int) -> Logprob:
        """Log-softmax of the raw logits (as llama-server reports them) for ``token`` and the top alternatives."""
        logits = np.ctypeslib.as_array(llama_lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self._n_vocab,))
        peak = float(logits.max())
        norm = peak + float(np.log(np.exp(logits - peak).sum()))
        alternatives: list[TokenLogprob] = []
        if top > 0:
            best = np.argpartition(-logits, top - 1)[:top]
            for t in best[np.argsort(-logits[best])]:
                alternatives.append(self._token_logprob(int(t), float(logits[t]) - norm))
        chosen = self._token_logprob(token, float(logits[token]) - norm)
        return Logprob(token=chosen.token, logprob=chosen.logprob, bytes=chosen.bytes, top_logprobs=alternatives)

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        piece = self._piece(token)
        return TokenLogprob(token=piece.decode("utf-8", errors="replace"), logprob=logprob, bytes=list(piece))

    def _piece(self, token: int) -> bytes:
        """The token's bytes, special tokens rendered (as Ollama's runner renders them)."""
        piece = self._pieces.get(token)
        if piece is None:
            size = 64
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = llama_lib.llama_token_to_piece(self._vocab, token, buffer, size, 0, True)
                if n >= 0:
                    break
                size = -n
            piece = self._pieces[token] = buffer.raw[:n]
        return piece

    def _check_ids(self, tokens: list[int]) -> None:
        if any(t < 0 or t >= self._n_vocab for t in tokens):
            raise InvalidRequest("invalid token id")
