"""A runner without llama.cpp, for handler tests: canned completions, embeddings, tokens.

``FakeRunner`` has everything the front process asks of a runner (the
``supervisor.runner_handle.RunnerHandle`` protocol), and ``FakeRunnerFactory`` is a
scheduler runner factory that starts them, so a whole application built with
``create_app(models_dir, runner_factory=FakeRunnerFactory())`` answers over HTTP in
milliseconds. What a completion says is scripted per request with ``FakeReply``.

The tokenizer is byte-level: a text's tokens are its UTF-8 bytes (plus BOS, id 256, with
``add_special``), so counts are predictable and ``detokenize`` inverts ``tokenize``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ollamapy.api.options import LoadOptions
from ollamapy.api.runner_protocol import (
    CompletionChunk,
    CompletionRequest,
    EmbeddingResponse,
    HealthResponse,
    LoadSpec,
    Logprob,
    TokenLogprob,
)
from ollamapy.errors import RunnerCrashed
from ollamapy.store.model import Model

__all__ = ["BOS", "CRASH_MESSAGE", "FakeReply", "FakeRunner", "FakeRunnerFactory", "fake_embedding"]

BOS = 256
"""The fake tokenizer's BOS id (byte ids are 0-255)."""
CRASH_MESSAGE = "model runner has unexpectedly stopped (fake runner told to fail)"
"""The ``RunnerCrashed`` message of a reply with ``fail_after``."""
PROMPT_EVAL_NS = 1_000_000
"""Reported nanoseconds for evaluating the prompt."""
TOKEN_NS = 250_000
"""Reported nanoseconds per generated token."""

_pids = itertools.count(90_000)


@dataclass(frozen=True)
class FakeReply:
    """What one completion streams: each piece is one chunk and counts as one token.

    ``fail_after``: after that many pieces the runner "dies" (``RunnerCrashed``, and
    ``has_exited()`` turns true), as a real runner that crashed mid-stream.
    ``hold``: after the first piece the stream waits for this event, so a test can look at
    the server while the request holds its slot.
    """

    pieces: Sequence[str] = ("Hello", " world", "!")
    done_reason: Literal["stop", "length"] = "stop"
    fail_after: int | None = None
    hold: asyncio.Event | None = None


def fake_embedding(text: str, dimensions: int = 4) -> list[float]:
    """A deterministic, unnormalized vector for ``text`` (never all zeros)."""
    data = text.encode()
    return [float(len(data) + 1)] + [float(sum(data[i::dimensions]) % 97) for i in range(dimensions - 1)]


def _tokens(text: str, add_special: bool) -> list[int]:
    return ([BOS] if add_special else []) + list(text.encode())


