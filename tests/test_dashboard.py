"""``/dashboard`` on fake runners: the page, its script and stylesheet, the numbers it polls,
and the same browser guard as the API."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import FakeReply, FakeRunnerFactory


@pytest.fixture
async def client(fake_client: TestClient, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "2")
    await create_model(fake_client, "tiny", tiny_gguf, template="{{ .Prompt }}")
    return fake_client


async def test_page_loads_only_its_own_script_and_stylesheet(client: TestClient) -> None:
    resp = await client.get("/dashboard")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    page = await resp.text()
    assert 'src="/dashboard/static/dashboard.js"' in page and 'href="/dashboard/static/dashboard.css"' in page
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(linked) == 3 and all(url.startswith(("/dashboard/static/", "data:")) for url in linked)
    script = await client.get("/dashboard/static/dashboard.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert "/api/ps" in await script.text() and "/dashboard/stats" in await script.text()
    assert (await client.get("/dashboard/static/dashboard.css")).content_type == "text/css"
    assert (await client.get("/dashboard/static/__init__.py")).status == 404
    assert (await client.get("/dashboard/static/..%2F__init__.py")).status == 404


async def test_stats_show_each_loaded_runner_while_it_serves(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    empty = await (await client.get("/dashboard/stats")).json()
    assert empty["runners"] == [] and empty["queued"] == 0 and empty["running"] == 0
    hold = asyncio.Event()
    fake_runners.reply = FakeReply(hold=hold)
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "hi"})
    assert json.loads(await resp.content.readline())["done"] is False
    stats = await (await client.get("/dashboard/stats")).json()
    ps = await (await client.get("/api/ps")).json()
    assert [r["model"] for r in stats["runners"]] == [m["name"] for m in ps["models"]] == ["tiny:latest"]
    runner = stats["runners"][0]
    assert runner["running"] == stats["running"] == 1 and runner["slots_used"] == 1 and runner["slots"] == 2
    assert runner["kv_cells_used"] == 1 + 2 + len("Hello") and runner["kv_cells"] == fake_runners.last.spec.num_ctx
    assert stats["kv_cache_utilization"] == pytest.approx(runner["kv_cells_used"] / runner["kv_cells"])
    hold.set()
    await resp.text()
    recent = (await (await client.get("/dashboard/stats")).json())["recent"]
    assert recent["models"]["tiny:latest"]["requests"] == 1 and recent["ttft_seconds"] is not None


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/stats", "/dashboard/static/dashboard.js"])
async def test_foreign_host_is_refused_as_the_api_refuses_it(client: TestClient, path: str) -> None:
    assert (await client.get("/api/ps", headers={"Host": "attacker.example"})).status == 403
    refused = await client.get(path, headers={"Host": "attacker.example"})
    assert refused.status == 403 and await refused.read() == b""
    assert (await client.get(path, headers={"Host": "localhost:11434"})).status == 200
    assert (await client.get(path, headers={"Origin": "https://attacker.example"})).status == 403
