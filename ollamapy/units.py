"""Byte sizes as ollamapy prints them: in binary units, as Ollama's logs print sizes.

It lives in the core because the front process (logs, placement messages) and the CLI
(``ollamapy plan``) print the same sizes the same way.
"""

from __future__ import annotations

__all__ = ["format_bytes"]


def format_bytes(n: int) -> str:
    """Binary units with one decimal (``5.4 GiB``, ``457.0 MiB``); whole bytes below 1 KiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
