"""Parsing of the streamed answers tests read: NDJSON lines and server-sent events."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ndjson", "sse"]


def ndjson(text: str) -> list[dict[str, Any]]:
    """Every JSON line of an NDJSON body."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sse(text: str) -> list[tuple[str | None, Any]]:
    """Every event of a server-sent-events body as (``event:`` name or None, ``data:`` value).

    ``data`` is parsed as JSON, except OpenAI's ``[DONE]`` which stays a string.
    """
    events: list[tuple[str | None, Any]] = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        name, data = None, ""
        for line in frame.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data = value
        events.append((name, data if data == "[DONE]" else json.loads(data)))
    return events
