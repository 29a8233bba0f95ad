"""The generation engine: continuous batching of many requests over one llama.cpp context.

The runner's HTTP server only talks to an ``Engine``. ``BatchEngine`` serves up to
``num_parallel`` requests at once, each a *sequence* with its own KV stream, from one
engine thread that repeats a *step*: admit waiting requests into free slots, evaluate one
chunk of a pending prompt, decode every decoding sequence's next token (and every prompt's
last token) in one ``llama_batch``, and sample each sequence that produced logits with its
own sampler (seed, grammar, penalties). So:

* a new request joins at the next step; its prompt is evaluated in chunks, small ones while
  other sequences are decoding, so they are not starved; an idle engine starts once a burst
  of requests has stopped arriving (``ARRIVAL_QUIET``), so requests sent together share
  their first step;
* each sequence has its own stop strings, ``num_predict``, logprobs, context window of
  ``num_ctx // num_parallel`` tokens and context shift (or ``length``);
* a cancelled sequence stops within one step and its KV cells are freed at once; a long
  prompt evaluation is aborted inside llama.cpp (abort callback) and the step rolled back;
* a finished sequence leaves the batch at once; its slot keeps the KV of what it evaluated
  as a prefix cache, and a new request takes the free slot whose cache shares the longest
  prefix with its prompt (a growing chat does not re-evaluate its history) when that
  prefix is substantial, else an empty or the least recently used free slot;
* each step's batch lists the sequences in seq-id order, new requests take slots next to
  busy ones and a reused cache trades places with a free slot next to them: llama.cpp
  decodes each run of consecutive seq ids as its own ubatch;
* images (``runner.vision``) are part of the prompt's token list as pseudo-tokens keyed by
  their content hash; a step evaluates either a run of text tokens or one whole image, and
  a prefix cache is only ever kept up to an image's start or end, never inside one;
* embeddings run in the same thread between steps, on a free slot;
* the batch's state (sequences in it, their high-water mark, prompt tokens left to
  evaluate) is published after every step, before the step's chunks go out, so ``/health``
  shows which phase a request is in.
"""

from __future__ import annotations

import base64
import concurrent.futures
import ctypes
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from llama_cpp import llama_cpp as llama_lib

from ollamapy.api.runner_protocol import (
    CompletionChunk,
    CompletionRequest,
    EmbeddingResponse,
    LoadSpec,
    Logprob,
    TokenLogprob,
)
from ollamapy.errors import InvalidRequest

from .load import LoadedModel, load_model
from .sampling import GrammarGate, TokenSampler, build_sampler, grammar_text
from .textstream import OutputFilter
from .vision import ImageSpan, Vision, VisionPrompt

__all__ = ["ARRIVAL_QUIET", "ARRIVAL_WAIT_MAX", "MAX_TOKEN_REPEAT", "PREFILL_CHUNK_WHILE_DECODING", "SLOT_PROMPT_SIMILARITY", "BatchEngine", "ChunkSink", "Engine", "Ticket"]

log = logging.getLogger("ollamapy.runner")

MAX_TOKEN_REPEAT = 30
"""Ollama aborts a generation when the same token text comes more than this many times in a row."""

SLOT_PROMPT_SIMILARITY = 0.5
"""A free slot's cache is reused for a prompt when their common prefix is at least this
share of the prompt (llama-server's ``--slot-prompt-similarity`` default)."""

PREFILL_CHUNK_WHILE_DECODING = 64
"""Prompt tokens evaluated per step while other sequences decode: bounds the pause a new
request's prompt puts between their tokens. Alone, a prompt goes ``num_batch`` at a time."""

ARRIVAL_QUIET = 0.001
"""Seconds without a new request after which an idle engine starts its first step. A burst
of requests (clients that start together) reaches the runner one by one, a fraction of a
millisecond apart, through the front process; waiting for the burst to end lets them share
the first step (cached prompts decode together) instead of all but the first waiting out a
step of one. A lone request pays this once."""
ARRIVAL_WAIT_MAX = 0.005
"""Seconds an idle engine waits for a burst at most, however closely requests follow."""

_WHITESPACE = b" \t\n\r\v\f"
_DECODE_ABORTED = 2
_ABORTABLE_CHUNK = 32
"""Prompt chunks longer than this can be aborted midway (llama.cpp's abort callback)."""

ChunkSink = Callable[[CompletionChunk | BaseException | None], None]
"""Receives a completion's chunks in the engine thread: chunks (the last one ``done``), or
an exception if the engine failed, then ``None`` once the sequence is gone (also after a
cancellation). It must not block."""


