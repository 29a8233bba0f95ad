"""Qwen3-Coder's prompt (Ollama's ``qwen3-coder`` renderer): ChatML, tools described in
XML under the first system message, assistant tool calls written back in the XML call
format, consecutive tool results in one user turn of ``<tool_response>`` blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.gotemplate.values import typescript_type

from .base import IM_END, IM_START, Renderer, ThinkValue, go_json, go_value

__all__ = ["Qwen3CoderRenderer"]

DEFAULT_SYSTEM = "You are Qwen, a helpful AI assistant that can interact with a computer to solve tasks."

CALL_INSTRUCTIONS = (
    "\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\n"
    "- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\n"
    "</IMPORTANT>"
)


def _extra_keys(obj: dict[str, Any], handled: set[str]) -> str:
    """Schema keys the format has no element for, each as ``<key>value</key>``."""
    out = []
    for key, value in obj.items():
        if key in handled or value is None:
            continue
        text = go_json(value) if isinstance(value, (dict, list)) else go_value(value)
        out.append(f"\n<{key}>{text}</{key}>")
    return "".join(out)


def _describe(tool: Tool) -> str:
    fn = tool.function
    parts = ["\n<function>\n<name>", fn.name, "</name>"]
    if fn.description:
        parts.append(f"\n<description>{fn.description}</description>")
    parts.append("\n<parameters>")
    for name, prop in (fn.parameters.properties or {}).items():
        parts.append(f"\n<parameter>\n<name>{name}</name>")
        if prop.type:
            parts.append(f"\n<type>{typescript_type(prop)}</type>")
        if prop.description:
            parts.append(f"\n<description>{prop.description}</description>")
        parts.append(_extra_keys(prop.model_dump(by_alias=True, exclude_none=True), {"type", "description"}))
        parts.append("\n</parameter>")
    parts.append(_extra_keys(fn.parameters.model_dump(by_alias=True, exclude_none=True), {"type", "properties"}))
    parts.append("\n</parameters>\n</function>")
    return "".join(parts)


class Qwen3CoderRenderer(Renderer):
    """``qwen3-coder``."""

    def render(self, messages: Sequence[Message], tools: Sequence[Tool], think: ThinkValue) -> str:
        out: list[str] = []
        system = next((m.content for m in messages if m.role == "system" and m.content), "")
        chat = [m for m in messages if m.role != "system"]
        if system or tools:
            out.append(IM_START + "system\n" + (system or DEFAULT_SYSTEM))
            if tools:
                out.append("\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>")
                out.extend(_describe(t) for t in tools)
                out.append("\n</tools>" + CALL_INSTRUCTIONS)
            out.append(IM_END + "\n")
        for i, msg in enumerate(chat):
            last = i == len(chat) - 1
            prefill = last and msg.role == "assistant"
            if msg.role == "assistant":
                out.append(IM_START + "assistant\n")
                if msg.tool_calls:
                    if msg.content:
                        out.append(msg.content + "\n")
                    for call in msg.tool_calls:
                        out.append(f"\n<tool_call>\n<function={call.function.name}>")
                        for key, value in call.function.arguments.items():
                            out.append(f"\n<parameter={key}>\n{go_value(value)}\n</parameter>")
                        out.append("\n</function>\n</tool_call>")
                    out.append(IM_END + "\n")
                else:
                    out.append(msg.content)
                    if not prefill:
                        out.append(IM_END + "\n")
            elif msg.role == "tool":
                if i == 0 or chat[i - 1].role != "tool":
                    out.append(IM_START + "user\n")
                out.append("<tool_response>\n" + msg.content + "\n</tool_response>\n")
                if last or chat[i + 1].role != "tool":
                    out.append(IM_END + "\n")
            else:
                out.append(IM_START + msg.role + "\n" + msg.content + IM_END + "\n")
            if last and not prefill:
                out.append(IM_START + "assistant\n")
        return "".join(out)
