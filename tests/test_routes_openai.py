"""OpenAI's ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and
``/v1/models`` on fake runners: OpenAI's objects, SSE framing, usage, error shapes."""

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


@pytest.fixture
async def client(fake_client: TestClient, tiny_gguf: Path) -> TestClient:
    await create_model(fake_client, "tiny", tiny_gguf, template=TEMPLATE)
    return fake_client


async def post(client: TestClient, path: str, status: int = 200, **body: Any) -> dict[str, Any]:
    resp = await client.post(path, json={"model": "tiny", **body})
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    answer: dict[str, Any] = await resp.json()
    return answer


async def stream(client: TestClient, path: str, **body: Any) -> list[Any]:
    """The ``data:`` payloads of an OpenAI stream, which ends with ``data: [DONE]``."""
    resp = await client.post(path, json={"model": "tiny", "stream": True, **body})
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = sse(await resp.text())
    assert all(name is None for name, _ in events)
    return [data for _, data in events]


def openai_error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def test_chat_completion(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    body = await post(client, "/v1/chat/completions", messages=USER)
    assert re.fullmatch(r"chatcmpl-\d+", body["id"]) and body["object"] == "chat.completion" and body["model"] == "tiny"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello world!"}, "finish_reason": "stop"}]
    prompt_tokens = len("user: hi\nassistant: ") + 1
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 3, "total_tokens": prompt_tokens + 3}
    assert fake_runners.last.requests[-1].prompt == "user: hi\nassistant: "


async def test_chat_completion_stream_with_usage(client: TestClient) -> None:
    events = await stream(client, "/v1/chat/completions", messages=USER, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant" and "".join(d.get("content", "") for d in deltas) == "Hello world!"
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


async def test_finish_reason_length(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(done_reason="length")
    body = await post(client, "/v1/chat/completions", messages=USER, max_tokens=3)
    assert body["choices"][0]["finish_reason"] == "length"
    assert fake_runners.last.requests[-1].num_predict == 3


async def test_chat_errors_have_openais_shape(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    assert await post(client, "/v1/chat/completions", 404, model="nope", messages=USER) == openai_error("model 'nope' not found", "not_found_error")
    assert await post(client, "/v1/chat/completions", 400, messages=[]) == openai_error("[] is too short - 'messages'", "invalid_request_error")
    resp = await client.post("/v1/chat/completions", data=b"")
    assert resp.status == 400 and await resp.json() == openai_error("EOF", "invalid_request_error")
    assert fake_runners.started == []


async def test_chat_stream_crash_ends_with_an_error_event(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(fail_after=1)
    resp = await client.post("/v1/chat/completions", json={"model": "tiny", "stream": True, "messages": USER})
    assert resp.status == 200
    events = [data for _, data in sse(await resp.text())]
    assert events[0]["choices"][0]["delta"]["content"] == "Hello"
    assert events[-1] == openai_error(CRASH_MESSAGE, "api_error")


async def test_chat_crash_before_the_first_byte_is_a_500(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(fail_after=0)
    assert await post(client, "/v1/chat/completions", 500, messages=USER, stream=True) == openai_error(CRASH_MESSAGE, "api_error")


async def test_completions(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    body = await post(client, "/v1/completions", prompt="once")
    assert re.fullmatch(r"cmpl-\d+", body["id"]) and body["object"] == "text_completion"
    assert body["choices"] == [{"text": "Hello world!", "index": 0, "finish_reason": "stop"}]
    assert body["usage"]["completion_tokens"] == 3
    assert fake_runners.last.requests[-1].prompt == "user: once\nassistant: "  # rendered as /api/generate renders
    events = await stream(client, "/v1/completions", prompt="once")
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "Hello world!"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_embeddings(client: TestClient) -> None:
    body = await post(client, "/v1/embeddings", input=["a", "bb"])
    assert body["object"] == "list" and body["model"] == "tiny"
    assert [(d["object"], d["index"], len(d["embedding"])) for d in body["data"]] == [("embedding", 0, 4), ("embedding", 1, 4)]
    assert body["usage"] == {"prompt_tokens": 2 + 3, "total_tokens": 2 + 3}


async def test_models(client: TestClient) -> None:
    listed = await (await client.get("/v1/models")).json()
    assert listed["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in listed["data"]] == [("tiny:latest", "model", "library")]
    resp = await client.get("/v1/models/tiny")
    assert (await resp.json())["id"] == "tiny"
    resp = await client.get("/v1/models/nope")
    assert resp.status == 404 and await resp.json() == openai_error("model 'nope' not found", "not_found_error")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/messages"])
async def test_a_whole_answer_is_logged_with_its_model_and_tokens(client: TestClient, caplog: pytest.LogCaptureFixture, path: str) -> None:
    body: dict[str, Any] = {"messages": USER, "max_tokens": 64} if path != "/v1/completions" else {"prompt": "hi"}
    with caplog.at_level("INFO", logger="ollamapy.access"):
        await post(client, path, **body)
    line = [r.getMessage() for r in caplog.records if r.name == "ollamapy.access"][-1]
    assert f"method=POST route={path} model=tiny status=200" in line and "eval_tokens=3" in line
