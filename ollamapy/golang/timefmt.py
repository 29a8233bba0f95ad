"""Times as Go's ``encoding/json`` writes a ``time.Time`` (RFC 3339 with a trimmed
fraction), so ``created_at``, ``modified_at`` and ``expires_at`` read as Ollama's do.

The front's answers and the model catalog both print them, so they live in the core.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["rfc3339", "rfc3339_now"]


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC, the fraction without trailing zeros (Go's ``RFC3339Nano``)."""
    moment = moment.astimezone(UTC)
    frac = f"{moment.microsecond:06d}".rstrip("0")
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


_second = -1
_second_text = ""


def rfc3339_now() -> str:
    """The current time as :func:`rfc3339` writes it.

    Every streamed chunk carries one, so the date and time of day are formatted once a
    second and only the fraction each time.
    """
    global _second, _second_text
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    if second != _second:
        _second, _second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    frac = f"{micros:06d}".rstrip("0")
    return f"{_second_text}.{frac}Z" if frac else f"{_second_text}Z"
