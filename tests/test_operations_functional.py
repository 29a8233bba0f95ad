"""Operations: /metrics, /api/ready, the access log, and graceful shutdown of a real server
(native NDJSON and OpenAI SSE streams alike)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.testing.access_log import AccessLines
from ollamapy.testing.api import create_model, free_port, wait_until_serving

pytestmark = pytest.mark.serving


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path, tiny_gguf: Path) -> TestClient:
    test_client = await aiohttp_client(create_app(models_dir))
    await create_model(test_client, "tiny", tiny_gguf, template="{{ .Prompt }}")
    return test_client


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


async def test_metrics_count_requests_tokens_and_latency(client: TestClient) -> None:
    result = await (await client.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": True, "options": {"num_predict": 6, "temperature": 0}})).text()
    final = json.loads(result.splitlines()[-1])
    await client.post("/api/show", json={"model": "ghost"})
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert _sample(text, "ollamapy_http_requests_total", route="/api/generate", status="200") == 1
    assert _sample(text, "ollamapy_http_requests_total", route="/api/show", status="404") == 1
    assert _sample(text, "ollamapy_generated_tokens_total", model="tiny:latest") == final["eval_count"] == 6
    assert _sample(text, "ollamapy_prompt_tokens_total", model="tiny:latest") == final["prompt_eval_count"]
    assert _sample(text, "ollamapy_time_to_first_token_seconds_count", model="tiny:latest") == 1
    assert _sample(text, "ollamapy_inter_token_latency_seconds_count", model="tiny:latest") >= 1
    assert _sample(text, "ollamapy_model_load_seconds_count", model="tiny:latest") == 1
    assert _sample(text, "ollamapy_models_loaded") == 1
    assert _sample(text, "ollamapy_queue_pending") == 0
    assert "ollamapy_requests_running" in text and "ollamapy_runner_restarts" in text


async def test_ready_reports_models_and_refuses_when_stopped(client: TestClient) -> None:
    body = await (await client.get("/api/ready")).json()
    assert body == {"status": "ready", "models": []}
    await client.post("/api/generate", json={"model": "tiny"})
    assert (await (await client.get("/api/ready")).json())["models"] == ["tiny:latest"]
    await client.app[SCHEDULER].stop()
    resp = await client.get("/api/ready")
    assert resp.status == 503 and (await resp.json())["status"] == "not ready"
    assert (await client.get("/")).status == 200  # liveness stays up


async def test_one_access_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ollamapy.access"):
        await client.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 3}})
    lines = [r.getMessage() for r in caplog.records if r.name == "ollamapy.access"]
    assert len(lines) == 1
    assert "method=POST route=/api/generate model=tiny status=200" in lines[0]
    assert "eval_tokens=3" in lines[0]


@contextlib.asynccontextmanager
async def _server(tmp_path: Path, tiny_gguf: Path, grace: str) -> AsyncIterator[tuple[str, subprocess.Popen[bytes], aiohttp.ClientSession]]:
    """``ollamapy serve`` in its own process with ``tiny`` created, and a session to it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "models"), "OLLAMAPY_SHUTDOWN_GRACE": grace, "OLLAMA_CONTEXT_LENGTH": "4096"}
    proc = subprocess.Popen([sys.executable, "-m", "ollamapy", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_until_serving(base, proc)
        async with aiohttp.ClientSession() as session:
            await create_model(session, "tiny", tiny_gguf, base=base, template="{{ .Prompt }}")
            yield base, proc, session
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# an endless JSON array of booleans: no end-of-sequence, no token repeated in a row
ENDLESS = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}


def _sse_chat(max_tokens: int) -> dict[str, Any]:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "max_tokens": max_tokens,
        "response_format": {"type": "json_schema", "json_schema": {"name": "endless", "schema": ENDLESS}},
    }


