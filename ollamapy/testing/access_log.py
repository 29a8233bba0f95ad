"""The ``ollamapy.access`` log lines as a test sees them, one at a time as they are written."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

__all__ = ["AccessLines", "capture_access_log"]


class AccessLines(logging.Handler):
    """The access log's lines; ``next_line`` waits for the next one to be written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: asyncio.Queue[str] = asyncio.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put_nowait(record.getMessage())

    async def next_line(self, timeout: float = 60) -> str:
        return await asyncio.wait_for(self.lines.get(), timeout=timeout)


@contextlib.contextmanager
def capture_access_log() -> Iterator[AccessLines]:
    """Collect the access log at INFO while the block runs, whatever the logger's level."""
    handler = AccessLines()
    logger = logging.getLogger("ollamapy.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
