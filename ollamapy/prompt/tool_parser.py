"""Tool calls out of model text, as Ollama's ``tools`` package finds them.

Models made for Ollama announce a tool call with a tag their template writes before it
(``<tool_call>``, ``[TOOL_CALLS]`` …, see :func:`tool_call_tag`) and then a JSON object
naming the tool. :class:`ToolCallParser` is fed the generated text piece by piece and
splits it into content for the user and :class:`~ollamapy.api.types.ToolCall` objects:

* text before the tag is content; a partial tag at the end of a piece is held back;
* with the bare ``{`` / ``[`` tags (templates that write plain JSON) calls are parsed only
  when the output *starts* with JSON, otherwise everything is content;
* after the tag, the earliest (then longest) request tool name in the buffer picks the
  tool, waiting while a longer name could still be arriving; the first balanced JSON
  object holds the arguments: ``arguments``/``parameters`` of an object with a ``name``
  (an object, or a JSON string of one), an object keyed by the tool name, found
  recursively, else the object itself;
* calls get sequential ``index`` values and ids ``call_`` + 8 characters ``[a-z0-9]``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from ollamapy.api.tools import Tool
from ollamapy.api.types import ToolCall, ToolCallFunction
from ollamapy.gotemplate import (
    ActionNode,
    FieldNode,
    IfNode,
    ListNode,
    Node,
    RangeNode,
    Template,
    TextNode,
    WithNode,
)
from ollamapy.prompt.thinking import GO_SPACE

__all__ = [
    "ToolCallParser",
    "chat_template_tool_tag",
    "parse_tool_calls",
    "tool_call_id",
    "tool_call_tag",
]

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# Tags GGUF chat templates write before tool calls, in the order they are tried.
_CHAT_TEMPLATE_TOOL_TAGS = (
    "<tool_call>",
    "<|tool_call|>",
    "[TOOL_CALLS]",
    "<|tool▁calls▁begin|>",
    "<function_call>",
    "<|python_tag|>",
)
_JSON_TAGS = ("{", "[")


def tool_call_id() -> str:
    """A new tool-call id as Ollama makes them: ``call_`` + 8 chars of ``[a-z0-9]``."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def tool_call_tag(template: Template) -> str:
    """The tag a template writes before tool calls; ``{`` when it has none.

    The first non-whitespace text inside the template's first ``{{ if .ToolCalls }}``
    block (searching nested ``if``/``range``/``with`` bodies, stopping at an action),
    cut at its first ``{`` and trimmed: ``<tool_call>``, ``[TOOL_CALLS]``…
    """
    block = _tool_calls_block(template.root.nodes)
    text = _first_text(block.list.nodes) if block is not None else None
    if text is None:
        return "{"
    tag = text.replace("\r\n", "\n").split("{", 1)[0].strip(GO_SPACE)
    return tag or "{"


def chat_template_tool_tag(chat_template: str | None) -> str:
    """The tool-call tag a GGUF (Jinja) chat template writes, by the known tags it
    contains; ``{`` when it contains none (plain JSON calls)."""
    for tag in _CHAT_TEMPLATE_TOOL_TAGS:
        if chat_template and tag in chat_template:
            return tag
    return "{"


def _tool_calls_block(nodes: Sequence[Node]) -> IfNode | None:
    for node in nodes:
        if isinstance(node, IfNode) and any(
            isinstance(arg, FieldNode) and "ToolCalls" in arg.ident
            for cmd in node.pipe.cmds
            for arg in cmd.args
        ):
            return node
        if isinstance(node, ListNode):
            found = _tool_calls_block(node.nodes)
        elif isinstance(node, (IfNode, RangeNode, WithNode)):
            found = _tool_calls_block(node.list.nodes)
            if found is None and node.else_list is not None:
                found = _tool_calls_block(node.else_list.nodes)
        else:
            continue
        if found is not None:
            return found
    return None


def _first_text(nodes: Sequence[Node]) -> str | None:
    """Depth-first, the first text that is not only whitespace, up to the first action
    or the end of the first nested block."""
    for node in nodes:
        if isinstance(node, TextNode):
            if node.text.strip(GO_SPACE):
                return node.text
        elif isinstance(node, ListNode):
            text = _first_text(node.nodes)
            if text is not None:
                return text
        elif isinstance(node, (IfNode, RangeNode, WithNode)):
            text = _first_text(node.list.nodes)
            if text is None and node.else_list is not None:
                text = _first_text(node.else_list.nodes)
            return text
        elif isinstance(node, ActionNode):
            return None
    return None


