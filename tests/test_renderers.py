"""Ollama's built-in renderers against golden prompts.

``testdata/renderers_golden.json`` holds, per renderer, the prompt for a conversation
with a system message, a tool, an assistant turn with thinking and a tool call, and the
tool's result, and for a plain three-turn chat with thinking off and on. The goldens were
checked by hand against the Go renderers (and gpt-oss's template for harmony).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message, ToolCall, ToolCallFunction
from ollamapy.prompt.renderers import RENDERERS, Renderer, renderer_for
from ollamapy.prompt.renderers.harmony import HarmonyRenderer

GOLDEN: dict[str, str] = json.loads((Path(__file__).parent / "testdata" / "renderers_golden.json").read_text(encoding="utf-8"))

WEATHER = Tool.model_validate(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "required": ["city"],
                "properties": {"city": {"type": "string", "description": "City name"}, "days": {"type": "integer"}},
            },
        },
    }
)
TOOL_TURNS = [
    Message(role="system", content="Be brief."),
    Message(role="user", content="Weather in Paris?"),
    Message(
        role="assistant",
        content="",
        thinking="Need tool.",
        tool_calls=[ToolCall(function=ToolCallFunction(name="get_weather", arguments={"city": "Paris"}))],
    ),
    Message(role="tool", content='{"temp": 21}', tool_name="get_weather"),
]
CHAT = [Message(role="user", content="Hi"), Message(role="assistant", content="Hello!", thinking="Greet."), Message(role="user", content="Bye")]


def _renderer(name: str) -> Renderer:
    if name == "harmony":
        return HarmonyRenderer(today=lambda: datetime.date(2024, 6, 15))
    renderer = renderer_for(name)
    assert renderer is not None
    return renderer


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_renderer_matches_golden(key: str) -> None:
    name, case = key.split("/")
    if case == "system-tools-call-result":
        got = _renderer(name).render(TOOL_TURNS, [WEATHER], "low" if name == "harmony" else True)
    else:
        got = _renderer(name).render(CHAT, [], case == "chat-think")
    assert got == GOLDEN[key]


def test_every_renderer_has_goldens() -> None:
    assert {key.split("/")[0] for key in GOLDEN} == set(RENDERERS)


def test_harmony_prefill_continues_the_final_message() -> None:
    prompt = _renderer("harmony").render([Message(role="user", content="Count"), Message(role="assistant", content="1, 2")], [], None)
    assert prompt.endswith("<|start|>assistant<|channel|>final<|message|>1, 2")


def test_harmony_builtin_tools_and_reasoning_levels() -> None:
    python = Tool.model_validate({"type": "function", "function": {"name": "python"}})
    prompt = _renderer("harmony").render([Message(role="user", content="x")], [python], "high")
    assert "Reasoning: high" in prompt and "## python" in prompt
    assert "<|start|>developer" not in prompt  # no function tools, no system text


def test_qwen3_coder_tool_results_share_one_user_turn() -> None:
    results = [Message(role="user", content="go"), Message(role="tool", content="a"), Message(role="tool", content="b")]
    prompt = _renderer("qwen3-coder").render(results, [], None)
    assert prompt.endswith("<|im_start|>user\n<tool_response>\na\n</tool_response>\n<tool_response>\nb\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n")


def test_unknown_renderer() -> None:
    assert renderer_for("glm-4.7-not-here") is None
