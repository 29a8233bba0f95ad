"""The request path's prompt and output wiring (``supervisor.prompting``) on stub models:
built-in renderers/parsers chosen by config (and harmony by family), tool calls from a
Jinja-only model, and the thinking end tag that lets ``format`` wait for the answer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from ollamapy.api.runner_protocol import CompletionRequest
from ollamapy.api.types import ChatRequest
from ollamapy.supervisor.prompting import OutputParser, RenderedPrompt, render_chat

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
QWEN_JINJA = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if tools %}<tools>{{ tools | tojson }}</tools> reply with <tool_call></tool_call>{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking %}<think>\n{% endif %}{% endif %}"
    "{# <think> </think> #}"
)


def _model(template: str | None = None, chat_template: str | None = None, **config: Any) -> Any:
    gguf = SimpleNamespace(chat_template=chat_template, kv={}) if chat_template else None
    return SimpleNamespace(
        template=template, config=config, gguf=gguf, system=None, messages=[], short_name="m:latest",
        name=SimpleNamespace(model="m"), projector_paths=[],
    )


def _chat(model: Any, think: bool | None, **req: Any) -> RenderedPrompt:
    request = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}], **req})
    return asyncio.run(render_chat(model, request, think=think, think_level=None, runner=None))


def _collect(parser: OutputParser, pieces: list[str]) -> tuple[str, str, list[dict[str, Any]]]:
    thinking, content, calls = "", "", []
    for i, piece in enumerate(pieces):
        t, c, k = parser.add(piece, final=i == len(pieces) - 1)
        thinking, content, calls = thinking + t, content + c, calls + k
    return thinking, content, calls


def test_jinja_only_model_returns_tool_calls_streamed_and_whole() -> None:
    model = _model(chat_template=QWEN_JINJA)
    rendered = _chat(model, None, tools=TOOLS)
    output = 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    for pieces in ([output], list(output)):
        _, content, calls = _collect(OutputParser.for_chat(model, rendered), pieces)
        assert content.strip() == "Checking."
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_jinja_thinking_tags_end_thinking_for_format() -> None:
    model = _model(chat_template=QWEN_JINJA)
    rendered = _chat(model, True)
    assert rendered.thinking_end == ("</think>",)
    thinking, content, _ = _collect(OutputParser.for_chat(model, rendered), ["Hmm.</think>", '{"a": 1}'])
    assert (thinking, content) == ("Hmm.", '{"a": 1}')
    request = CompletionRequest(prompt=rendered.text, format="json", format_after=list(rendered.thinking_end))
    assert request.format_after == ["</think>"]
    assert _chat(model, False).thinking_end == ()


def test_config_renderer_and_parser_drive_the_request() -> None:
    model = _model(template="{{ .Prompt }}", renderer="qwen3-coder", parser="qwen3-coder")
    rendered = _chat(model, None, tools=TOOLS)
    assert rendered.text.startswith("<|im_start|>system\nYou are Qwen") and "<name>get_weather</name>" in rendered.text
    output = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
    _, content, calls = _collect(OutputParser.for_chat(model, rendered), [output])
    assert content == "" and calls[0]["function"]["arguments"] == {"city": "Paris"}


def test_gpt_oss_family_is_parsed_as_harmony_without_config() -> None:
    template = "{{ range .Messages }}<|start|>{{ .Role }}<|message|>{{ .Content }}<|end|>{{ end }}<|start|>assistant"
    model = _model(template=template, model_family="gptoss")
    rendered = _chat(model, True)
    assert "<|channel|>final<|message|>" in rendered.thinking_end
    output = "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Sunny."
    assert _collect(OutputParser.for_chat(model, rendered), [output])[:2] == ("Think.", "Sunny.")


def test_unknown_parser_falls_back_to_the_template() -> None:
    model = _model(template="{{ .Prompt }}", parser="no-such-parser")
    rendered = _chat(model, None)
    assert rendered.parser is None and rendered.text == "Weather in Paris?"
