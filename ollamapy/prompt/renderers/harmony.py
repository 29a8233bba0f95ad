"""gpt-oss's harmony prompt, as gpt-oss's Ollama template writes it.

A system message (identity, knowledge cutoff, today's date, ``Reasoning: low|medium|high``
from ``think``, gpt-oss's built-in browser/python tools, the valid channels), a developer
message (the function tools as a TypeScript namespace, the chat's system text as
instructions), then the turns: user messages, assistant thinking on the analysis channel
(only after the last user message), answers on the final channel, tool calls as
``to=functions.name <|constrain|>json`` messages ending in ``<|call|>``, tool results as
messages from ``functions.name``. The prompt ends with ``<|start|>assistant``, or inside
a final assistant message (a prefill). Tool names arrive already renamed by the harmony
parser (:func:`~ollamapy.prompt.parsers.harmony.harmony_names`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.gotemplate.values import typescript_type
from ollamapy.prompt.parsers.harmony import BUILTIN_TOOLS

from .base import Renderer, ThinkValue, go_json

__all__ = ["HarmonyRenderer"]

BROWSER = """

## browser

// Tool for browsing.
// The cursor appears in brackets before each browsing display, like [cursor].
// Cite information from the tool using the line-citation format shown by the browser output.
// Do not quote more than 10 words directly from the tool output.
// sources=web (default: web)
namespace browser {"""
BROWSER_SEARCH = """

// Searches for information related to query and displays topn results.
type search = (_: {
query: string,
topn?: number, // default: 10
source?: string,
}) => any;"""
BROWSER_OPEN = """

// Opens the link id from the page indicated by cursor starting at line number loc, showing num_lines lines.
// If cursor is not provided, the most recent page is implied.
// If id is a string, it is treated as a fully qualified URL associated with source.
// If loc is not provided, the viewport will be positioned at the beginning of the document or centered on the most relevant passage, if available.
// Use this function without id to scroll to a new location of an opened page.
type open = (_: {
id?: number | string, // default: -1
cursor?: number, // default: -1
loc?: number, // default: -1
num_lines?: number, // default: -1
view_source?: boolean, // default: false
source?: string,
}) => any;"""
BROWSER_FIND = """

// Finds exact matches of pattern in the current page, or the page given by cursor.
type find = (_: {
pattern: string,
cursor?: number, // default: -1
}) => any;"""
PYTHON = """

## python

Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. This tool should be used for internal reasoning, but not for code that is intended to be visible to the user (e.g. when creating plots, tables, or files).

When you send a message containing Python code to python, it will be executed in a stateful Jupyter notebook environment. python will respond with the output of the execution or time out after 120.0 seconds. The drive at '/mnt/data' can be used to save and persist user files. Internet access for this session is UNKNOWN. Depends on the cluster."""


def _reasoning(think: ThinkValue) -> str:
    if isinstance(think, str) and think:
        return f"\n\nReasoning: {think}"
    if think is None or think:
        return "\n\nReasoning: medium"
    return ""


def _builtin_section(names: set[str]) -> str:
    browser = [part for name, part in (("browser.search", BROWSER_SEARCH), ("browser.open", BROWSER_OPEN), ("browser.find", BROWSER_FIND)) if name in names]
    if not browser and "python" not in names:
        return ""
    out = "\n\n# Tools"
    if browser:
        out += BROWSER + "".join(browser) + "\n\n} // namespace browser"
    if "python" in names:
        out += PYTHON
    return out


def _function(tool: Tool) -> str:
    fn = tool.function
    out = "\n" + (f"\n// {fn.description}" if fn.description else "")
    props = fn.parameters.properties or {}
    if not props:
        return out + f"\ntype {fn.name} = () => any;"
    out += f"\ntype {fn.name} = (_: {{"
    for name in sorted(props):  # a Go map: ranged in key order
        prop = props[name]
        if prop.description:
            out += f"\n  // {prop.description}"
        out += f"\n  {name}: {typescript_type(prop)},"
    return out + "\n}) => any;"


class HarmonyRenderer(Renderer):
    """``harmony`` (gpt-oss)."""

    def __init__(self, today: Callable[[], datetime.date] = datetime.date.today) -> None:
        self._today = today

    def render(self, messages: Sequence[Message], tools: Sequence[Tool], think: ThinkValue) -> str:
        names = {t.function.name for t in tools}
        functions = [t for t in tools if t.function.name not in BUILTIN_TOOLS]
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        out = [
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n",
            f"Knowledge cutoff: 2024-06\nCurrent date: {self._today().isoformat()}",
            _reasoning(think),
            _builtin_section(names),
            "\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.",
            "\nCalls to these tools must go to the commentary channel: 'functions'." if functions else "",
            "<|end|>",
        ]
        if functions or system:
            out.append("<|start|>developer<|message|>")
            if functions:
                out.append("# Tools\n\n## functions\n\nnamespace functions {")
                out.extend(_function(t) for t in functions)
                out.append("\n\n} // namespace functions")
            if system:
                out.append(f"\n\n# Instructions\n\n{system}")
            out.append("<|end|>")
        out.extend(self._turns(messages))
        return "".join(out)

    @staticmethod
    def _turns(messages: Sequence[Message]) -> list[str]:
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        final = messages[-1] if messages and messages[-1].role == "assistant" else None
        prefill_content = final is not None and bool(final.content)
        prefill_thinking = final is not None and not final.content and bool(final.thinking)
        out: list[str] = []
        for i, msg in enumerate(messages):
            if msg.role == "tool":
                sender = msg.tool_name if msg.tool_name in BUILTIN_TOOLS else f"functions.{msg.tool_name or ''}"
                out.append(f"<|start|>{sender} to=assistant<|message|>{msg.content}<|end|>")
            elif msg.role == "user":
                out.append(f"<|start|>user<|message|>{msg.content}<|end|>")
            elif msg.role == "assistant":
                if msg.thinking and i > last_user:
                    out.append("<|start|>assistant<|channel|>analysis<|message|>" + msg.thinking + ("" if prefill_thinking else "<|end|>"))
                if msg.content:
                    out.append("<|start|>assistant<|channel|>final<|message|>" + msg.content + ("" if prefill_content else "<|end|>"))
                for call in msg.tool_calls or ():
                    name = call.function.name
                    builtin = name in BUILTIN_TOOLS
                    out.append(
                        f"<|start|>assistant<|channel|>{'analysis' if builtin else 'commentary'} "
                        f"to={'' if builtin else 'functions.'}{name} <|constrain|>json<|message|>"
                        f"{go_json(call.function.arguments)}<|call|>"
                    )
        if not (prefill_content or prefill_thinking):
            out.append("<|start|>assistant")
        return out
