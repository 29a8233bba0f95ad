"""``POST /v1/messages`` over real HTTP with real runner processes on the tiny GGUF: the wire
format of its server-sent events, its errors in Anthropic's shape, and streams that end
early (runner killed, client gone)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.testing.api import create_model, until_idle

pytestmark = pytest.mark.serving

USER = [{"role": "user", "content": "hello"}]
TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path, tiny_gguf: Path) -> TestClient:
    test_client = await aiohttp_client(create_app(models_dir))
    await create_model(test_client, "tiny", tiny_gguf, template="{{ range .Messages }}{{ .Content }} {{ end }}")
    return test_client


def frames(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of each server-sent event; checks the framing."""
    out = []
    for frame in text.split("\n\n")[:-1]:
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        out.append((event_line[7:], json.loads(data_line[6:])))
    assert text.endswith("\n\n")
    return out


async def test_stream_wire_format_matches_the_whole_answer(client: TestClient) -> None:
    body = {"model": "tiny", "max_tokens": 5, "messages": USER, "temperature": 0}
    whole = await client.post("/v1/messages", json=body)
    assert whole.status == 200 and whole.headers["Content-Type"].startswith("application/json")
    message = await whole.json()
    assert message["id"].startswith("msg_") and message["stop_reason"] == "max_tokens"

    resp = await client.post("/v1/messages", json={**body, "stream": True})
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = frames((await resp.read()).decode())
    assert all(name == data["type"] for name, data in events)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == message["content"][0]["text"]
    (delta,) = [data for name, data in events if name == "message_delta"]
    assert delta["delta"] == {"stop_reason": "max_tokens"} and delta["usage"] == message["usage"]


@pytest.mark.parametrize(
    ("body", "status", "kind", "message"),
    [
        (None, 400, "invalid_request_error", "EOF"),
        ({"max_tokens": 5, "messages": USER}, 400, "invalid_request_error", "model is required"),
        ({"model": "tiny", "messages": USER}, 400, "invalid_request_error", "max_tokens is required and must be positive"),
        ({"model": "tiny", "max_tokens": 5, "messages": []}, 400, "invalid_request_error", "messages is required"),
        ({"model": "ghost", "max_tokens": 5, "messages": USER}, 404, "not_found_error", "model 'ghost' not found"),
        ({"model": "tiny", "max_tokens": 5, "messages": USER, "tools": [TOOL]}, 400, "invalid_request_error", "registry.ollama.ai/library/tiny:latest does not support tools"),
        ({"model": "tiny", "max_tokens": 5, "messages": "hi"}, 400, "invalid_request_error", None),
    ],
)
async def test_errors_in_anthropic_shape(client: TestClient, body: dict[str, Any] | None, status: int, kind: str, message: str | None) -> None:
    resp = await client.post("/v1/messages", data=b"") if body is None else await client.post("/v1/messages", json=body)
    assert resp.status == status
    error = await resp.json()
    assert error["type"] == "error" and error["error"]["type"] == kind and error["request_id"].startswith("req_")
    if message is not None:
        assert error["error"]["message"] == message


async def test_runner_dying_mid_stream_ends_with_an_error_event(client: TestClient) -> None:
    resp = await client.post("/v1/messages", json={"model": "tiny", "max_tokens": 4000, "messages": USER, "stream": True})
    assert (await resp.content.readline()).startswith(b"event: message_start")
    (runner,) = client.app[SCHEDULER].loaded()
    runner.handle._process.send_signal(signal.SIGKILL)
    rest = (await resp.read()).decode()
    name, data = frames(rest[rest.index("event: "):])[-1]
    assert name == "error" and data["error"]["type"] == "api_error"
    assert data["error"]["message"].startswith("model runner has unexpectedly stopped")


async def test_client_disconnect_stops_generation(client: TestClient) -> None:
    resp = await client.post("/v1/messages", json={"model": "tiny", "max_tokens": 4000, "messages": USER, "stream": True})
    await resp.content.readline()
    (runner,) = client.app[SCHEDULER].loaded()
    resp.close()
    assert (await until_idle(runner.handle)).tokens_generated < 4000


async def test_count_tokens_is_ollamas_estimate(client: TestClient) -> None:
    body = {"model": "tiny", "system": "be brief", "messages": [{"role": "user", "content": "hello world"}]}
    resp = await client.post("/v1/messages/count_tokens", json=body)
    assert resp.status == 200
    assert await resp.json() == {"input_tokens": (8 + 4 + 11) // 4}
    assert client.app[SCHEDULER].loaded() == []  # counting loads no model
    missing = await client.post("/v1/messages/count_tokens", json={**body, "model": "ghost"})
    assert missing.status == 404 and (await missing.json())["error"]["type"] == "not_found_error"
    empty = await client.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": []})
    assert empty.status == 400 and (await empty.json())["error"]["message"] == "messages is required"
