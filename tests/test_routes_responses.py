"""OpenAI's ``POST /v1/responses`` on fake runners: the response object, the named event
sequence with sequence numbers, usage, and the error event of a failed stream."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import CRASH_MESSAGE, FakeReply, FakeRunnerFactory
from ollamapy.testing.wire import sse

TEMPLATE = "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: "
PROMPT_TOKENS = len("user: hi\nassistant: ") + 1


@pytest.fixture
async def client(fake_client: TestClient, tiny_gguf: Path) -> TestClient:
    await create_model(fake_client, "tiny", tiny_gguf, template=TEMPLATE)
    return fake_client


async def test_response_object(client: TestClient) -> None:
    resp = await client.post("/v1/responses", json={"model": "tiny", "input": "hi"})
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
    body = await resp.json()
    assert re.fullmatch(r"resp_\d+", body["id"]) and body["object"] == "response" and body["status"] == "completed"
    (item,) = body["output"]
    assert (item["type"], item["role"], item["status"]) == ("message", "assistant", "completed")
    assert item["content"] == [{"type": "output_text", "text": "Hello world!", "annotations": [], "logprobs": []}]
    assert body["usage"]["input_tokens"] == PROMPT_TOKENS and body["usage"]["output_tokens"] == 3
    assert body["usage"]["total_tokens"] == PROMPT_TOKENS + 3


async def test_event_stream(client: TestClient) -> None:
    resp = await client.post("/v1/responses", json={"model": "tiny", "input": "hi", "stream": True})
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = sse(await resp.text())
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [data["delta"] for name, data in events if name == "response.output_text.delta"] == ["Hello", " world", "!"]
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] == 3


async def test_unknown_model_is_a_404_in_openais_shape(client: TestClient) -> None:
    resp = await client.post("/v1/responses", json={"model": "nope", "input": "hi"})
    assert resp.status == 404
    assert await resp.json() == {"error": {"message": "model 'nope' not found", "type": "not_found_error", "param": None, "code": None}}


async def test_crash_mid_stream_ends_with_an_error_event(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(fail_after=1)
    resp = await client.post("/v1/responses", json={"model": "tiny", "input": "hi", "stream": True})
    events = sse(await resp.text())
    assert [name for name, _ in events][-2:] == ["response.output_text.delta", "error"]
    error = events[-1][1]
    assert error["type"] == "error" and error["sequence_number"] == len(events) - 1
    assert error["message"] == CRASH_MESSAGE and error["error"]["type"] == "api_error"