class FakeRunner:
    """A loaded "model" that answers from a script; records the completions it was asked for."""

    def __init__(
        self,
        spec: LoadSpec,
        *,
        reply: Callable[[CompletionRequest], FakeReply] = lambda _request: FakeReply(),
        embedding: Callable[[str], list[float]] = fake_embedding,
        memory: tuple[int, int] = (0, 0),
    ) -> None:
        self._spec = spec
        self._pid = next(_pids)
        self._reply = reply
        self._embedding = embedding
        self._memory = memory
        self.exited = False
        """Set by ``close`` and by a scripted crash; tests may set it to simulate a death."""
        self.requests: list[CompletionRequest] = []
        """Every completion request received, in order (the rendered prompt, the sampling options)."""
        self._cells: dict[int, int] = {}
        """KV cells each streaming completion holds (prompt and generated tokens), as a
        real runner's slots do."""
        self._streams = itertools.count()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def spec(self) -> LoadSpec:
        return self._spec

    @property
    def placement(self) -> None:
        """No devices are planned for a fake (``/api/ps`` then reports the model's size)."""
        return None

    def has_exited(self) -> bool:
        return self.exited

    async def close(self, timeout: float = 5.0) -> None:
        self.exited = True

    def memory_size(self) -> tuple[int, int]:
        return self._memory

    async def health(self, timeout: float = 10.0) -> HealthResponse:
        """Loaded; the completions streaming now hold a slot each and their tokens' cells."""
        if self.exited:
            raise RunnerCrashed(CRASH_MESSAGE)
        return HealthResponse(
            status="ok",
            progress=1.0,
            active=len(self._cells),
            active_sequences=len(self._cells),
            kv_cells_used=sum(self._cells.values()),
            kv_cells_total=self._spec.num_ctx,
        )

    async def completion(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        """Stream the scripted reply: one chunk per piece, then the done chunk with counts."""
        self.requests.append(request)
        reply = self._reply(request)
        prompt_tokens = _tokens(request.prompt or "", True) if request.tokens is None else list(request.tokens)
        generated: list[int] = []
        stream = next(self._streams)
        try:
            for count, piece in enumerate(reply.pieces, start=1):
                if reply.fail_after is not None and count > reply.fail_after:
                    self.exited = True
                    raise RunnerCrashed(CRASH_MESSAGE)
                generated += _tokens(piece, False)
                self._cells[stream] = len(prompt_tokens) + len(generated)
                yield CompletionChunk(
                    content=piece,
                    logprobs=[_logprob(piece, request.top_logprobs)] if request.logprobs else None,
                    eval_count=count,
                    eval_duration=count * TOKEN_NS,
                )
                if count == 1 and reply.hold is not None:
                    await reply.hold.wait()
        finally:
            self._cells.pop(stream, None)
        if reply.fail_after is not None and reply.fail_after >= len(reply.pieces):
            self.exited = True
            raise RunnerCrashed(CRASH_MESSAGE)
        yield CompletionChunk(
            done=True,
            done_reason=reply.done_reason,
            eval_count=len(reply.pieces),
            eval_duration=len(reply.pieces) * TOKEN_NS,
            prompt_eval_count=len(prompt_tokens),
            prompt_eval_duration=PROMPT_EVAL_NS,
            context=prompt_tokens + generated if request.return_context else None,
        )

    async def embed(self, texts: list[str]) -> EmbeddingResponse:
        return EmbeddingResponse(
            embeddings=[self._embedding(text) for text in texts],
            prompt_eval_count=sum(len(_tokens(text, True)) for text in texts),
        )

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        return _tokens(text, add_special)

    async def detokenize(self, tokens: list[int]) -> str:
        return bytes(t for t in tokens if t < BOS).decode("utf-8", errors="replace")


def _logprob(piece: str, top: int) -> Logprob:
    """The piece as the chosen token, with ``top`` made-up alternatives."""
    alternatives = [TokenLogprob(token=piece, logprob=-0.25, bytes=list(piece.encode()))]
    alternatives += [TokenLogprob(token=f"<alt{i}>", logprob=-2.0 - i, bytes=list(f"<alt{i}>".encode())) for i in range(1, top)]
    return Logprob(token=piece, logprob=-0.25, bytes=list(piece.encode()), top_logprobs=alternatives[:top])


class _LoadRequest(Protocol):
    """The scheduler's load request, as far as the fake reads it."""

    @property
    def model(self) -> Model: ...

    @property
    def options(self) -> LoadOptions: ...

    @property
    def num_parallel(self) -> int: ...


@dataclass
class FakeRunnerFactory:
    """A scheduler runner factory starting ``FakeRunner``s; change ``reply`` at any time.

    ``reply`` decides each completion (a ``FakeReply``, or a function of the request);
    ``started`` lists every runner started, oldest first.
    """

    reply: FakeReply | Callable[[CompletionRequest], FakeReply] = field(default_factory=FakeReply)
    embedding: Callable[[str], list[float]] = fake_embedding
    memory: tuple[int, int] = (0, 0)
    started: list[FakeRunner] = field(default_factory=list)

    def _reply_for(self, request: CompletionRequest) -> FakeReply:
        return self.reply if isinstance(self.reply, FakeReply) else self.reply(request)

    async def __call__(self, request: _LoadRequest) -> FakeRunner:
        num_ctx = (request.options.num_ctx or 4096) * request.num_parallel
        spec = LoadSpec(
            model_path=str(request.model.model_path),
            num_ctx=num_ctx,
            num_parallel=request.num_parallel,
            num_batch=request.options.num_batch,
            num_thread=0,
        )
        runner = FakeRunner(spec, reply=self._reply_for, embedding=self.embedding, memory=self.memory)
        self.started.append(runner)
        return runner

    @property
    def last(self) -> FakeRunner:
        """The runner started last (most tests load one model)."""
        return self.started[-1]
