"""What every built-in renderer shares: the interface and small formatting helpers.

Ollama renders some model families with hand-written Go code instead of a template (the
model config's ``renderer``). A renderer turns the chat's messages, tools and ``think``
value into the prompt text, ending where the model's turn starts (or inside a final
assistant message, which is a prefill).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.golang.jsonenc import format_number
from ollamapy.golang.jsonenc import marshal as go_marshal

__all__ = ["IM_END", "IM_START", "Renderer", "ThinkValue", "go_json", "go_value", "json_with_spaces"]

ThinkValue = bool | str | None
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


class Renderer(abc.ABC):
    """A built-in prompt renderer (stateless; one instance may render many prompts)."""

    @abc.abstractmethod
    def render(self, messages: Sequence[Message], tools: Sequence[Tool], think: ThinkValue) -> str:
        """The prompt for ``messages`` with ``tools`` described to the model."""


def go_json(value: Any) -> str:
    """Go's ``json.Marshal`` of a JSON value, keys in their given order."""
    return go_marshal(value, sort_keys=False)


def json_with_spaces(value: Any) -> str:
    """JSON with ``", "`` and ``": "`` separators (Python's ``json.dumps`` shape, which
    Qwen's reference templates print), non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def go_value(value: Any) -> str:
    """A JSON value as Go's ``fmt.Sprintf("%v")`` prints a decoded one (objects and
    arrays as JSON, as Ollama formats tool-call arguments)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    return go_json(value)
