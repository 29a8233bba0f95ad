"""``/v1/*`` over real HTTP with real runner processes on the tiny GGUF.

The tiny model writes gibberish, so these tests check shapes, framing, statuses and the
tool-call and JSON constraints, never the words.
"""

from __future__ import annotations

import base64
import json
import math
import re
import signal
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.testing.api import create_model, until_idle

pytestmark = pytest.mark.serving

GREEDY = {"temperature": 0, "seed": 42}
TOOL_TEMPLATE = (
    "{{- if .Tools }}Tools: {{ json .Tools }}\n{{ end }}"
    "{{- range .Messages }}{{ .Role }}: {{ .Content }}"
    "{{- if .ToolCalls }}{{ range .ToolCalls }}{\"name\": \"{{ .Function.Name }}\", \"arguments\": {{ json .Function.Arguments }}}{{ end }}{{ end }}\n"
    "{{ end }}assistant: "
)
# The same, but calls are announced by a tag the constrained output never writes: the
# native parser sees plain content, and the adapter must read the forced call from it.
TAGGED_TOOL_TEMPLATE = TOOL_TEMPLATE.replace("{{ range .ToolCalls }}{", "<tool_call>{{ range .ToolCalls }}{")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 6}}, "required": ["zone"]}}}
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path, tiny_gguf: Path, tiny_embed_gguf: Path) -> TestClient:
    app = create_app(models_dir)
    test_client = await aiohttp_client(app)
    await create_model(test_client, "tiny", tiny_gguf, template="{{ range .Messages }}{{ .Content }} {{ end }}{{ .Prompt }}")
    await create_model(test_client, "tooly", tiny_gguf, template=TOOL_TEMPLATE)
    await create_model(test_client, "embedder", tiny_embed_gguf)
    return test_client


async def _post(client: TestClient, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    resp = await client.post(path, json=body)
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    return await resp.json()


async def _events(client: TestClient, path: str, body: dict[str, Any]) -> list[Any]:
    """The SSE payloads of a streamed answer; checks the framing and the final [DONE]."""
    resp = await client.post(path, json={**body, "stream": True})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream"
    text = (await resp.read()).decode()
    assert text.endswith("data: [DONE]\n\n")
    frames = text.split("\n\n")[:-1]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames)
    return [json.loads(f[6:]) for f in frames[:-1]]


def _assert_error(body: dict[str, Any], message: str, kind: str) -> None:
    assert body == {"error": {"message": message, "type": kind, "param": None, "code": None}}


# --- chat ---------------------------------------------------------------------------------


async def test_chat_completion_shape(client: TestClient) -> None:
    body = await _post(client, "/v1/chat/completions", {"model": "tiny", "messages": USER, "max_tokens": 6, **GREEDY})
    assert re.fullmatch(r"chatcmpl-\d{1,3}", body["id"])
    assert body["object"] == "chat.completion" and body["model"] == "tiny" and body["system_fingerprint"] == "fp_ollama"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    usage = body["usage"]
    assert usage["completion_tokens"] == 6 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 6


async def test_chat_stream_matches_non_stream(client: TestClient) -> None:
    request = {"model": "tiny", "messages": USER, "max_tokens": 10, "stream_options": {"include_usage": True}, **GREEDY}
    whole = await _post(client, "/v1/chat/completions", request)
    chunks = await _events(client, "/v1/chat/completions", request)
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas[0]["role"] == "assistant" and all("role" not in d for d in deltas[1:])
    assert "".join(d.get("content", "") for d in deltas) == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


async def test_chat_stream_without_usage_has_no_usage_chunk(client: TestClient) -> None:
    chunks = await _events(client, "/v1/chat/completions", {"model": "tiny", "messages": USER, "max_tokens": 3})
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)


