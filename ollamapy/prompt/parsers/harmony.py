"""gpt-oss's harmony output (Ollama's ``harmony`` parser).

The model writes messages ``<|start|>{header}<|message|>{body}<|end|>``; the prompt
already opened the first one (``<|start|>assistant``). A header names a channel
(``<|channel|>analysis``/``commentary``/``final``) and, for a tool call, a recipient
(``to=functions.get_weather``, before or after the channel). Bodies on the analysis
channel are thinking, on final (or commentary without a recipient) content, and a body
addressed to a function is the call's JSON arguments, decoded when generation ends
(``<|call|>`` stops it). Tool names are made valid identifiers for the prompt
(:func:`harmony_names`) and mapped back in the calls.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message, ToolCall
from ollamapy.errors import OllamapyError
from ollamapy.prompt.thinking import GO_SPACE

from .base import Parsed, Parser, ThinkValue, make_call, overlap

__all__ = ["BUILTIN_TOOLS", "HarmonyParser", "harmony_names"]

START, END, MESSAGE, CHANNEL, CONSTRAIN = "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>"

BUILTIN_TOOLS = frozenset({"browser.open", "browser.search", "browser.find", "python"})
"""gpt-oss's own tools, which keep their names."""

_CONTENT_OPENERS = (
    "<|channel|>final<|message|>",
    "<|channel|>final <|constrain|>json<|message|>",
    "<|channel|>final<|constrain|>json<|message|>",
    "<|channel|>final json<|message|>",
    "<|channel|>commentary<|message|>",
    "<|start|>assistant<|message|>",
)
"""Headers that open a message whose body is content: the analysis is over."""


def _identifier(name: str) -> str:
    """``name`` as a TypeScript-like identifier: space, ``-`` and ``.`` become ``_``,
    other characters that are not letters, digits, ``_`` or ``$`` go."""
    out = "".join("_" if c in " -." else c for c in name if c in " -._$" or c.isalpha() or c.isdigit())
    if not out:
        return "unnamed"
    return "_" + out if out[0].isdigit() else out


def harmony_names(names: Sequence[str]) -> dict[str, str]:
    """The name each tool has in a harmony prompt (user name → harmony name): valid
    identifiers, duplicates numbered ``f``, ``f_2``, ``f_3``; built-in tools unchanged."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = _identifier(name)
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        if name in BUILTIN_TOOLS:
            candidate = name
        mapping[name] = candidate
        taken.add(candidate)
    return mapping


class _Part(enum.Enum):
    SEEKING = enum.auto()
    HEADER = enum.auto()
    BODY = enum.auto()


class _Body(enum.Enum):
    CONTENT = enum.auto()
    THINKING = enum.auto()
    TOOL = enum.auto()


def _header(raw: str) -> tuple[str, str, str]:
    """(role, channel, recipient) of a message header."""
    if CONSTRAIN in raw:
        raw = raw.replace(CONSTRAIN, " " + CONSTRAIN, 1).strip(GO_SPACE)
    channel = ""
    at = raw.find(CHANNEL)
    if at != -1:
        after = raw[at + len(CHANNEL) :]
        end = next((i for i, c in enumerate(after) if c in GO_SPACE), len(after))
        channel = after[:end]
        raw = (raw[:at] + after[end:]).strip(GO_SPACE)
    tokens = raw.split()
    if not tokens:
        return "", channel, ""
    role, rest = tokens[0], tokens[1:]
    if role.startswith("to="):
        return "tool", channel, role[3:]
    recipient = rest[0][3:] if rest and rest[0].startswith("to=") else ""
    return role, channel, recipient


class HarmonyParser(Parser):
    """``harmony``: channels to thinking/content, function messages to tool calls."""

    thinking_support = True

    def __init__(self) -> None:
        self._part = _Part.SEEKING
        self._body = _Body.CONTENT
        self._buffer = ""
        self._tool: str | None = None
        self._tool_args = ""
        self._to_user: dict[str, str] = {}
        self._content_prefill = False

    def init(self, tools: Sequence[Tool], last_message: Message | None, think: ThinkValue) -> list[Tool]:
        prefill = last_message if last_message is not None and last_message.role == "assistant" else None
        if prefill is not None and prefill.content:
            self._buffer = START + "assistant" + CHANNEL + "final" + MESSAGE
            self._content_prefill = True
        elif prefill is not None and prefill.thinking:
            self._buffer = START + "assistant" + CHANNEL + "analysis" + MESSAGE
        else:
            self._buffer = START + "assistant"
        mapping = harmony_names([t.function.name for t in tools if t.function.name])
        self._to_user = {v: k for k, v in mapping.items()}
        renamed = []
        for tool in tools:
            copy = tool.model_copy(deep=True)
            copy.function.name = mapping.get(tool.function.name, tool.function.name)
            renamed.append(copy)
        return renamed

    def thinking_end(self) -> list[str]:
        return [] if self._content_prefill else list(_CONTENT_OPENERS)

    def add(self, text: str, done: bool) -> Parsed:
        self._buffer += text
        content: list[str] = []
        thinking: list[str] = []
        while True:
            if self._part is _Part.SEEKING:
                if START not in self._buffer:
                    break
                self._buffer = self._buffer.split(START, 1)[1]
                self._part = _Part.HEADER
            elif self._part is _Part.HEADER:
                if MESSAGE not in self._buffer:
                    break
                header, self._buffer = self._buffer.split(MESSAGE, 1)
                self._open(*_header(header))
                self._part = _Part.BODY
            else:
                ended = END in self._buffer
                if ended:
                    body, self._buffer = self._buffer.split(END, 1)
                else:
                    keep = overlap(self._buffer, END)
                    body, self._buffer = self._buffer[: len(self._buffer) - keep], self._buffer[len(self._buffer) - keep :]
                {_Body.CONTENT: content, _Body.THINKING: thinking}.get(self._body, []).append(body)
                if self._body is _Body.TOOL:
                    self._tool_args += body
                if not ended:
                    break
                self._part, self._body = _Part.SEEKING, _Body.CONTENT
        calls = [self._call()] if done and self._tool is not None else []
        return Parsed("".join(content), "".join(thinking), calls)

    def _open(self, role: str, channel: str, recipient: str) -> None:
        """Route the body of a message with this header."""
        if channel in ("analysis", "commentary") and recipient:
            self._body = _Body.TOOL
            self._tool = recipient
        elif channel == "analysis":
            self._body = _Body.THINKING
        elif channel in ("commentary", "final"):
            self._body = _Body.CONTENT

    def _call(self) -> ToolCall:
        """The accumulated function message as a tool call (its name mapped back)."""
        assert self._tool is not None  # only called once a recipient was seen
        name = self._tool.removeprefix("functions.")
        name = self._to_user.get(name, name)
        raw, self._tool_args = self._tool_args, ""
        try:
            args = json.loads(raw)
        except ValueError as err:
            raise OllamapyError(f"error parsing tool call: raw='{raw}', err={err}") from err
        return make_call(name, args if isinstance(args, dict) else {}, 0)
