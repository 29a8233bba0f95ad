"""Graceful shutdown of streaming responses.

On SIGTERM/SIGINT the listener closes first; then in-flight streams get a grace period
to finish on their own. Streams still running after it are cancelled, and each one ends
with a ``server is shutting down`` error event, in its API's shape, instead of a cut
connection (``supervisor.routes.streaming`` writes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from aiohttp import web

__all__ = ["SHUTDOWN_ERROR", "STREAMS", "StreamTracker"]

log = logging.getLogger("ollamapy.server")

SHUTDOWN_ERROR = "server is shutting down"


class StreamTracker:
    """The tasks currently writing a streamed response."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self.draining = False

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Register the current task as a stream for as long as the block runs."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def drain(self, grace: float) -> None:
        """Let streams finish for ``grace`` seconds, then cancel the rest and wait for them."""
        self.draining = True
        if not self._tasks:
            return
        log.info("waiting up to %.1f s for %d streaming responses to finish", grace, len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.info("ended %d streaming responses at shutdown", len(pending))
            await asyncio.wait(pending, timeout=5)


STREAMS: web.AppKey[StreamTracker] = web.AppKey("streams", StreamTracker)
"""The application's in-flight streams, drained at shutdown."""
