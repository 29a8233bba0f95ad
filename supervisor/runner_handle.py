"""The runner boundary: everything the front process asks of a loaded model.

The scheduler and every handler hold a runner only through ``RunnerHandle``, like Ollama's
``LlamaServer`` interface. ``RunnerProcess`` (a real child running llama.cpp) implements
it, and so does ``ollamapy.testing.fake_runner.FakeRunner``, which lets handler tests run
the whole HTTP stack in milliseconds without llama.cpp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest, EmbeddingResponse, HealthResponse, LoadSpec
from ollamapy.supervisor.placement.plan import Placement

__all__ = ["RunnerHandle"]


class RunnerHandle(Protocol):
    """A runner that has loaded its model and serves requests until ``close``.

    Failures surface as ``ollamapy.errors`` classes: ``InvalidRequest`` for input the
    runner refuses, ``RunnerCrashed`` when it dies, ``OllamapyError`` otherwise.
    """

    @property
    def pid(self) -> int:
        """The process serving the model (logged, and how operators find it)."""
        ...

    @property
    def spec(self) -> LoadSpec:
        """The llama.cpp parameters the model was loaded with (context, batch, sequences)."""
        ...

    @property
    def placement(self) -> Placement | None:
        """The devices chosen for this runner when it was started; None when nobody planned one."""
        ...

    def has_exited(self) -> bool:
        """True once the runner is gone (crashed or closed): the scheduler then drops it."""
        ...

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the runner and release what it holds; safe to call twice."""
        ...

    def memory_size(self) -> tuple[int, int]:
        """(total, VRAM) bytes the loaded model occupies, as far as the runner knows (0 if not)."""
        ...

    async def health(self, timeout: float = 10.0) -> HealthResponse:
        """The runner's own view of its load (sequences in its batch, KV cells in use);
        answered while it decodes, within ``timeout`` seconds or an error."""
        ...

    def completion(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        """Stream one generation's chunks; the last has ``done``. Closing the iterator early
        stops the generation."""
        ...

    async def embed(self, texts: list[str]) -> EmbeddingResponse:
        """Pooled, unnormalized embeddings, one per text."""
        ...

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        """Token ids of ``text`` (``add_special``: with BOS/EOS as for a whole prompt)."""
        ...

    async def detokenize(self, tokens: list[int]) -> str:
        """The text of token ids."""
        ...