class Ticket:
    """A submitted completion; ``cancel`` stops it within one step, from any thread."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._cancelled = threading.Event()
        self._wake = wake

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._wake()


class Engine(Protocol):
    """What the runner server needs from a model. Every method may be called from any thread."""

    tokens_generated: int
    """Tokens sampled since load (reported by /health, so tests can see generation stop)."""
    active_sequences: int
    """Completions in the batch after the last step: admitted to a slot, prompt or decoding."""
    max_active_sequences: int
    """The most completions that were in the batch at once since load."""
    prompt_tokens_pending: int
    """Prompt tokens of the sequences in the batch not evaluated yet (after the last step)."""
    kv_cells_used: int
    """KV cells holding the tokens of the sequences in the batch (after the last step)."""
    kv_cells_total: int
    """KV cells of all sequence slots (0 until loaded)."""

    @property
    def active(self) -> int:
        """Completions and embedding jobs submitted and not yet over (running or waiting)."""
        ...

    def load(self, spec: LoadSpec, progress: Callable[[float], bool]) -> None:
        """Load the model; ``progress`` gets 0.0–1.0 and returning False aborts the load."""
        ...

    def submit(self, request: CompletionRequest, sink: ChunkSink) -> Ticket:
        """Validate the request now (raising ``InvalidRequest``) and queue it; chunks go to ``sink``."""
        ...

    def embed(self, texts: list[str], cancel: threading.Event) -> concurrent.futures.Future[EmbeddingResponse]:
        """Validate now (raising ``InvalidRequest``); the future gets one pooled, unnormalized vector per text."""
        ...

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        ...

    def detokenize(self, tokens: list[int]) -> str:
        ...

    def close(self) -> None:
        """Stop the engine thread and free the model."""
        ...


@dataclass(eq=False)
class _Slot:
    """One sequence id of the context and the tokens whose KV it holds (positions 0…n-1)."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: int = 0


@dataclass(eq=False)
class _Sequence:
    """One completion from admission to its last chunk."""

    request: CompletionRequest
    sink: ChunkSink
    ticket: Ticket
    prompt: list[int]
    window: list[int]
    """The prompt as evaluated (truncated to the context when it does not fit)."""
    num_keep: int
    sampler: TokenSampler
    limit: int
    gate: GrammarGate | None = None
    """Until the thinking section ends, the sampler runs without the grammar."""
    vision: VisionPrompt | None = None
    """The prompt's images (``prompt`` holds their pseudo-tokens); freed with the sequence."""
    slot: _Slot | None = None
    pending: list[int] = field(default_factory=list)
    """Prompt tokens not evaluated yet."""
    cached_count: int = 0
    next_token: int | None = None
    """Sampled and sent, to be evaluated in the next step."""
    out: OutputFilter = field(init=False)
    generated: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    """Where each generated token's text ends in the output."""
    repeat: int = 0
    last_key: bytes = b""
    admitted_ns: int = 0
    prompt_ns: int = 0
    prompt_done_ns: int = 0

    def __post_init__(self) -> None:
        self.out = OutputFilter(self.request.stop)


@dataclass(eq=False)
class _EmbedJob:
    tokenized: list[list[int]]
    cancel: threading.Event
    future: concurrent.futures.Future[EmbeddingResponse]


