"""Times as Go's ``encoding/json`` writes a ``time.Time`` (RFC 3339 with a trimmed
fraction), so ``created_at``, ``modified_at`` and ``expires_at`` read as Ollama's do.

The front's answers and the model catalog both print them, so they live in the core.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["rfc3339", "rfc3339_now"]


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC, the fraction without trailing zeros (Go's ``RFC3339Nano``)."""
    moment = moment.astimezone(UTC)
    frac = f"{moment.microsecond:06d}".rstrip("0")
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def rfc3339_now() -> str:
    """The current time as :func:`rfc3339` writes it."""
    return rfc3339(datetime.now(UTC))
