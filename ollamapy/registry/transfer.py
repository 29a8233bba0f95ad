"""What downloads and uploads share: part sizing, retry pacing and progress events.

Defaults are Ollama's (16 parts of 100 MB–1000 MB, 30 s stall timeout, 6 attempts with
1, 2, 4, … s pauses, progress every 60 ms); tests pass small parts and short timeouts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ollamapy.api.types import ProgressResponse
from ollamapy.errors import OllamapyError

__all__ = ["TransferSettings", "gather_all", "jittered", "progress_event", "watch"]

_MB = 1000 * 1000  # Ollama's format.MegaByte is decimal


@dataclass(frozen=True)
class TransferSettings:
    """Part sizing, patience and pacing for blob transfers (Ollama's values by default)."""

    part_count: int = 16
    """Parts per blob (and how many download at once)."""
    min_part_size: int = 100 * _MB
    max_part_size: int = 1000 * _MB
    stall_timeout: float = 30.0
    """Seconds without a byte before a part is dropped and asked for again (not counted as a failure)."""
    max_retries: int = 6
    """Attempts per part (and per upload commit) before the transfer fails."""
    retry_delay: float = 1.0
    """Pause after the first failed attempt; doubles after each further one (with ±50 % jitter)."""
    redirect_timeout: float = 30.0
    """How long the first GET may keep failing while looking for the blob's direct (CDN) URL."""
    progress_interval: float = 0.06

    def split(self, total: int) -> list[tuple[int, int]]:
        """``(offset, size)`` of each part of a ``total``-byte blob: ``total / part_count`` clamped to the bounds."""
        size = min(max(total // self.part_count, self.min_part_size), self.max_part_size)
        return [(offset, min(size, total - offset)) for offset in range(0, total, size)]

    def retry_pause(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1, 2, 4, … × ``retry_delay``)."""
        return jittered(self.retry_delay * 2 ** (failures - 1))


def jittered(seconds: float) -> float:
    """``seconds`` scaled by a random factor in [0.5, 1.5) so parallel retries do not stampede."""
    return seconds * (random.random() + 0.5)


def progress_event(status: str, digest: str = "", total: int = 0, completed: int = 0) -> dict[str, Any]:
    """One progress line; zero values are left out, as Go's ``omitempty`` does."""
    return ProgressResponse(status=status, digest=digest or None, total=total or None, completed=completed or None).to_wire()


async def gather_all(coroutines: Iterable[Awaitable[Any]]) -> None:
    """Run all; on the first failure cancel the rest, wait for them, and raise that failure."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def watch(
    task: asyncio.Future[Any], progress: Callable[[], dict[str, Any] | None], interval: float
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield ``progress()`` every ``interval`` and once more when ``task`` succeeds; raise its error.

    Waiting never cancels ``task`` (it may be shared); the caller decides that. A task
    cancelled under the watcher (the server shutting down) ends it with Go's ``context canceled``.
    """
    while True:
        done, _ = await asyncio.wait({task}, timeout=interval)
        if done:
            if task.cancelled():
                raise OllamapyError("context canceled")
            if (error := task.exception()) is not None:
                raise error
        event = progress()
        if event is not None:
            yield event
        if done:
            return