async def test_json_schema_and_json_mode(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    body = await _post(client, "/v1/chat/completions", {"model": "tiny", "messages": USER, "response_format": fmt, "max_tokens": 64, **GREEDY})
    assert isinstance(json.loads(body["choices"][0]["message"]["content"])["ok"], bool)
    body = await _post(client, "/v1/chat/completions", {"model": "tiny", "messages": USER, "response_format": {"type": "json_object"}, "max_tokens": 8, **GREEDY})
    assert body["choices"][0]["message"]["content"].lstrip().startswith("{")


async def test_logprobs(client: TestClient) -> None:
    body = await _post(client, "/v1/chat/completions", {"model": "tiny", "messages": USER, "max_tokens": 4, "logprobs": True, "top_logprobs": 2, **GREEDY})
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 4
    assert all(e["logprob"] <= 0 and isinstance(e["bytes"], list) and len(e["top_logprobs"]) == 2 for e in content)
    assert b"".join(bytes(e["bytes"]) for e in content).decode(errors="replace") == body["choices"][0]["message"]["content"]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
async def test_forced_tool_call(client: TestClient, choice: Any) -> None:
    request = {"model": "tooly", "messages": USER, "tools": [WEATHER, TIME], "tool_choice": choice, "max_tokens": 80, **GREEDY}
    body = await _post(client, "/v1/chat/completions", request)
    (choice_out,) = body["choices"]
    assert choice_out["finish_reason"] == "tool_calls"
    (call,) = choice_out["message"]["tool_calls"]
    assert call["type"] == "function" and re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
    arguments = json.loads(call["function"]["arguments"])
    expected = {"get_weather": "city", "get_time": "zone"}
    if isinstance(choice, dict):
        assert call["function"]["name"] == "get_time"
    assert list(arguments) == [expected[call["function"]["name"]]]

    chunks = await _events(client, "/v1/chat/completions", request)
    calls = [c for chunk in chunks for c in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"]]
    assert [c["function"]["name"] for c in calls] == [call["function"]["name"]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_forced_call_with_a_tagged_template_is_read_from_content(client: TestClient, tiny_gguf: Path) -> None:
    await create_model(client, "tagged", tiny_gguf, template=TAGGED_TOOL_TEMPLATE)
    request = {"model": "tagged", "messages": USER, "tools": [WEATHER], "tool_choice": "required", "max_tokens": 80, **GREEDY}
    body = await _post(client, "/v1/chat/completions", request)
    message = body["choices"][0]["message"]
    assert message["content"] == "" and message["tool_calls"][0]["function"]["name"] == "get_weather"
    chunks = await _events(client, "/v1/chat/completions", request)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert not any(d.get("content") for d in deltas)
    assert [c["function"]["name"] for d in deltas for c in d.get("tool_calls", [])] == ["get_weather"]


async def test_tool_choice_none_drops_tools(client: TestClient) -> None:
    body = await _post(client, "/v1/chat/completions", {"model": "tiny", "messages": USER, "tools": [WEATHER], "tool_choice": "none", "max_tokens": 2})
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "tiny", "messages": []}, 400, "[] is too short - 'messages'"),
        ({"model": "ghost", "messages": USER}, 404, "model 'ghost' not found"),
        ({"messages": USER}, 400, "model is required"),
        ({"model": "tiny", "messages": USER, "tools": [WEATHER]}, 400, "registry.ollama.ai/library/tiny:latest does not support tools"),
        ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, 400, "image URLs are not currently supported, please use base64 encoded data instead"),
        ({"model": "tiny", "messages": USER, "top_logprobs": 21}, 400, "top_logprobs must be between 0 and 20"),
        ({"model": "tiny", "messages": USER, "reasoning_effort": "high"}, 400, '"tiny" does not support thinking'),
        ({"model": "tiny", "messages": "hi"}, 400, None),
    ],
)
async def test_chat_errors_in_openai_shape(client: TestClient, body: dict[str, Any], status: int, message: str | None) -> None:
    for stream in (False, True):
        answer = await _post(client, "/v1/chat/completions", {**body, "stream": stream}, status=status)
        kind = "invalid_request_error" if status == 400 else "not_found_error"
        if message is None:
            assert answer["error"]["type"] == kind and answer["error"]["message"]
        else:
            _assert_error(answer, message, kind)
    assert client.app[SCHEDULER].loaded() == []


async def test_empty_body_is_eof(client: TestClient) -> None:
    resp = await client.post("/v1/chat/completions", data=b"")
    assert resp.status == 400
    _assert_error(await resp.json(), "EOF", "invalid_request_error")


async def test_runner_dying_mid_stream_sends_an_error_event(client: TestClient) -> None:
    resp = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, "stream": True, "max_tokens": 4000})
    first = await resp.content.readline()
    assert first.startswith(b"data: {")
    (runner,) = client.app[SCHEDULER].loaded()
    runner.handle._process.send_signal(signal.SIGKILL)
    frames = [f for f in (await resp.read()).decode().split("\n\n") if f.strip()]
    last = json.loads(frames[-1][6:])
    assert last["error"]["type"] == "api_error"
    assert last["error"]["message"].startswith("model runner has unexpectedly stopped")


async def test_responses_stream_ends_with_an_error_event_when_the_runner_dies(client: TestClient) -> None:
    resp = await client.post("/v1/responses", json={"model": "tiny", "input": "hello", "stream": True, "max_output_tokens": 4000})
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert (await resp.content.readline()) == b"event: response.created\n"
    (runner,) = client.app[SCHEDULER].loaded()
    runner.handle._process.send_signal(signal.SIGKILL)
    frames = [f for f in (await resp.read()).decode().split("\n\n") if f.strip()]
    name, data = frames[-1].split("\n")
    assert name == "event: error"
    error = json.loads(data[6:])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert error["message"].startswith("model runner has unexpectedly stopped")


