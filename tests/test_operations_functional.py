"""Operations: /metrics, /api/ready, the access log, and graceful shutdown of a real server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.testing.api import create_model, free_port

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


async def _wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            assert proc.poll() is None, "server exited early"
            try:
                async with session.get(base) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("server did not start")


async def test_sigterm_finishes_short_streams_ends_long_ones_and_leaves_no_child(tmp_path: Path, tiny_gguf: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "models"), "OLLAMAPY_SHUTDOWN_GRACE": "2s"}
    proc = subprocess.Popen([sys.executable, "-m", "ollamapy", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _wait_up(base, proc)
        async with aiohttp.ClientSession() as session:
            await create_model(session, "tiny", tiny_gguf, base=base, template="{{ .Prompt }}")
            # an endless JSON array of booleans: no end-of-sequence, no token repeated in a row
            endless = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}
            long_body = {"model": "tiny", "prompt": "x", "format": endless, "options": {"num_predict": 1_000_000, "num_ctx": 4096}}
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
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_debug_level_logs_the_rendered_prompt(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ollamapy.server"):
        await client.post("/api/generate", json={"model": "tiny", "prompt": "tell me", "stream": False, "options": {"num_predict": 1}})
    assert any("rendered prompt model=tiny:latest prompt='tell me'" in r.getMessage() for r in caplog.records)
