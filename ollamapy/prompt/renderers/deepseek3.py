"""DeepSeek-V3.1's prompt (Ollama's ``deepseek3.1`` renderer): BOS, the system messages
joined, a tool section, ``<｜User｜>``/``<｜Assistant｜>`` turns, tool calls and results in
DeepSeek's tool tokens, and ``<think>`` (thinking asked for) or ``</think>`` (not) after
the final ``<｜Assistant｜>``."""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message

from .base import Renderer, ThinkValue, go_json

__all__ = ["BOS", "DeepSeek31Renderer"]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"

TOOL_USE = (
    "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>"
    "{{additional_tool_calls}}<｜tool▁calls▁end｜>\n\n"
    "Where:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces\n"
)


class DeepSeek31Renderer(Renderer):
    """``deepseek3.1``: thinks only when the request asks."""

    def render(self, messages: Sequence[Message], tools: Sequence[Tool], think: ThinkValue) -> str:
        thinking = bool(think)
        out = [BOS, "\n\n".join(m.content for m in messages if m.role == "system")]
        if tools:
            out.append("\n\n## Tools\nYou have access to the following tools:\n")
            for tool in tools:
                params = tool.function.parameters.model_dump(by_alias=True, exclude_none=True)
                out.append(f"\n### {tool.function.name}\nDescription: {tool.function.description or ''}")
                out.append(f"\n\nParameters: {go_json(params)}\n")
            out.append(TOOL_USE)
        last_user_index = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        is_tool = is_last_user = False
        for i, msg in enumerate(messages):
            if msg.role == "user":
                is_tool, is_last_user = False, True
                out.append("<｜User｜>" + msg.content)
            elif msg.role == "assistant" and msg.tool_calls:
                if is_last_user:
                    out.append("<｜Assistant｜></think>")
                is_tool = is_last_user = False
                out.append(msg.content + "<｜tool▁calls▁begin｜>")
                for call in msg.tool_calls:
                    out.append(
                        "<｜tool▁call▁begin｜>" + call.function.name + "<｜tool▁sep｜>"
                        + go_json(call.function.arguments) + "<｜tool▁call▁end｜>"
                    )
                out.append("<｜tool▁calls▁end｜>" + EOS)
            elif msg.role == "assistant":
                if is_last_user:
                    current = thinking and bool(msg.thinking) and i > last_user_index
                    out.append("<｜Assistant｜>" + ("<think>" if current else "</think>"))
                is_last_user = False
                content = msg.content
                if is_tool:
                    is_tool = False
                elif content.startswith("<think>") and "</think>" in content:
                    content = content.split("</think>", 1)[1]
                out.append(content + EOS)
            elif msg.role == "tool":
                is_last_user, is_tool = False, True
                out.append("<｜tool▁output▁begin｜>" + msg.content + "<｜tool▁output▁end｜>")
        if is_last_user and not is_tool:
            out.append("<｜Assistant｜>" + ("<think>" if thinking else "</think>"))
        return "".join(out)
