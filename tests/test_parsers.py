"""Ollama's built-in output parsers on recorded-style model output, whole and streamed.

Each case is a generation written by hand from the model family's format, with what a
user gets from it: content, thinking and tool calls. Every case is also fed to a fresh
parser split at every position (two pieces), and must give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.errors import OllamapyError
from ollamapy.prompt.parsers import PARSERS, Parser, parser_for
from ollamapy.prompt.parsers.harmony import harmony_names
from ollamapy.prompt.parsers.qwen3coder import typed_value

WEATHER = Tool.model_validate(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "required": ["city"],
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "metric": {"type": "boolean"},
                    "hours": {"type": "array"},
                },
            },
        },
    }
)
DASHED = Tool.model_validate({"type": "function", "function": {"name": "get-time", "parameters": {"type": "object"}}})


@dataclass
class Case:
    parser: str
    output: str
    content: str
    thinking: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    think: bool | str | None = None
    tools: list[Tool] = field(default_factory=lambda: [WEATHER, DASHED])
    last: Message | None = None


CASES = {
    "harmony-analysis-final": Case(
        "harmony",
        "<|channel|>analysis<|message|>User says hi. Reply briefly.<|end|><|start|>assistant<|channel|>final<|message|>Hello there!",
        content="Hello there!",
        thinking="User says hi. Reply briefly.",
        think=True,
    ),
    "harmony-tool-call": Case(
        "harmony",
        "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris","days":2}',
        content="",
        thinking="Need weather.",
        calls=[("get_weather", {"city": "Paris", "days": 2})],
        think="high",
    ),
    "harmony-renamed-tool-recipient-first": Case(
        "harmony",
        "<|channel|>analysis<|message|>Time?<|end|><|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{}",
        content="",
        thinking="Time?",
        calls=[("get-time", {})],
    ),
    "harmony-commentary-preamble": Case(
        "harmony",
        "<|channel|>commentary<|message|>Checking…<|end|><|start|>assistant<|channel|>final<|message|>Done.",
        content="Checking…Done.",
    ),
    "harmony-content-prefill": Case(
        "harmony",
        " and more.",
        content=" and more.",
        last=Message(role="assistant", content="Partial answer"),
    ),
    "qwen3-thinking": Case(
        "qwen3-thinking",
        "Okay, the user greets me.\n</think>\n\nHi! How can I help?",
        content="Hi! How can I help?",
        thinking="Okay, the user greets me.",
        think=True,
    ),
    "qwen3-thinking-explicit-open-and-call": Case(
        "qwen3-thinking",
        '<think>\nWeather needed.\n</think>\n\nLet me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
        content="Let me check.",
        thinking="Weather needed.",
        calls=[("get_weather", {"city": "Rome"})],
    ),
    "qwen3-thinking-off": Case("qwen3-thinking", "Plain answer.", content="Plain answer.", think=False),
    "qwen3-two-calls": Case(
        "qwen3",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "A"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get-time", "arguments": {}}\n</tool_call>',
        content="",
        calls=[("get_weather", {"city": "A"}), ("get-time", {})],
    ),
    "qwen3-vl-thinking-call-inside-thinking": Case(
        "qwen3-vl-thinking",
        'I should call it. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',
        content="",
        thinking="I should call it.",
        calls=[("get_weather", {"city": "Oslo"})],
    ),
    "qwen3-coder-xml-call": Case(
        "qwen3-coder",
        "I'll look that up.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York, NY\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n<parameter=hours>\n[1, 2]\n</parameter>\n"
        "</function>\n</tool_call>",
        content="I'll look that up.",
        calls=[("get_weather", {"city": "New York, NY", "days": 3, "metric": True, "hours": [1, 2]})],
    ),
    "qwen3-coder-multiline-string": Case(
        "qwen3-coder",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nline one\nline <two> & three\n</parameter>\n</function>\n</tool_call>",
        content="",
        calls=[("get_weather", {"city": "line one\nline <two> & three"})],
    ),
    "deepseek3-thinking-call": Case(
        "deepseek3",
        "The user wants weather.</think>Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
        '{"city": "Lima"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        content="Sure.",
        thinking="The user wants weather.",
        calls=[("get_weather", {"city": "Lima"})],
        think=True,
    ),
    "deepseek3-no-thinking": Case("deepseek3", "Just content </think> stays.", content="Just content </think> stays.", think=False),
}


def _run(case: Case, pieces: list[str]) -> tuple[str, str, list[tuple[str, dict[str, Any], int]]]:
    parser = parser_for(case.parser)
    assert parser is not None
    parser.init(case.tools, case.last, case.think)
    content, thinking, calls = "", "", []
    for i, piece in enumerate(pieces):
        got = parser.add(piece, i == len(pieces) - 1)
        content += got.content
        thinking += got.thinking
        calls += [(c.function.name, c.function.arguments, c.function.index) for c in got.calls]
        assert all(c.id and c.id.startswith("call_") for c in got.calls)
    return content, thinking, calls


@pytest.mark.parametrize("name", CASES)
def test_parser_splits_output(name: str) -> None:
    case = CASES[name]
    expected_calls = [(n, a, i) for i, (n, a) in enumerate(case.calls)] if case.parser != "harmony" else [(n, a, 0) for n, a in case.calls]
    assert _run(case, [case.output]) == (case.content, case.thinking, expected_calls)


@pytest.mark.parametrize("name", CASES)
def test_parser_same_result_at_every_split(name: str) -> None:
    case = CASES[name]
    whole = _run(case, [case.output])
    for cut in range(1, len(case.output)):
        assert _run(case, [case.output[:cut], case.output[cut:]]) == whole, cut


def test_parser_streams_token_by_token_without_leaking_tags() -> None:
    case = CASES["qwen3-thinking-explicit-open-and-call"]
    parser = parser_for(case.parser)
    assert parser is not None
    parser.init(case.tools, None, True)
    for ch in case.output:
        got = parser.add(ch, False)
        assert "<" not in got.content and "<" not in got.thinking


def test_registry_covers_ollama_names() -> None:
    assert {"harmony", "qwen3", "qwen3-thinking", "qwen3-coder", "qwen3-vl-instruct", "qwen3-vl-thinking", "deepseek3"} <= set(PARSERS)
    assert parser_for("no-such-parser") is None
    assert parser_for(None) is None


def test_harmony_renames_tools_for_the_prompt() -> None:
    parser: Parser | None = parser_for("harmony")
    assert parser is not None
    shown = parser.init([WEATHER, DASHED], None, True)
    assert [t.function.name for t in shown] == ["get_weather", "get_time"]
    assert harmony_names(["a b", "a-b", "9x", "!!", "python"]) == {"a b": "a_b", "a-b": "a_b_2", "9x": "_9x", "!!": "unnamed", "python": "python"}


def test_thinking_end_markers() -> None:
    qwen = parser_for("qwen3-thinking")
    assert qwen is not None
    qwen.init([], None, True)
    assert qwen.thinking_end() == ["</think>"]
    off = parser_for("qwen3-thinking")
    assert off is not None
    off.init([], None, False)
    assert off.thinking_end() == []
    harmony = parser_for("harmony")
    assert harmony is not None
    harmony.init([], None, True)
    assert "<|channel|>final<|message|>" in harmony.thinking_end()


def test_invalid_tool_call_is_an_error() -> None:
    parser = parser_for("harmony")
    assert parser is not None
    parser.init([WEATHER], None, True)
    with pytest.raises(OllamapyError, match="error parsing tool call"):
        parser.add("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{not json", True)


@pytest.mark.parametrize(
    ("raw", "types", "value"),
    [
        ("null", ["string"], None),
        ("42", ["integer"], 42),
        ("4.5", ["number"], 4.5),
        ("4.0", ["number"], 4),
        ("1_000", ["integer"], "1_000"),
        ("yes", ["boolean"], False),
        ("7", ["string", "number"], 7),
        ("hello", ["string", "number"], "hello"),
        ('{"a": 1}', ["object"], {"a": 1}),
        ("[oops", ["array"], "[oops"),
        ("x", [], "x"),
    ],
)
def test_qwen3_coder_types_values_by_schema(raw: str, types: list[str], value: Any) -> None:
    assert typed_value(raw, types) == value
