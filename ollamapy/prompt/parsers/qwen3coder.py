"""Qwen3-Coder's XML-style tool calls (Ollama's ``qwen3-coder`` parser)::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

Content and tags stream as in :class:`~.qwen3.TaggedParser` (no thinking). Parameter
values are text; each is typed by the request tool's schema for that parameter (null,
then boolean, integer, number, array, object, string), as Ollama types them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ollamapy.api.tools import Tool, ToolProperty
from ollamapy.errors import OllamapyError

from .qwen3 import TaggedParser

__all__ = ["Qwen3CoderParser", "typed_value"]

_FUNCTION = re.compile(r"<function=([^>]+)>(.*?)(?:</function>|$)", re.S)
_PARAMETER = re.compile(r"<parameter=([^>]+)>(.*?)(?:</parameter>|(?=<parameter=)|$)", re.S)
_INTEGER = re.compile(r"[+-]?[0-9]+")


class Qwen3CoderParser(TaggedParser):
    """``qwen3-coder``: XML-style calls, no thinking."""

    def decode_call(self, raw: str) -> tuple[str, dict[str, Any]]:
        match = _FUNCTION.search(raw)
        if match is None:
            raise OllamapyError(f"qwen3-coder tool call without a function: {raw!r}")
        name = match.group(1)
        tool = next((t for t in self._tools if t.function.name == name), None)
        args: dict[str, Any] = {}
        for param in _PARAMETER.finditer(match.group(2)):
            key = param.group(1)
            value = param.group(2).removeprefix("\n").removesuffix("\n")
            args[key] = typed_value(value, _types(tool, key))
        return name, args


def _types(tool: Tool | None, name: str) -> list[str]:
    """The JSON-schema types the tool declares for parameter ``name`` (anyOf merged)."""
    props = tool.function.parameters.properties if tool is not None else None
    prop: ToolProperty | None = (props or {}).get(name)
    if prop is None:
        return []
    if prop.any_of:
        return [t for p in prop.any_of for t in _as_list(p.type)]
    return _as_list(prop.type)


def _as_list(t: str | list[str] | None) -> list[str]:
    return [t] if isinstance(t, str) else list(t or [])


def _number(raw: str) -> int | float | None:
    if "_" in raw or raw != raw.strip():  # Python's float() accepts these, Go's ParseFloat does not
        return None
    try:
        f = float(raw)
    except ValueError:
        return None
    if math.isfinite(f) and f == math.trunc(f) and -(2**63) <= f < 2**63:
        return int(f)
    return f


def typed_value(raw: str, types: list[str]) -> Any:
    """A parameter's text as the most specific of ``types`` it parses as (``null`` in any
    case; only-boolean text that is not a boolean is false; else the text)."""
    if raw.lower() == "null":
        return None
    if not types:
        return raw
    only = len(types) == 1
    if "boolean" in types:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if only:
            return False
    if "integer" in types:
        if _INTEGER.fullmatch(raw) and -(2**63) <= int(raw) < 2**63:
            return int(raw)
        if only:
            return raw
    if "number" in types:
        number = _number(raw)
        if number is not None:
            return number
        if only:
            return raw
    for kind, shape in (("array", list), ("object", dict)):
        if kind in types:
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if isinstance(value, shape):
                return value
            if only:
                return raw
    return raw
