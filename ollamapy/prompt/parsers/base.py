"""What every built-in output parser shares: the interface and the streaming helpers.

Ollama drives some model families with hand-written parsers instead of template-derived
thinking/tool tags (the model config's ``parser``). A parser is fed the generated text
piece by piece and returns what can be sent now: content, thinking and completed tool
calls. Text that could still turn into a tag is held back, and trailing whitespace is
held until something follows it, so a tag split across pieces never leaks.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message, ToolCall, ToolCallFunction
from ollamapy.prompt.thinking import GO_SPACE
from ollamapy.prompt.tool_parser import tool_call_id

__all__ = [
    "Parsed",
    "Parser",
    "ThinkValue",
    "hold_back",
    "make_call",
    "overlap",
    "thinking_enabled",
    "trailing_space",
]

ThinkValue = bool | str | None


class Parsed(NamedTuple):
    """One step of a parser's output: what the user gets now."""

    content: str
    thinking: str
    calls: list[ToolCall]


class Parser(abc.ABC):
    """A built-in parser for one generation (not reusable, not thread-safe).

    Call :meth:`init` once before :meth:`add`; it returns the tools as the prompt must
    show them (harmony renames them), as Ollama's ``Parser.Init`` does.
    """

    thinking_support: ClassVar[bool] = False
    """The parser can split thinking from content (Ollama's ``HasThinkingSupport``)."""

    def init(self, tools: Sequence[Tool], last_message: Message | None, think: ThinkValue) -> list[Tool]:
        """Prepare for a generation that follows a prompt ending with ``last_message``
        (a final assistant message is a prefill)."""
        return list(tools)

    @abc.abstractmethod
    def add(self, text: str, done: bool) -> Parsed:
        """Feed generated text (``done`` on the last piece); return what is ready."""

    def thinking_end(self) -> list[str]:
        """Texts that end the thinking section of this generation (where a ``format``
        grammar may start); empty when the generation does not start by thinking."""
        return []


def thinking_enabled(think: ThinkValue, default: bool = False) -> bool:
    """A request's ``think`` as on/off (a level string is on), ``default`` when unset."""
    if think is None:
        return default
    return bool(think)


def overlap(s: str, delim: str) -> int:
    """Length of the longest suffix of ``s`` that is a prefix of ``delim``."""
    for n in range(min(len(delim), len(s)), 0, -1):
        if s.endswith(delim[:n]):
            return n
    return 0


def trailing_space(s: str) -> int:
    """Length of the whitespace (Go's ``unicode.IsSpace``) at the end of ``s``."""
    return len(s) - len(s.rstrip(GO_SPACE))


def hold_back(buffer: str, *tags: str) -> tuple[str, str]:
    """Split ``buffer`` into the part that can be emitted and the part to keep: a partial
    tag at the end, and the whitespace before it (or at the end), are kept."""
    n = max((overlap(buffer, tag) for tag in tags), default=0)
    before = buffer[: len(buffer) - n]
    cut = len(before) - trailing_space(before)
    return buffer[:cut], buffer[cut:]


def make_call(name: str, arguments: dict[str, Any], index: int) -> ToolCall:
    """A tool call with a fresh id, as the chat handler hands it out."""
    return ToolCall(id=tool_call_id(), function=ToolCallFunction(index=index, name=name, arguments=arguments))