async def test_client_disconnect_stops_generation(client: TestClient) -> None:
    resp = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, "stream": True, "max_tokens": 4000})
    await resp.content.readline()
    (runner,) = client.app[SCHEDULER].loaded()
    resp.close()
    assert (await until_idle(runner.handle)).tokens_generated < 4000


# --- completions ------------------------------------------------------------------------


async def test_completions(client: TestClient) -> None:
    request = {"model": "tiny", "prompt": "the sky is", "max_tokens": 5, "logprobs": 2, **GREEDY}
    body = await _post(client, "/v1/completions", request)
    assert re.fullmatch(r"cmpl-\d{1,3}", body["id"]) and body["object"] == "text_completion"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 5
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == 5
    assert len(logprobs["token_logprobs"]) == 5 and all(len(top) <= 2 for top in logprobs["top_logprobs"])
    assert logprobs["text_offset"][0] == 0

    chunks = await _events(client, "/v1/completions", {**request, "stream_options": {"include_usage": True}})
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == choice["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == body["usage"]


async def test_completions_errors(client: TestClient) -> None:
    answer = await _post(client, "/v1/completions", {"model": "tiny", "prompt": "x", "suffix": "y"}, status=400)
    _assert_error(answer, "registry.ollama.ai/library/tiny:latest does not support insert", "invalid_request_error")
    answer = await _post(client, "/v1/completions", {"model": "nope", "prompt": "x"}, status=404)
    _assert_error(answer, "model 'nope' not found", "not_found_error")
    answer = await _post(client, "/v1/completions", {"model": "tiny", "prompt": "x", "stop": [1]}, status=400)
    _assert_error(answer, "invalid type for 'stop' field: float64", "invalid_request_error")


# --- embeddings ------------------------------------------------------------------------------


async def test_embeddings_float_base64_and_dimensions(client: TestClient) -> None:
    body = await _post(client, "/v1/embeddings", {"model": "embedder", "input": ["hello", "the sky"]})
    assert body["object"] == "list" and body["model"] == "embedder"
    assert [d["index"] for d in body["data"]] == [0, 1] and {d["object"] for d in body["data"]} == {"embedding"}
    vector = body["data"][0]["embedding"]
    assert len(vector) == 64 and math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0

    encoded = await _post(client, "/v1/embeddings", {"model": "embedder", "input": "hello", "encoding_format": "base64"})
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == 64 and all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) for a, b in zip(decoded, vector))

    cut = await _post(client, "/v1/embeddings", {"model": "embedder", "input": "hello", "dimensions": 8})
    assert len(cut["data"][0]["embedding"]) == 8
    empty = await _post(client, "/v1/embeddings", {"model": "embedder", "input": ""})
    assert len(empty["data"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "embedder", "input": None}, 400, "invalid input"),
        ({"model": "embedder", "input": []}, 400, "invalid input"),
        ({"model": "embedder", "input": [1, 2]}, 400, "invalid input type"),
        ({"model": "embedder", "input": "x", "encoding_format": "int8"}, 400, "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
        ({"model": "ghost", "input": "x"}, 404, "model 'ghost' not found"),
    ],
)
async def test_embeddings_errors(client: TestClient, body: dict[str, Any], status: int, message: str) -> None:
    answer = await _post(client, "/v1/embeddings", body, status=status)
    _assert_error(answer, message, "invalid_request_error" if status == 400 else "not_found_error")


# --- models ---------------------------------------------------------------------------------


async def test_models_list_and_retrieve(client: TestClient) -> None:
    resp = await client.get("/v1/models")
    listed = await resp.json()
    assert listed["object"] == "list"
    assert sorted(m["id"] for m in listed["data"]) == ["embedder:latest", "tiny:latest", "tooly:latest"]
    assert all(m["object"] == "model" and m["owned_by"] == "library" and isinstance(m["created"], int) for m in listed["data"])

    one = await (await client.get("/v1/models/tiny")).json()
    assert one["id"] == "tiny" and one["owned_by"] == "library" and one["object"] == "model"
    qualified = await (await client.get("/v1/models/registry.ollama.ai/library/tiny:latest")).json()
    assert qualified["id"] == "registry.ollama.ai/library/tiny:latest" and qualified["created"] == one["created"]

    resp = await client.get("/v1/models/ghost")
    assert resp.status == 404
    _assert_error(await resp.json(), "model 'ghost' not found", "not_found_error")
