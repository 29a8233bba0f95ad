"""``POST /api/chat`` on fake runners: message chunks, thinking and tool calls split out of
the generated text, counts, errors before and after the first byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import CRASH_MESSAGE, FakeReply, FakeRunnerFactory
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf
from ollamapy.testing.wire import ndjson

# Tools (uses .Tools) and thinking (tags around .Thinking inside the messages range).
TEMPLATE = (
    "{{- if .Tools }}Tools: {{ json .Tools }}\n{{ end }}"
    "{{- range .Messages }}{{ .Role }}: {{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}\n{{ end }}"
    "assistant: "
)
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(fake_client: TestClient, tiny_gguf: Path) -> TestClient:
    await create_model(fake_client, "smart", tiny_gguf, template=TEMPLATE)
    await create_model(fake_client, "plain", tiny_gguf, template="{{ .Prompt }}")
    return fake_client


async def chat(client: TestClient, status: int = 200, **body: Any) -> list[dict[str, Any]]:
    resp = await client.post("/api/chat", json={"model": "smart", "messages": USER, "think": False, **body})
    assert resp.status == status, await resp.text()
    return ndjson(await resp.text())


async def test_streams_message_chunks_then_a_done_chunk(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    resp = await client.post("/api/chat", json={"model": "smart", "messages": USER, "think": False})
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    chunks = ndjson(await resp.text())
    assert [c["message"] for c in chunks] == [
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": " world"},
        {"role": "assistant", "content": "!"},
        {"role": "assistant", "content": ""},
    ]
    assert [c["done"] for c in chunks] == [False, False, False, True]
    final = chunks[-1]
    assert final["done_reason"] == "stop" and final["eval_count"] == 3
    assert final["prompt_eval_count"] == len("user: hi\nassistant: ") + 1
    assert "context" not in final
    assert fake_runners.last.requests[-1].prompt == "user: hi\nassistant: "


async def test_stream_false_joins_the_message(client: TestClient) -> None:
    (body,) = await chat(client, stream=False)
    assert body["message"] == {"role": "assistant", "content": "Hello world!"}
    assert body["done"] is True and body["done_reason"] == "stop" and body["eval_count"] == 3


async def test_thinking_is_split_from_content(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(pieces=["<think>", "hmm", "</think>", "Yes"])
    (body,) = await chat(client, think=True, stream=False)
    assert body["message"] == {"role": "assistant", "content": "Yes", "thinking": "hmm"}
    streamed = await chat(client, think=True)
    assert "".join(c["message"].get("thinking", "") for c in streamed) == "hmm"
    assert "".join(c["message"]["content"] for c in streamed) == "Yes"


async def test_tool_calls_are_parsed_out_of_the_text(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(pieces=['{"name": "get_weather", ', '"arguments": {"city": "Paris"}}'])
    (body,) = await chat(client, tools=[WEATHER], stream=False)
    assert body["message"]["content"] == ""
    assert [c["function"] for c in body["message"]["tool_calls"]] == [{"name": "get_weather", "arguments": {"city": "Paris"}, "index": 0}]
    assert fake_runners.last.requests[-1].prompt.startswith("Tools: [")


async def test_empty_messages_load_the_model(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    (body,) = await chat(client, messages=[])
    assert body["message"] == {"role": "assistant", "content": ""} and body["done_reason"] == "load"
    assert len(fake_runners.started) == 1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "nope"}, 404, "model 'nope' not found"),
        ({"model": ""}, 400, "model is required"),
        ({"model": "plain", "think": True}, 400, '"plain" does not support thinking'),
        ({"top_logprobs": -1}, 400, "top_logprobs must be between 0 and 20"),
    ],
)
async def test_errors_before_anything_is_loaded(
    client: TestClient, fake_runners: FakeRunnerFactory, body: dict[str, Any], status: int, error: str
) -> None:
    (answer,) = await chat(client, status, **body)
    assert answer == {"error": error}
    assert fake_runners.started == []


async def test_tools_on_a_model_without_them(client: TestClient) -> None:
    (answer,) = await chat(client, 400, model="plain", tools=[WEATHER])
    assert str(answer["error"]).endswith("does not support tools")


async def test_runner_crash_mid_stream_ends_with_an_error_line(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(fail_after=2)
    lines = await chat(client)
    assert [line.get("message", {}).get("content") for line in lines[:-1]] == ["Hello", " world"]
    assert lines[-1] == {"error": CRASH_MESSAGE}


# A GGUF chat template no named template matches: the model keeps it (no TEMPLATE layer).
JINJA_WITH_TOOLS = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if tools %}<tools>{{ tools | tojson }}</tools> Call a tool as <tool_call>{...}</tool_call>.{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_jinja_only_model_returns_tool_calls(fake_client: TestClient, fake_runners: FakeRunnerFactory, tmp_path: Path, stream: bool) -> None:
    gguf = write_tiny_gguf(tmp_path / "jinja.gguf", TinyModelSpec(chat_template=JINJA_WITH_TOOLS))
    await create_model(fake_client, "jinja", gguf)
    show = await (await fake_client.post("/api/show", json={"model": "jinja"})).json()
    assert show.get("template", "") == "" and "tools" in show["capabilities"]
    fake_runners.reply = FakeReply(pieces=["Let me check.\n<tool_", 'call>\n{"name": "get_weather", "arguments": ', '{"city": "Paris"}}\n</tool_call>'])
    resp = await fake_client.post("/api/chat", json={"model": "jinja", "messages": USER, "tools": [WEATHER], "stream": stream})
    assert resp.status == 200
    chunks = ndjson(await resp.text())
    calls = [c for chunk in chunks for c in chunk["message"].get("tool_calls", [])]
    assert [c["function"] for c in calls] == [{"name": "get_weather", "arguments": {"city": "Paris"}, "index": 0}]
    assert "".join(chunk["message"]["content"] for chunk in chunks).strip() == "Let me check."
    assert "<tools>" in fake_runners.last.requests[-1].prompt
