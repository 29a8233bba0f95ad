"""Run blocking library code off the event loop while streaming what it reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["stream_from_thread"]

_DONE = object()


async def stream_from_thread(work: Callable[[Callable[[dict[str, Any]], None]], None]) -> AsyncIterator[dict[str, Any]]:
    """Run ``work(emit)`` in a thread and yield every event it emits, in order.

    An exception raised by ``work`` is re-raised here after the events before it, so
    the streaming layer can turn it into an HTTP error or a final error line.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def emit(event: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def run() -> None:
        try:
            work(emit)
        except BaseException as exc:  # handed to the consumer, not swallowed
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    task = loop.run_in_executor(None, run)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        await asyncio.shield(task)
