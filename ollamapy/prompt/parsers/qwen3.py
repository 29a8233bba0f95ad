"""Qwen3's output: ``<think>…</think>`` reasoning, then content and
``<tool_call>{"name": …, "arguments": …}</tool_call>`` calls (Ollama's ``qwen3``,
``qwen3-thinking``, ``qwen3.5`` and ``qwen3-vl-*`` parsers).

:class:`TaggedParser` is the state machine these share with ``qwen3-coder``: a thinking
prompt ends with ``<think>``, so output starts inside the thinking section (one explicit
``<think>`` the model writes anyway is dropped); ``</think>`` — or a tool call opened
before it — ends it; whitespace around tags is eaten; the text between the tool tags is
decoded when the closing tag arrives.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any, ClassVar

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message, ToolCall
from ollamapy.errors import OllamapyError
from ollamapy.prompt.thinking import GO_SPACE

from .base import Parsed, Parser, ThinkValue, hold_back, make_call, thinking_enabled

__all__ = ["Qwen3Parser", "Qwen3ThinkingParser", "TaggedParser"]


class _State(enum.Enum):
    THINKING_START_SPACE = enum.auto()
    THINKING = enum.auto()
    THINKING_DONE_SPACE = enum.auto()
    CONTENT = enum.auto()
    TOOL_SPACE = enum.auto()
    TOOL = enum.auto()


class TaggedParser(Parser):
    """Thinking, content and tool calls delimited by fixed tags (see the module doc)."""

    think_open: ClassVar[str] = "<think>"
    think_close: ClassVar[str] = "</think>"
    tool_open: ClassVar[str] = "<tool_call>"
    tool_close: ClassVar[str] = "</tool_call>"
    default_thinking: ClassVar[bool] = False
    """Thinking when the request does not say."""

    def __init__(self) -> None:
        self._state = _State.CONTENT
        self._buffer = ""
        self._open_pending = False
        self._tools: list[Tool] = []
        self._count = 0

    def init(self, tools: Sequence[Tool], last_message: Message | None, think: ThinkValue) -> list[Tool]:
        self._tools = list(tools)
        prefilled = last_message is not None and last_message.role == "assistant" and bool(last_message.content)
        if self.thinking_support and thinking_enabled(think, self.default_thinking) and not prefilled:
            self._state = _State.THINKING
            self._open_pending = True
        return self._tools

    def thinking_end(self) -> list[str]:
        return [self.think_close] if self._state in (_State.THINKING_START_SPACE, _State.THINKING) else []

    def add(self, text: str, done: bool) -> Parsed:
        self._buffer += text
        out: dict[str, list[str]] = {"content": [], "thinking": []}
        calls: list[ToolCall] = []
        while True:
            more, kind, value = self._step()
            if kind == "call":
                name, args = self.decode_call(value)
                calls.append(make_call(name, args, self._count))
                self._count += 1
            elif value:
                out[kind].append(value)
            if not more:
                break
        return Parsed("".join(out["content"]), "".join(out["thinking"]), calls)

    def decode_call(self, raw: str) -> tuple[str, dict[str, Any]]:
        """A raw tool call (the text between the tool tags) as (name, arguments)."""
        try:
            parsed = json.loads(raw)
        except ValueError as err:
            raise OllamapyError(f"failed to parse JSON: {err}") from err
        name = parsed.get("name") if isinstance(parsed, dict) else None
        if not name or not isinstance(name, str):
            raise OllamapyError("empty function name")
        args = parsed.get("arguments")
        return name, args if isinstance(args, dict) else {}

    def _split(self, tag: str) -> tuple[str, str]:
        """Cut the buffer at ``tag``: the text before it (right-trimmed), the rest kept
        with its leading whitespace eaten."""
        before, after = self._buffer.split(tag, 1)
        self._buffer = after.lstrip(GO_SPACE)
        return before.rstrip(GO_SPACE), self._buffer

    def _eat_space(self, then: _State) -> tuple[bool, str, str]:
        self._buffer = self._buffer.lstrip(GO_SPACE)
        if not self._buffer:
            return False, "content", ""
        self._state = then
        return True, "content", ""

    def _enter_tool(self, kind: str) -> tuple[bool, str, str]:
        before_text, after = self._split(self.tool_open)
        self._state = _State.TOOL if after else _State.TOOL_SPACE
        return True, kind, before_text

    def _step(self) -> tuple[bool, str, str]:
        """One transition: (keep going, "content"/"thinking"/"call", text)."""
        state = self._state
        buf = self._buffer
        if state is _State.THINKING:
            if self._open_pending:
                trimmed = buf.lstrip(GO_SPACE)
                if trimmed.startswith(self.think_open):
                    self._buffer = trimmed[len(self.think_open) :]
                    self._open_pending = False
                    self._state = _State.THINKING_START_SPACE
                    return True, "thinking", ""
                if self.think_open.startswith(trimmed):
                    return False, "thinking", ""
                self._open_pending = False
            close_at = buf.find(self.think_close)
            tool_at = buf.find(self.tool_open)
            if tool_at != -1 and (close_at == -1 or tool_at < close_at):
                return self._enter_tool("thinking")
            if close_at != -1:
                thinking, rest = self._split(self.think_close)
                self._state = _State.CONTENT if rest else _State.THINKING_DONE_SPACE
                return True, "thinking", thinking
            emit, self._buffer = hold_back(buf, self.think_close, self.tool_open)
            return False, "thinking", emit
        if state is _State.THINKING_START_SPACE:
            return self._eat_space(_State.THINKING)
        if state is _State.THINKING_DONE_SPACE:
            return self._eat_space(_State.CONTENT)
        if state is _State.TOOL_SPACE:
            return self._eat_space(_State.TOOL)
        if state is _State.CONTENT:
            if self.tool_open in buf:
                return self._enter_tool("content")
            emit, self._buffer = hold_back(buf, self.tool_open)
            return False, "content", emit
        if self.tool_close in buf:
            raw, _ = self._split(self.tool_close)
            self._state = _State.CONTENT
            return True, "call", raw
        return False, "content", ""


class Qwen3Parser(TaggedParser):
    """``qwen3`` / ``qwen3-vl-instruct``: tool calls only (instruct checkpoints)."""


class Qwen3ThinkingParser(TaggedParser):
    """``qwen3-thinking`` / ``qwen3.5`` / ``qwen3-vl-thinking``: thinking unless the
    request turns it off."""

    thinking_support = True
    default_thinking = True
