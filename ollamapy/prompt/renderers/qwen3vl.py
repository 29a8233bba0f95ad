"""Qwen3-VL's prompt (Ollama's ``qwen3-vl-instruct`` / ``qwen3-vl-thinking`` renderers):
ChatML with Qwen's JSON tool block, images as ``[img-N]`` tags, tool calls as
``<tool_call>`` JSON, and for the thinking variant ``<think>`` sections on the turns
after the last real user query and an opened ``<think>`` to generate into."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message

from .base import IM_END, IM_START, Renderer, ThinkValue, json_with_spaces

__all__ = ["Qwen3VLInstructRenderer", "Qwen3VLThinkingRenderer"]

TOOLS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


def _is_tool_response(text: str) -> bool:
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


class Qwen3VLInstructRenderer(Renderer):
    """``qwen3-vl-instruct``: no thinking unless the request asks for it."""

    thinking: ClassVar[bool] = False

    def render(self, messages: Sequence[Message], tools: Sequence[Tool], think: ThinkValue) -> str:
        thinking = self.thinking if think is None else bool(think)
        out: list[str] = []
        first_system = messages[0].content if messages and messages[0].role == "system" else None
        if tools:
            out.append(IM_START + "system\n" + (first_system + "\n\n" if first_system is not None else "") + TOOLS_HEAD)
            out.extend("\n" + json_with_spaces(t.to_wire()) for t in tools)
            out.append(TOOLS_TAIL + IM_END + "\n")
        elif first_system is not None:
            out.append(IM_START + "system\n" + first_system + IM_END + "\n")
        image = 0
        contents: list[str] = []
        for msg in messages:
            tags = "".join(f"[img-{image + k}]" for k in range(len(msg.images or ())))
            image += len(msg.images or ())
            contents.append(tags + msg.content)
        last_query = len(messages) - 1
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].role == "user" and not _is_tool_response(contents[i]):
                last_query = i
                break
        for i, msg in enumerate(messages):
            content = contents[i]
            last = i == len(messages) - 1
            prefill = last and msg.role == "assistant"
            if msg.role == "user" or (msg.role == "system" and i != 0):
                out.append(IM_START + msg.role + "\n" + content + IM_END + "\n")
            elif msg.role == "assistant":
                reasoning = (msg.thinking or "") if thinking else ""
                if thinking and i > last_query and (last or reasoning):
                    out.append(IM_START + "assistant\n<think>\n" + reasoning.strip("\n"))
                    if content:
                        out.append("\n</think>\n\n" + content.lstrip("\n"))
                else:
                    out.append(IM_START + "assistant\n" + content)
                for j, call in enumerate(msg.tool_calls or ()):
                    if j > 0 or content:
                        out.append("\n")
                    out.append(
                        '<tool_call>\n{"name": "' + call.function.name + '", "arguments": '
                        + json_with_spaces(call.function.arguments) + "}\n</tool_call>"
                    )
                if not prefill:
                    out.append(IM_END + "\n")
            elif msg.role == "tool":
                if i == 0 or messages[i - 1].role != "tool":
                    out.append(IM_START + "user")
                out.append("\n<tool_response>\n" + msg.content + "\n</tool_response>")
                if last or messages[i + 1].role != "tool":
                    out.append(IM_END + "\n")
            if last and not prefill:
                out.append(IM_START + "assistant\n" + ("<think>\n" if thinking else ""))
        return "".join(out)


class Qwen3VLThinkingRenderer(Qwen3VLInstructRenderer):
    """``qwen3-vl-thinking``: thinking unless the request turns it off."""

    thinking = True
