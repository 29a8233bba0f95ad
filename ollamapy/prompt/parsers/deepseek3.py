"""DeepSeek-V3.1's output (Ollama's ``deepseek3`` parser).

With thinking on, the prompt ends with ``<think>``, so output starts with reasoning up to
``</think>``. Tool calls come as
``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>name<｜tool▁sep｜>{json}<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>``;
text between ``<｜tool▁output▁begin｜>`` and ``<｜tool▁output▁end｜>`` is passed on as content.
Content streams as it comes, except a possible start of a tool tag at its end.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Sequence

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message, ToolCall
from ollamapy.prompt.thinking import GO_SPACE

from .base import Parsed, Parser, ThinkValue, hold_back, make_call, overlap, thinking_enabled

__all__ = ["DeepSeek3Parser"]

log = logging.getLogger("ollamapy.prompt")

THINK_CLOSE = "</think>"
CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
OUTPUT_END = "<｜tool▁output▁end｜>"


class _State(enum.Enum):
    THINKING = enum.auto()
    CONTENT = enum.auto()
    TOOL_CALLS = enum.auto()
    TOOL_OUTPUT = enum.auto()


class DeepSeek3Parser(Parser):
    """``deepseek3``: thinking (when asked for), content, tool calls."""

    thinking_support = True

    def __init__(self) -> None:
        self._state = _State.CONTENT
        self._buffer = ""
        self._count = 0

    def init(self, tools: Sequence[Tool], last_message: Message | None, think: ThinkValue) -> list[Tool]:
        prefilled = last_message is not None and last_message.role == "assistant" and bool(last_message.content)
        if thinking_enabled(think) and not prefilled:
            self._state = _State.THINKING
        return list(tools)

    def thinking_end(self) -> list[str]:
        return [THINK_CLOSE] if self._state is _State.THINKING else []

    def add(self, text: str, done: bool) -> Parsed:
        self._buffer += text
        content: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        while self._buffer:
            state, buf = self._state, self._buffer
            if state is _State.THINKING:
                if THINK_CLOSE in buf:
                    before, after = buf.split(THINK_CLOSE, 1)
                    thinking.append(before.rstrip(GO_SPACE))
                    self._buffer = after.lstrip(GO_SPACE)
                    self._state = _State.CONTENT
                    continue
                emit, self._buffer = hold_back(buf, THINK_CLOSE)
                thinking.append(emit)
                break
            if state is _State.CONTENT:
                if CALLS_BEGIN in buf:
                    before, self._buffer = buf.split(CALLS_BEGIN, 1)
                    content.append(before.rstrip(GO_SPACE))
                    self._state = _State.TOOL_CALLS
                    continue
                if OUTPUT_BEGIN in buf:
                    before, self._buffer = buf.split(OUTPUT_BEGIN, 1)
                    content.append(before)
                    self._state = _State.TOOL_OUTPUT
                    continue
                keep = 0 if done else max(overlap(buf, CALLS_BEGIN), overlap(buf, OUTPUT_BEGIN))
                content.append(buf[: len(buf) - keep])
                self._buffer = buf[len(buf) - keep :]
                break
            if state is _State.TOOL_CALLS:
                call = self._next_call(buf)
                if call is not None:
                    calls.append(call)
                    continue
                if CALLS_END in buf:
                    self._buffer = buf.split(CALLS_END, 1)[1].lstrip(GO_SPACE)
                    self._state = _State.CONTENT
                    continue
                break
            if OUTPUT_END not in buf:
                break
            output, self._buffer = buf.split(OUTPUT_END, 1)
            content.append(output)
            self._state = _State.CONTENT
        return Parsed("".join(content), "".join(thinking), calls)

    def _next_call(self, buf: str) -> ToolCall | None:
        """The first complete ``name<sep>{args}`` call in the buffer, consumed."""
        start = buf.find(CALL_BEGIN)
        if start == -1:
            return None
        start += len(CALL_BEGIN)
        end = buf.find(CALL_END, start)
        if end == -1:
            return None
        name, sep, args_text = buf[start:end].partition(SEP)
        try:
            args = json.loads(args_text.strip(GO_SPACE)) if sep else None
        except ValueError:
            args = None
        if not isinstance(args, dict):
            log.warning("deepseek tool call parsing failed: %r", buf[start:end])
            return None
        self._buffer = buf[end + len(CALL_END) :].lstrip(GO_SPACE)
        call = make_call(name.strip(GO_SPACE), args, self._count)
        self._count += 1
        return call