class BatchEngine:
    """``Engine`` over one llama.cpp context with ``num_parallel`` sequences (see the module doc).

    Only the engine thread touches the context, the batch and the slots; other threads
    submit work through ``_waiting`` under ``_lock`` and wake the thread with ``_wake``.
    """

    def __init__(self) -> None:
        self.tokens_generated = 0
        # Written by the engine thread only, read from any thread (see ``_publish``).
        self.active_sequences = 0
        self.max_active_sequences = 0
        self.prompt_tokens_pending = 0
        self.kv_cells_used = 0
        self.kv_cells_total = 0
        self._loaded: LoadedModel | None = None
        self._vision: Vision | None = None
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._wake_cond = threading.Condition(self._lock)
        self._waiting: deque[_Sequence | _EmbedJob] = deque()  # guarded by _lock
        self._active = 0  # guarded by _lock
        self._closing = False  # guarded by _lock
        self._running: list[_Sequence] = []  # engine thread only
        self._outbox: list[tuple[ChunkSink, CompletionChunk | BaseException | None]] = []  # engine thread only
        self._slots: list[_Slot] = []
        self._use_counter = itertools.count(1)
        self._thread: threading.Thread | None = None
        # Kept on self: llama.cpp holds the pointer while the callback is installed.
        self._abort_watch: Ticket | None = None
        self._abort_callback = llama_lib.ggml_abort_callback(self._should_abort)
        self._no_abort_callback = llama_lib.ggml_abort_callback()

    # -- setup --------------------------------------------------------------------------

    @property
    def _model(self) -> LoadedModel:
        if self._loaded is None:
            raise RuntimeError("model not loaded")
        return self._loaded

    @property
    def active(self) -> int:
        return self._active

    def load(self, spec: LoadSpec, progress: Callable[[float], bool]) -> None:
        loaded = self._loaded = load_model(spec, progress)
        self._vision = loaded.vision
        self._spec = spec
        self._n_parallel = spec.num_parallel
        # Each sequence gets its share of the cells: Ollama's num_ctx is per request.
        self._n_ctx = max(spec.num_ctx // spec.num_parallel, 4)
        self.kv_cells_total = self._n_ctx * self._n_parallel
        self._n_batch = spec.num_batch
        # Generation is the resting state, also for a context made in embedding mode;
        # embedding jobs switch embeddings on for their own duration.
        llama_lib.llama_set_embeddings(loaded.ctx, False)
        # Some memory types (recurrent models…) cannot shift; they end with `length` instead.
        self._can_shift = loaded.memory is not None and bool(llama_lib.llama_memory_can_shift(loaded.memory))
        self._n_vocab = llama_lib.llama_vocab_n_tokens(loaded.vocab)
        self._n_embd = llama_lib.llama_model_n_embd(loaded.model)
        self._batch = llama_lib.llama_batch_init(self._n_batch, 0, 1)
        self._slots = [_Slot(seq_id=i) for i in range(spec.num_parallel)]
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()
        log.info("engine ready: %d parallel sequences of %d tokens, batch %d", spec.num_parallel, self._n_ctx, self._n_batch)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake_cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            llama_lib.llama_batch_free(self._batch)
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    # -- requests (any thread) ----------------------------------------------------------

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buffer = (llama_lib.llama_token * capacity)()
            n = llama_lib.llama_tokenize(self._model.vocab, data, len(data), buffer, capacity, add_special, True)
            if n >= 0:
                return list(buffer[:n])
            capacity = -n

    def detokenize(self, tokens: list[int]) -> str:
        self._check_ids(tokens)
        return b"".join(self._piece(t) for t in tokens).decode("utf-8", errors="replace")

    def submit(self, request: CompletionRequest, sink: ChunkSink) -> Ticket:
        vision = self._tokenize_images(request) if request.images else None
        try:
            return self._submit(request, sink, vision)
        except BaseException:
            if vision is not None:
                vision.close()
            raise

    def _tokenize_images(self, request: CompletionRequest) -> VisionPrompt:
        if self._vision is None:
            raise InvalidRequest("this model does not support images")
        if request.prompt is None:
            raise InvalidRequest("images need a text prompt with their [img-N] markers")
        try:
            images = [base64.b64decode(image, validate=True) for image in request.images]
        except ValueError:
            raise InvalidRequest("invalid image input") from None
        return self._vision.tokenize(request.prompt, images)

    def _submit(self, request: CompletionRequest, sink: ChunkSink, vision: VisionPrompt | None) -> Ticket:
        n_ctx = self._n_ctx
        if vision is not None:
            prompt = list(vision.tokens)
        elif request.tokens is not None:
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
            if not request.shift or vision is not None:
                raise InvalidRequest("input exceeds maximum context length")
            discard = len(prompt) - n_ctx
            window = prompt[:num_keep] + prompt[num_keep + discard :]
            log.warning("truncating input prompt: limit=%d prompt=%d keep=%d new=%d", n_ctx, len(prompt), num_keep, len(window))
        sampler = build_sampler(self._model.vocab, request, _text(window), n_ctx, self._spec.seed)
        gate = None
        if request.format_after and grammar_text(request) is not None:
            # the full chain above validated the grammar; thinking runs without it
            gate = GrammarGate(request.format_after)
            sampler.close()
            sampler = build_sampler(self._model.vocab, request, _text(window), n_ctx, self._spec.seed, constrained=False)
        ticket = Ticket(self._wake)
        sequence = _Sequence(
            request=request,
            sink=sink,
            ticket=ticket,
            prompt=prompt,
            window=window,
            num_keep=num_keep,
            sampler=sampler,
            limit=self._predict_limit(request.num_predict, n_ctx),
            gate=gate,
            vision=vision,
        )
        self._enqueue(sequence)
        return ticket

    def embed(self, texts: list[str], cancel: threading.Event) -> concurrent.futures.Future[EmbeddingResponse]:
        tokenized = [self.tokenize(text, add_special=True) for text in texts]
        for tokens in tokenized:
            if not tokens:
                raise InvalidRequest("input is empty")
            if len(tokens) > self._n_batch:
                raise InvalidRequest("input is too large to process. increase the physical batch size")
        job = _EmbedJob(tokenized=tokenized, cancel=cancel, future=concurrent.futures.Future())
        self._enqueue(job)
        return job.future

    def _enqueue(self, job: _Sequence | _EmbedJob) -> None:
        with self._lock:
            self._waiting.append(job)
            self._active += 1
            self._wake_cond.notify()

    def _wake(self) -> None:
        with self._lock:
            self._wake_cond.notify()

    @staticmethod
    def _predict_limit(num_predict: int, n_ctx: int) -> int:
        """Ollama's num_predict: N > 0 tokens, -2 until the context is full, else 10 × num_ctx."""
        if num_predict > 0:
            return num_predict
        if num_predict == -2:
            return n_ctx
        return 10 * n_ctx

    # -- the engine thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                idle = False
                while not self._closing and not self._running and not self._admissible():
                    idle = True
                    self._wake_cond.wait()
                if idle:
                    self._await_burst()
                if self._closing:
                    break
            try:
                self._admit()
                self._reap_cancelled()
                if self._running:
                    self._step()
            except Exception as err:  # never let the thread die: fail what is running
                log.exception("error: engine step failed")
                for sequence in list(self._running):
                    self._end(sequence, error=err)
            finally:
                self._flush()

    def _await_burst(self) -> None:
        """Work arrived at an idle engine: wait (``_lock`` held) until requests stop arriving
        for ``ARRIVAL_QUIET``, the free slots are taken, or ``ARRIVAL_WAIT_MAX`` is up."""
        deadline = time.monotonic() + ARRIVAL_WAIT_MAX
        free = sum(not slot.busy for slot in self._slots)
        while not self._closing and len(self._waiting) < free:
            timeout = min(ARRIVAL_QUIET, deadline - time.monotonic())
            if timeout <= 0 or not self._wake_cond.wait(timeout):
                return

    def _emit(self, sink: ChunkSink, item: CompletionChunk | BaseException | None) -> None:
        """Queue an item for ``sink``; the step's items are delivered together by ``_flush``."""
        self._outbox.append((sink, item))

    def _flush(self) -> None:
        """Deliver what the step produced, all at once after its last sample: the server's
        event loop then wakes once per step (not once per sequence) and never competes
        with the sampling loop for the GIL in the middle of a step."""
        self._publish()
        outbox, self._outbox = self._outbox, []
        for sink, item in outbox:
            sink(item)

    def _publish(self) -> None:
        """Expose the batch's state for /health. Called before a step's chunks are delivered,
        so whoever got a chunk sees (at least) the state of the step that produced it."""
        self.active_sequences = len(self._running)
        self.prompt_tokens_pending = sum(len(s.pending) for s in self._running)
        # An idle slot's cached prefix is not counted: the next sequence may overwrite it.
        self.kv_cells_used = sum(len(s.slot.cached) for s in self._running if s.slot is not None)

    def _admissible(self) -> bool:
        """Work is waiting and a slot is free (``_lock`` held)."""
        return bool(self._waiting) and any(not slot.busy for slot in self._slots)

    def _admit(self) -> None:
        """Give waiting jobs free slots, in arrival order; embedding jobs run right here."""
        while True:
            with self._lock:
                if not self._admissible():
                    return
                job = self._waiting.popleft()
            if isinstance(job, _EmbedJob):
                self._run_embed(job)
                continue
            if job.ticket.cancelled:
                self._finish_job(job)
                continue
            self._start(job)

    def _start(self, sequence: _Sequence) -> None:
        """Take a free slot (see ``_choose_slot``) and keep the prefix its cache shares with the prompt."""
        window = sequence.window
        slot, common = self._choose_slot(window, sequence.vision)
        slot.busy = True
        slot.last_used = next(self._use_counter)
        if common < len(slot.cached) and not self._forget(slot, common):
            common = 0
        sequence.slot = slot
        sequence.cached_count = common
        sequence.pending = window[common:]
        sequence.admitted_ns = time.perf_counter_ns()
        self._running.append(sequence)
        # Counted here, not in _publish: a sequence may join and finish within one step.
        self.max_active_sequences = max(self.max_active_sequences, len(self._running))

    def _choose_slot(self, window: list[int], vision: VisionPrompt | None) -> tuple[_Slot, int]:
        """The free slot whose cache shares the longest prefix with the prompt, if that prefix
        is worth the slot: it is the slot's whole cache (nothing is lost) or at least
        ``SLOT_PROMPT_SIMILARITY`` of the prompt (llama-server's rule). Otherwise an empty
        slot, else the least recently used one, so a chance match of a few tokens never
        evicts another conversation's cache; among those, one that joins busy slots,
        which keeps the busy seq ids in few runs (see ``_step``), and a slot whose cache a
        waiting request wants last. A cache worth reusing whose slot would start a new run
        first trades places with a free slot next to the busy ones. Returns the slot and
        the prefix length to keep."""
        free = [slot for slot in self._slots if not slot.busy]
        # At least the last prompt token is always evaluated again, so fresh logits exist.
        scored = [(slot, _common_prefix(slot.cached, window, len(window) - 1)) for slot in free]
        if vision is not None:
            scored = [(slot, vision.image_boundary(common)) for slot, common in scored]
        best, common = max(scored, key=lambda sc: (sc[1], -sc[0].last_used))
        busy = {slot.seq_id for slot in self._slots if slot.busy}

        def runs_added(slot: _Slot) -> int:
            """-1 fills a gap between two busy slots, 0 extends a run, +1 starts a new one."""
            return 1 - (slot.seq_id - 1 in busy) - (slot.seq_id + 1 in busy) if busy else 0

        if common > 0 and (common == len(best.cached) or common >= SLOT_PROMPT_SIMILARITY * len(window)):
            if runs_added(best) > 0:
                targets = [slot for slot in free if slot is not best]
                target = min(targets, key=lambda slot: (runs_added(slot), bool(slot.cached), slot.last_used), default=None)
                if target is not None and runs_added(target) <= 0:
                    return target, common if self._swap_caches(best, target) else 0
            return best, common
        # Only a slot with a cache can be wanted: with an empty one free, nothing is lost.
        wanted = set() if any(not slot.cached for slot in free) else self._wanted_by_waiting(free)
        return min(scored, key=lambda sc: (sc[0].seq_id in wanted, bool(sc[0].cached), runs_added(sc[0]), sc[0].last_used))

    def _wanted_by_waiting(self, free: list[_Slot]) -> set[int]:
        """The seq ids of the free slots whose cache is the best prefix of a request still
        waiting (requests that arrive together): a new request goes elsewhere, if it can,
        rather than make that request evaluate its prompt again."""
        with self._lock:
            windows = [job.window for job in self._waiting if isinstance(job, _Sequence)]
        wanted: set[int] = set()
        for window in windows:
            common, seq_id = max((_common_prefix(slot.cached, window, len(window) - 1), slot.seq_id) for slot in free)
            if common > 0:
                wanted.add(seq_id)
        return wanted

    def _swap_caches(self, source: _Slot, target: _Slot) -> bool:
        """Exchange two free slots' caches: ``source``'s moves to ``target`` and ``target``'s,
        which another conversation may come back to, to ``source`` instead of being lost.
        Only the cells the slots use travel, through host memory (for Gemma 3 270M, 18 KB a
        token). False if llama.cpp refused (both slots are then emptied)."""
        ctx = self._model.ctx
        moving = self._cells(source)
        staying = self._cells(target) if target.cached else None
        restored = bool(llama_lib.llama_state_seq_set_data(ctx, moving, len(moving), target.seq_id))
        if restored and staying is not None:
            restored = bool(llama_lib.llama_state_seq_set_data(ctx, staying, len(staying), source.seq_id))
        if not restored:
            log.warning("moving the prefix cache of slot %d to slot %d failed; both are emptied", source.seq_id, target.seq_id)
            self._forget(source, 0)
            self._forget(target, 0)
            return False
        source.cached, target.cached = target.cached, source.cached
        source.last_used, target.last_used = target.last_used, source.last_used
        if staying is None:
            self._forget(source, 0)  # the target was empty: so is the source now
        log.info("cached prefix of %d tokens moved from slot %d to slot %d, next to the busy ones", len(target.cached), source.seq_id, target.seq_id)
        return True

    def _cells(self, slot: _Slot) -> ctypes.Array[ctypes.c_uint8]:
        """The slot's KV cells as llama.cpp saves a sequence's state."""
        ctx = self._model.ctx
        size = llama_lib.llama_state_seq_get_size(ctx, slot.seq_id)
        cells = (ctypes.c_uint8 * size)()
        if llama_lib.llama_state_seq_get_data(ctx, cells, size, slot.seq_id) != size:
            raise RuntimeError(f"saving the KV cells of slot {slot.seq_id} failed")
        return cells

    def _forget(self, slot: _Slot, keep: int) -> bool:
        """Drop the slot's KV from position ``keep`` on; False if only all of it could go."""
        memory = self._model.memory
        if memory is None:
            slot.cached = []
            return keep == 0
        if keep > 0 and llama_lib.llama_memory_seq_rm(memory, slot.seq_id, keep, -1):
            del slot.cached[keep:]
            return True
        llama_lib.llama_memory_seq_rm(memory, slot.seq_id, -1, -1)
        slot.cached = []
        return keep == 0

    def _reap_cancelled(self) -> None:
        with self._lock:
            gone = [job for job in self._waiting if isinstance(job, _Sequence) and job.ticket.cancelled]
            for job in gone:
                self._waiting.remove(job)
        for job in gone:
            self._finish_job(job)
        for sequence in [s for s in self._running if s.ticket.cancelled]:
            if sequence.pending:
                log.info("completion cancelled during prompt evaluation")
            else:
                log.info("completion cancelled after %d tokens", len(sequence.generated))
            self._end(sequence, free_kv=True)

    def _step(self) -> None:
        """Evaluate one chunk of the oldest pending prompt on its own, then decode every
        decoding sequence's next token together with every prompt that has one token left
        to evaluate (a cached prompt's last token, or the one a chunk left).

        A prompt's chunks of several tokens never share a ``llama_decode`` with other
        sequences: the kernels llama.cpp picks depend on the batch's shape, and this way a
        sequence's prompt is computed exactly as it would be alone, so greedy output does not
        depend on its neighbours. A single token is computed as every decoding token is, so
        a chunk that ends its prompt leaves the last token to the batch when there is one:
        the new sequence then takes its seq id's place in the batch at once (no gap that
        would split it, see below) and gets its first token with the others' next ones, and
        requests with cached prompts that arrive together get theirs from one step.
        """
        # In seq-id order: llama.cpp splits a batch over per-sequence KV streams into one
        # ubatch per run of consecutive seq ids, and eight ubatches of one token cost
        # about twice one ubatch of eight.
        batch = [s for s in self._running if s.next_token is not None or self._one_prompt_token_left(s)]
        prompt = next((s for s in self._running if s.pending and s not in batch and not s.ticket.cancelled), None)
        if prompt is not None:
            decoding = any(s.next_token is not None for s in batch)
            self._prefill(prompt, PREFILL_CHUNK_WHILE_DECODING if decoding else self._n_batch, leave_last=bool(batch))
            if self._one_prompt_token_left(prompt):
                batch.append(prompt)
        if batch:
            self._decode(sorted(batch, key=_seq_id))

    @staticmethod
    def _one_prompt_token_left(sequence: _Sequence) -> bool:
        """The prompt has exactly one text token left to evaluate."""
        if len(sequence.pending) != 1 or sequence.ticket.cancelled:
            return False
        vision = sequence.vision
        return vision is None or vision.image_at(len(sequence.window) - 1) is None

    def _decode(self, sequences: list[_Sequence]) -> None:
        """One token of each sequence: its next token, or its prompt's last one."""
        n = 0
        for sequence in sequences:
            assert sequence.slot is not None
            token = sequence.next_token if sequence.next_token is not None else sequence.pending[0]
            n = self._put(n, token, len(sequence.slot.cached), sequence.slot.seq_id, True)
        self._batch.n_tokens = n
        status = llama_lib.llama_decode(self._model.ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} (batch of {n} tokens)")
        for index, sequence in enumerate(sequences):
            assert sequence.slot is not None
            if sequence.next_token is None:
                self._prefilled(sequence, 1, index)
                continue
            sequence.slot.cached.append(sequence.next_token)
            sequence.next_token = None
            self._sample(sequence, index)

    def _prefill(self, sequence: _Sequence, limit: int, *, leave_last: bool) -> None:
        """Evaluate up to ``limit`` of the prompt's next tokens (or its next image); with
        ``leave_last``, a text chunk stops short of the prompt's last token."""
        assert sequence.slot is not None
        ctx = self._model.ctx
        vision = sequence.vision
        if vision is not None:
            at = len(sequence.window) - len(sequence.pending)
            image = vision.image_at(at)
            if image is not None:
                self._prefill_image(sequence, image)
                return
            limit = min(limit, vision.next_image(at) - at)
        take = min(len(sequence.pending) - (1 if leave_last else 0), limit)
        last = take == len(sequence.pending)
        start = len(sequence.slot.cached)
        n = 0
        for i, token in enumerate(sequence.pending[:take]):
            n = self._put(n, token, start + i, sequence.slot.seq_id, last and i == take - 1)
        self._batch.n_tokens = n
        # A long prompt chunk can take seconds: let a cancelled request abort it inside
        # llama.cpp. Not for short ones: the callback runs (in Python) for every graph node.
        abortable = n > _ABORTABLE_CHUNK
        if abortable:
            self._abort_watch = sequence.ticket
            llama_lib.llama_set_abort_callback(ctx, self._abort_callback, None)
        try:
            status = llama_lib.llama_decode(ctx, self._batch)
        finally:
            if abortable:
                llama_lib.llama_set_abort_callback(ctx, self._no_abort_callback, None)
                self._abort_watch = None
        if status == _DECODE_ABORTED:
            return  # llama.cpp removed the chunk from the KV cache; the sequence is reaped next
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} (prompt chunk of {n} tokens)")
        self._prefilled(sequence, take, n - 1 if last else None)

    def _prefill_image(self, sequence: _Sequence, image: ImageSpan) -> None:
        """Evaluate the prompt's next item, an image, as one step of its own."""
        assert sequence.slot is not None and self._vision is not None
        last = image.end == len(sequence.window)
        began = time.perf_counter_ns()
        self._vision.evaluate(self._model.ctx, image, len(sequence.slot.cached), sequence.slot.seq_id, self._n_batch, last)
        log.debug("image of %d tokens evaluated in %.2f ms", image.n_tokens, (time.perf_counter_ns() - began) / 1e6)
        self._prefilled(sequence, image.n_pos, -1 if last else None)

    def _prefilled(self, sequence: _Sequence, count: int, logits_index: int | None) -> None:
        """The next ``count`` prompt positions are in the KV now; after the last one
        (``logits_index`` is where its logits are) the first token is sampled."""
        assert sequence.slot is not None
        sequence.slot.cached.extend(sequence.pending[:count])
        del sequence.pending[:count]
        if logits_index is not None:
            now = time.perf_counter_ns()
            sequence.prompt_ns = now - sequence.admitted_ns
            sequence.prompt_done_ns = now
            self._sample(sequence, logits_index)

    def _put(self, n: int, token: int, pos: int, seq_id: int, logits: bool) -> int:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits
        return n + 1

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        watch = self._abort_watch
        return watch is not None and watch.cancelled

    def _sample(self, sequence: _Sequence, index: int) -> None:
        """Sample the sequence's next token from row ``index`` of the batch and act on it."""
        request = sequence.request
        token = sequence.sampler.sample(self._model.ctx, index)
        sequence.generated.append(token)
        self.tokens_generated += 1
        if llama_lib.llama_vocab_is_eog(self._model.vocab, token):
            self._finish(sequence, "stop")
            return
        piece = self._piece(token)
        if sequence.gate is not None and sequence.gate.push(piece):
            # thinking is over: the grammar constrains the rest (penalties see the output too)
            sequence.gate = None
            sequence.sampler.close()
            sequence.sampler = build_sampler(self._model.vocab, request, _text(sequence.window) + sequence.generated, self._n_ctx, self._spec.seed)
        key = piece.strip(_WHITESPACE)
        sequence.repeat, sequence.last_key = (sequence.repeat + 1 if key == sequence.last_key else 0), key
        if sequence.repeat > MAX_TOKEN_REPEAT:
            log.info("prediction aborted, token repeat limit reached")
            self._finish(sequence, "stop")
            return
        logprob = self._logprob(index, token, request.top_logprobs) if request.logprobs else None
        text, logprobs = sequence.out.push(piece, logprob)
        sequence.ends.append(sequence.out.decoded_length)
        if text or logprobs:
            self._emit(
                sequence.sink,
                CompletionChunk(
                    content=text,
                    logprobs=logprobs or None,
                    eval_count=len(sequence.generated),
                    eval_duration=time.perf_counter_ns() - sequence.prompt_done_ns,
                )
            )
        if sequence.out.stopped:
            self._finish(sequence, "stop")
            return
        if len(sequence.generated) >= sequence.limit:
            self._finish(sequence, "length")
            return
        if sequence.ticket.cancelled:
            log.info("completion cancelled after %d tokens", len(sequence.generated))
            self._end(sequence, free_kv=True)
            return
        assert sequence.slot is not None
        if len(sequence.slot.cached) >= self._n_ctx:
            if not (request.shift and self._can_shift) or request.num_predict == -2:
                self._finish(sequence, "length")
                return
            self._shift_context(sequence.slot, sequence.num_keep)
        sequence.next_token = token

    def _shift_context(self, slot: _Slot, num_keep: int) -> None:
        """Drop half of the tokens after ``num_keep`` and slide the rest down (llama.cpp's
        context shift), keeping the slot's token list in step with its KV cells."""
        memory = self._model.memory
        n_past = len(slot.cached)
        discard = (n_past - num_keep) // 2
        log.info("context shift: keep %d, discard %d of %d", num_keep, discard, n_past)
        llama_lib.llama_memory_seq_rm(memory, slot.seq_id, num_keep, num_keep + discard)
        llama_lib.llama_memory_seq_add(memory, slot.seq_id, num_keep + discard, n_past, -discard)
        del slot.cached[num_keep : num_keep + discard]

    def _finish(self, sequence: _Sequence, reason: Literal["stop", "length"]) -> None:
        """Send the final chunk and end the sequence, keeping its KV as the slot's prefix cache."""
        text, logprobs = sequence.out.finish()
        context = None
        if sequence.request.return_context:
            # The response's tokens: no EOS, none that reaches into a stop string.
            out = sequence.out
            limit_at = out.stop_offset if out.stop_offset is not None else out.decoded_length
            context = _text(sequence.prompt) + [t for t, end in zip(sequence.generated, sequence.ends) if end <= limit_at]
        eval_ns = time.perf_counter_ns() - sequence.prompt_done_ns
        prompt_count = sequence.vision.n_tokens if sequence.vision is not None else len(sequence.window)
        log.info(
            "completion done: prompt %d tokens (%d cached) in %.1f ms, %d tokens in %.1f ms, %s",
            prompt_count, sequence.cached_count, sequence.prompt_ns / 1e6, len(sequence.generated), eval_ns / 1e6, reason,
        )
        self._emit(
            sequence.sink,
            CompletionChunk(
                content=text,
                logprobs=logprobs or None,
                eval_count=len(sequence.generated),
                eval_duration=eval_ns,
                done=True,
                done_reason=reason,
                prompt_eval_count=prompt_count,
                prompt_eval_duration=sequence.prompt_ns,
                prompt_cached_count=sequence.cached_count,
                context=context,
            )
        )
        self._end(sequence)

    def _end(self, sequence: _Sequence, *, free_kv: bool = False, error: BaseException | None = None) -> None:
        """Take the sequence out of the batch and release its slot (and KV when asked or on error)."""
        self._running.remove(sequence)
        slot = sequence.slot
        if slot is not None:
            if free_kv or error is not None:
                self._forget(slot, 0)
            slot.busy = False
        if error is not None:
            self._emit(sequence.sink, error)
        self._finish_job(sequence)

    def _finish_job(self, job: _Sequence | _EmbedJob) -> None:
        if isinstance(job, _Sequence):
            job.sampler.close()
            if job.vision is not None:
                job.vision.close()
            self._emit(job.sink, None)
        with self._lock:
            self._active -= 1

    # -- embeddings ---------------------------------------------------------------------

    def _run_embed(self, job: _EmbedJob) -> None:
        """Embed each text on a free slot, one decode per text, between two steps."""
        if not job.future.set_running_or_notify_cancel():
            self._finish_job(job)
            return
        loaded = self._model
        ctx = loaded.ctx
        slot = min((s for s in self._slots if not s.busy), key=lambda s: (bool(s.cached), s.last_used))
        slot.busy = True
        n_out = self._n_embd
        if llama_lib.llama_pooling_type(ctx) == llama_lib.LLAMA_POOLING_TYPE_RANK:
            n_out = llama_lib.llama_model_n_cls_out(loaded.model)
        vectors: list[list[float]] = []
        try:
            self._forget(slot, 0)
            llama_lib.llama_set_embeddings(ctx, True)
            for tokens in job.tokenized:
                if job.cancel.is_set():
                    break
                n = 0
                for pos, token in enumerate(tokens):
                    n = self._put(n, token, pos, slot.seq_id, True)
                self._batch.n_tokens = n
                status = llama_lib.llama_decode(ctx, self._batch)
                if status != 0:
                    raise RuntimeError(f"llama_decode failed with status {status} (embedding of {n} tokens)")
                pointer = llama_lib.llama_get_embeddings_seq(ctx, slot.seq_id)
                vectors.append(pointer[:n_out] if pointer else [0.0] * self._n_embd)
                self._forget(slot, 0)
        except Exception as err:
            job.future.set_exception(err)
        else:
            if job.cancel.is_set():
                job.future.set_exception(concurrent.futures.CancelledError())
            else:
                job.future.set_result(EmbeddingResponse(embeddings=vectors, prompt_eval_count=sum(map(len, job.tokenized))))
        finally:
            self._forget(slot, 0)
            llama_lib.llama_set_embeddings(ctx, False)
            slot.busy = False
            self._finish_job(job)

    # -- tokens -------------------------------------------------------------------------

    def _logprob(self, index: int, token: int, top: int) -> Logprob:
        """Log-softmax of the raw logits (as llama-server reports them) for ``token`` and the top alternatives."""
        logits = np.ctypeslib.as_array(llama_lib.llama_get_logits_ith(self._model.ctx, index), shape=(self._n_vocab,))
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
                n = llama_lib.llama_token_to_piece(self._model.vocab, token, buffer, size, 0, True)
                if n >= 0:
                    break
                size = -n
            piece = self._pieces[token] = buffer.raw[:n]
        return piece

    def _check_ids(self, tokens: list[int]) -> None:
        if any(t < 0 or t >= self._n_vocab for t in tokens):
            raise InvalidRequest("invalid token id")


def _text(tokens: list[int]) -> list[int]:
    """The text tokens of a prompt, without image pseudo-tokens (which are negative)."""
    return [t for t in tokens if t >= 0]


def _seq_id(sequence: _Sequence) -> int:
    assert sequence.slot is not None
    return sequence.slot.seq_id


def _common_prefix(cached: list[int], tokens: list[int], limit: int) -> int:
    """Length of the common prefix of ``cached`` and ``tokens[:limit]``."""
    n = min(len(cached), limit)
    if n <= 0 or cached[0] != tokens[0]:
        return 0
    if cached[:n] == tokens[:n]:  # a list comparison in C: the common case of a reused cache
        return n
    a = np.asarray(cached[:n])
    b = np.asarray(tokens[:n])
    mismatch = np.flatnonzero(a != b)
    return int(mismatch[0]) if len(mismatch) else n