class ToolCallParser:
    """Streaming tool-call parser for one generation (not reusable, not thread-safe)."""

    _LOOKING, _CALLING, _DONE = range(3)

    def __init__(self, tools: Iterable[Tool | str], tag: str = "{") -> None:
        self._names = [t if isinstance(t, str) else t.function.name for t in tools]
        self._tag = tag or "{"
        self._state = self._LOOKING
        self._buffer = ""
        self._count = 0

    def add(self, text: str) -> tuple[list[ToolCall], str]:
        """Feed generated text; return the calls completed by it and content to send now."""
        if self._state == self._DONE:
            return [], text
        self._buffer += text
        content = ""
        if self._state == self._LOOKING:
            i, found = self._find_tag()
            if i == -1:
                content, self._buffer = self._buffer, ""
            else:
                content, self._buffer = self._buffer[:i], self._buffer[i:]
            if self._tag in _JSON_TAGS and content.strip(GO_SPACE):
                # plain JSON counts as a call only at the very start of the output
                self._state = self._DONE
                content, self._buffer = content + self._buffer, ""
                return [], content
            if not found:
                return [], content
            self._state = self._CALLING

        calls: list[ToolCall] = []
        while (call := self._parse_call()) is not None:
            calls.append(call)
        if self._closed():
            self._state = self._DONE
            content, self._buffer = self._buffer, ""
        return calls, content

    def flush(self) -> str:
        """Text still held when generation ends that belongs to the user.

        Nothing once a call was found; with the ``{``/``[`` tags the buffered text (JSON
        that named no tool); with a real tag nothing (the tag announced a call).
        """
        if self._count > 0 or self._tag not in _JSON_TAGS:
            return ""
        return self._buffer

    def _find_tag(self) -> tuple[int, bool]:
        """Where the tag (or a prefix of it ending the buffer) starts, and if it is whole."""
        i = self._buffer.find(self._tag)
        if i > -1:
            return i, True
        for n in range(min(len(self._buffer), len(self._tag)), 0, -1):
            if self._buffer.endswith(self._tag[:n]):
                return len(self._buffer) - n, False
        return -1, False

    def _parse_call(self) -> ToolCall | None:
        name, end = _find_tool(self._names, self._buffer)
        if name is None:
            return None
        args, args_end = _find_arguments(name, self._buffer)
        if args is None:
            return None
        call = ToolCall(
            id=tool_call_id(),
            function=ToolCallFunction(index=self._count, name=name, arguments=args),
        )
        self._count += 1
        self._buffer = self._buffer[max(end, args_end) :]
        return call

    def _closed(self) -> bool:
        """With a ``{``/``[`` tag: the buffer's first bracket has been closed."""
        if self._tag not in _JSON_TAGS:
            return False
        open_, close = ("{", "}") if self._tag == "{" else ("[", "]")
        depth = 0
        for c in self._buffer:
            if c == open_:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    return True
        return False


def parse_tool_calls(
    text: str, tools: Iterable[Tool | str], tag: str = "{"
) -> tuple[list[ToolCall], str]:
    """Non-streaming: the calls in a whole generation and the content the user gets."""
    parser = ToolCallParser(tools, tag)
    calls, content = parser.add(text)
    if not calls and not content:
        content = parser.flush()
    return calls, content


def _find_tool(names: Sequence[str], buf: str) -> tuple[str | None, int]:
    """The earliest, then longest, tool name in ``buf`` and where it ends.

    None while ``buf`` ends with a proper prefix of some name: ``get`` may yet become
    ``get_weather``.
    """
    if not buf:
        return None, 0
    longest = max((len(n) for n in names), default=0)
    for i in range(1, min(len(buf), longest) + 1):
        tail = buf[-i:]
        if any(len(tail) < len(n) and n.startswith(tail) for n in names):
            return None, 0
    found: str | None = None
    start = -1
    for name in names:
        pos = buf.find(name)
        if pos == -1:
            continue
        if found is not None and (
            pos > start or (pos == start and len(name) <= len(found))
        ):
            continue
        found, start = name, pos
    if found is None:
        return None, 0
    return found, start + len(found)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` decoded as Go decodes JSON into ``map[string]any``; None if it is not one."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _arguments_in(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return _json_object(value)
    return None


def _find_call_object(
    tool: str, obj: dict[str, Any]
) -> tuple[dict[str, Any] | None, bool]:
    """Arguments inside a decoded object; ``(None, True)`` for a named call without any."""
    if "name" in obj:
        for key in ("arguments", "parameters"):
            args = _arguments_in(obj, key)
            if args is not None:
                return args, True
        return None, True
    args = _arguments_in(obj, tool)
    if args is not None:
        return args, True
    for value in obj.values():
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, dict):
                result, found = _find_call_object(tool, child)
                if found:
                    return result, True
    return None, False


def _find_arguments(tool: str, buf: str) -> tuple[dict[str, Any] | None, int]:
    """The arguments in the first balanced, valid JSON object of ``buf`` and its end.

    The end is the index of the object's closing brace (the brace stays in the buffer, as
    Ollama leaves it). Braces inside JSON strings do not count.
    """
    start = -1
    depth = 0
    in_string = escaped = False
    for i, c in enumerate(buf):
        if escaped:
            escaped = False
            continue
        if c == "\\":
            escaped = True
            continue
        if c == '"':
            in_string = not in_string
            continue
        if in_string:
            continue
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and start != -1:
                data = _json_object(buf[start : i + 1])
                if data is None:
                    start = -1
                    continue
                args, found = _find_call_object(tool, data)
                return (args if found else data), i
            depth = max(depth, 0)
    return None, 0
