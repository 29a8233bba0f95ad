"""Anthropic's ``POST /v1/messages`` (and ``count_tokens``) on fake runners: the message
object, the named event stream, stop reasons, usage and Anthropic's error shape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import CRASH_MESSAGE, FakeReply, FakeRunnerFactory
from ollamapy.testing.wire import sse

TEMPLATE = "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: "
USER = [{"role": "user", "content": "hi"}]
PROMPT_TOKENS = len("user: hi\nassistant: ") + 1


@pytest.fixture
async def client(fake_client: TestClient, tiny_gguf: Path) -> TestClient:
    await create_model(fake_client, "tiny", tiny_gguf, template=TEMPLATE)
    return fake_client


async def messages(client: TestClient, status: int = 200, **body: Any) -> Any:
    resp = await client.post("/v1/messages", json={"model": "tiny", "max_tokens": 16, "messages": USER, **body})
    assert resp.status == status, await resp.text()
    return await resp.json() if not body.get("stream") else sse(await resp.text())


async def test_message_object(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    body = await messages(client)
    assert re.fullmatch(r"msg_[0-9a-f]{24}", body["id"])
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "tiny")
    assert body["content"] == [{"type": "text", "text": "Hello world!"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"] == {"input_tokens": PROMPT_TOKENS, "output_tokens": 3}
    assert fake_runners.last.requests[-1].num_predict == 16


async def test_max_tokens_stop_reason(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(done_reason="length")
    assert (await messages(client))["stop_reason"] == "max_tokens"


async def test_event_stream(client: TestClient) -> None:
    events = await messages(client, stream=True)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["delta"]["text"] for name, data in events if name == "content_block_delta"] == ["Hello", " world", "!"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn"} and delta["usage"] == {"input_tokens": PROMPT_TOKENS, "output_tokens": 3}


async def test_errors_have_anthropics_shape(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    body = await messages(client, 404, model="nope")
    assert body["type"] == "error" and body["error"] == {"type": "not_found_error", "message": "model 'nope' not found"}
    assert re.fullmatch(r"req_[0-9a-f]{24}", body["request_id"])
    resp = await client.post("/v1/messages", data=b"")
    assert resp.status == 400 and (await resp.json())["error"] == {"type": "invalid_request_error", "message": "EOF"}
    assert fake_runners.started == []


async def test_crash_mid_stream_ends_with_an_error_event(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(fail_after=1)
    events = await messages(client, stream=True)
    assert [name for name, _ in events] == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "api_error", "message": CRASH_MESSAGE}}


async def test_count_tokens_estimates_without_loading(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    resp = await client.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": USER})
    assert resp.status == 200 and set(await resp.json()) == {"input_tokens"}
    resp = await client.post("/v1/messages/count_tokens", json={"model": "nope", "messages": USER})
    assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found_error"
    assert fake_runners.started == []
