"""``POST /api/generate`` on fake runners: the NDJSON and single-object answers users see,
the counts the runner reports, errors before and after the first byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import BOS, CRASH_MESSAGE, FakeReply, FakeRunnerFactory
from ollamapy.testing.wire import ndjson

TEMPLATE = "{{ if .System }}[{{ .System }}] {{ end }}{{ .Prompt }}"


@pytest.fixture
async def client(fake_client: TestClient, tiny_gguf: Path) -> TestClient:
    await create_model(fake_client, "tiny", tiny_gguf, template=TEMPLATE)
    return fake_client


async def generate(client: TestClient, status: int = 200, **body: Any) -> list[dict[str, Any]]:
    resp = await client.post("/api/generate", json={"model": "tiny", **body})
    assert resp.status == status, await resp.text()
    return ndjson(await resp.text())


async def test_streams_ndjson_chunks_then_a_done_chunk_with_counts(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "why", "system": "be brief"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    chunks = ndjson(await resp.text())
    assert [c["response"] for c in chunks] == ["Hello", " world", "!", ""]
    assert all(c["model"] == "tiny" and str(c["created_at"]).endswith("Z") for c in chunks)
    assert [c["done"] for c in chunks] == [False, False, False, True]
    assert all(set(c) == {"model", "created_at", "response", "done"} for c in chunks[:-1])
    final = chunks[-1]
    prompt = "[be brief] why"
    assert fake_runners.last.requests[-1].prompt == prompt
    assert final["done_reason"] == "stop"
    assert final["eval_count"] == 3 and final["eval_duration"] == 3 * 250_000
    assert final["prompt_eval_count"] == len(prompt) + 1 and final["prompt_eval_duration"] == 1_000_000
    assert isinstance(final["total_duration"], int) and isinstance(final["load_duration"], int)
    assert final["total_duration"] >= final["load_duration"] >= 0
    assert final["context"] == [BOS, *prompt.encode(), *b"Hello world!"]


async def test_stream_false_answers_one_object(client: TestClient) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "why", "stream": False})
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
    body = await resp.json()
    assert body["response"] == "Hello world!" and body["done"] is True and body["done_reason"] == "stop"
    assert body["eval_count"] == 3 and "context" in body


async def test_done_reason_length_and_sampling_options_reach_the_runner(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(pieces=["a", "b"], done_reason="length")
    (body,) = await generate(client, prompt="x", stream=False, options={"temperature": 0.25, "num_predict": 2, "seed": 7})
    assert body["done_reason"] == "length" and body["eval_count"] == 2
    sent = fake_runners.last.requests[-1]
    assert (sent.temperature, sent.num_predict, sent.seed) == (0.25, 2, 7)


async def test_raw_prompt_is_sent_as_is_without_context(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    (body,) = await generate(client, prompt="<raw>", raw=True, stream=False)
    assert fake_runners.last.requests[-1].prompt == "<raw>"
    assert "context" not in body


async def test_logprobs_ride_on_each_chunk_and_are_joined_when_not_streaming(client: TestClient) -> None:
    chunks = await generate(client, prompt="x", logprobs=True, top_logprobs=2)
    assert [c["logprobs"][0]["token"] for c in chunks[:-1]] == ["Hello", " world", "!"]
    assert all(len(c["logprobs"][0]["top_logprobs"]) == 2 for c in chunks[:-1])
    (whole,) = await generate(client, prompt="x", logprobs=True, stream=False)
    assert [lp["token"] for lp in whole["logprobs"]] == ["Hello", " world", "!"]


async def test_empty_prompt_loads_and_keep_alive_zero_unloads(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    (loaded,) = await generate(client)
    assert loaded == {"model": "tiny", "created_at": loaded["created_at"], "response": "", "done": True, "done_reason": "load"}
    assert len(fake_runners.started) == 1 and not fake_runners.last.has_exited()
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["tiny:latest"]
    (unloaded,) = await generate(client, keep_alive=0)
    assert unloaded["done_reason"] == "unload"
    assert fake_runners.last.has_exited()
    assert (await (await client.get("/api/ps")).json()) == {"models": []}


async def test_a_loaded_model_is_reused(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    await generate(client, prompt="one", stream=False)
    await generate(client, prompt="two", stream=False)
    assert len(fake_runners.started) == 1
    assert [r.prompt for r in fake_runners.last.requests] == ["one", "two"]


async def test_debug_render_only_answers_the_prompt_without_a_runner(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    (body,) = await generate(client, prompt="why", system="sys", debug_render_only=True)
    assert body["_debug_info"] == {"rendered_template": "[sys] why", "image_count": 0}
    assert fake_runners.started == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ({"prompt": "x", "top_logprobs": 21}, 400, "top_logprobs must be between 0 and 20"),
        ({"prompt": "x", "format": "yaml"}, 400, 'invalid format: "yaml"; expected "json" or a valid JSON Schema object'),
        ({"prompt": "x", "raw": True, "system": "s"}, 400, "raw mode does not support template, system, or context"),
        ({"prompt": "x", "think": "lots"}, 400, 'invalid think value: "lots" (must be "high", "medium", "low", "max", true, or false)'),
        ({"prompt": "x", "think": True}, 400, '"tiny" does not support thinking'),
    ],
)
async def test_errors_before_anything_is_loaded(
    client: TestClient, fake_runners: FakeRunnerFactory, body: dict[str, Any], status: int, error: str
) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny", **body})
    assert resp.status == status
    assert await resp.json() == {"error": error}
    assert fake_runners.started == []


async def test_empty_body(client: TestClient) -> None:
    resp = await client.post("/api/generate", data=b"")
    assert resp.status == 400 and await resp.json() == {"error": "missing request body"}


async def test_runner_crash_mid_stream_ends_with_an_error_line(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(fail_after=1)
    lines = await generate(client, prompt="x")
    assert lines == [lines[0], {"error": CRASH_MESSAGE}]
    assert lines[0]["response"] == "Hello" and lines[0]["done"] is False
    fake_runners.reply = FakeReply()
    (body,) = await generate(client, prompt="again", stream=False)
    assert body["response"] == "Hello world!"
    assert len(fake_runners.started) == 2  # the dead runner was replaced


async def test_runner_crash_before_the_first_chunk_is_a_500(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.reply = FakeReply(fail_after=0)
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "x"})
    assert resp.status == 500
    assert await resp.json() == {"error": CRASH_MESSAGE}
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False})
    assert resp.status == 500 and await resp.json() == {"error": CRASH_MESSAGE}