def _sse_frames(body: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, checked to be nothing but ``data:`` frames."""
    frames = body.decode().split("\n\n")
    assert frames[-1] == ""
    assert all(frame.startswith("data: ") for frame in frames[:-1])
    return [frame[len("data: "):] for frame in frames[:-1]]


async def test_sigterm_finishes_short_streams_ends_long_ones_and_leaves_no_child(tmp_path: Path, tiny_gguf: Path) -> None:
    async with _server(tmp_path, tiny_gguf, "2s") as (base, proc, session):
        long_body = {"model": "tiny", "prompt": "x", "format": ENDLESS, "options": {"num_predict": 1_000_000, "num_ctx": 4096}}
        long_resp = await session.post(f"{base}/api/generate", json=long_body)
        await long_resp.content.readline()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "a runner should be running"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        lines = [json.loads(line) for line in (await long_resp.read()).decode().splitlines() if line.strip()]
        assert lines[-1] == {"error": "server is shutting down"}
        assert time.monotonic() - started >= 1.5  # it was given the grace period
        assert await asyncio.to_thread(proc.wait, 30) == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


async def test_sigterm_lets_an_openai_stream_finish_within_the_grace_period(tmp_path: Path, tiny_gguf: Path) -> None:
    async with _server(tmp_path, tiny_gguf, "10m") as (base, proc, session):
        resp = await session.post(f"{base}/v1/chat/completions", json=_sse_chat(400))
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        first = await resp.content.readuntil(b"\n\n")
        proc.send_signal(signal.SIGTERM)
        frames = _sse_frames(first + await resp.read())
        assert frames[-1] == "[DONE]"
        chunks = [json.loads(frame) for frame in frames[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"  # all 400 tokens were generated
        assert await asyncio.to_thread(proc.wait, 60) == 0


async def test_sigterm_ends_an_openai_stream_with_an_error_event_after_the_grace_period(tmp_path: Path, tiny_gguf: Path) -> None:
    async with _server(tmp_path, tiny_gguf, "1s") as (base, proc, session):
        resp = await session.post(f"{base}/v1/chat/completions", json=_sse_chat(1_000_000))
        first = await resp.content.readuntil(b"\n\n")
        proc.send_signal(signal.SIGTERM)
        frames = _sse_frames(first + await resp.read())
        assert json.loads(frames[-1]) == {"error": {"message": "server is shutting down", "type": "api_error", "param": None, "code": None}}
        assert "[DONE]" not in frames
        assert await asyncio.to_thread(proc.wait, 30) == 0


async def test_the_access_log_names_the_model_and_tokens_of_an_sse_stream(client: TestClient, access_log: AccessLines) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 3, "stream_options": {"include_usage": True}}
    frames = _sse_frames(await (await client.post("/v1/chat/completions", json=body)).read())
    usage = json.loads(frames[-2])["usage"]
    line = await access_log.next_line()
    assert "method=POST route=/v1/chat/completions model=tiny status=200" in line
    assert f"prompt_tokens={usage['prompt_tokens']} eval_tokens={usage['completion_tokens']}" in line
    assert usage["completion_tokens"] == 3 and usage["prompt_tokens"] > 0


async def test_an_abandoned_stream_is_logged_with_its_status_and_releases_the_runner(client: TestClient, access_log: AccessLines) -> None:
    resp = await client.post("/v1/chat/completions", json=_sse_chat(1_000_000))
    assert resp.status == 200
    await resp.content.readuntil(b"\n\n")
    resp.close()  # the client goes away mid-stream
    line = await access_log.next_line()
    assert "route=/v1/chat/completions model=tiny status=200" in line and line.endswith(" cancelled=true")
    [runner] = client.app[SCHEDULER].loaded()
    assert runner.ref_count == 0  # the lease was released when the stream ended


async def test_debug_level_logs_the_rendered_prompt(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ollamapy.server"):
        await client.post("/api/generate", json={"model": "tiny", "prompt": "tell me", "stream": False, "options": {"num_predict": 1}})
    assert any("rendered prompt model=tiny:latest prompt='tell me'" in r.getMessage() for r in caplog.records)
