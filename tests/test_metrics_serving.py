"""The model-server gauges on a real runner: two concurrent streams on a two-slot runner are
two running requests holding KV cells; once they end nothing runs."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.serving

ENDLESS = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}
"""A format the tiny model cannot finish: the stream runs until the client leaves."""


@pytest.fixture
def client(two_slot_client: TestClient) -> TestClient:
    return two_slot_client


async def open_stream(client: TestClient, prompt: str) -> ClientResponse:
    """An endless generation, returned once its first chunk has arrived."""
    body = {"model": "tiny", "prompt": prompt, "format": ENDLESS, "options": {"num_predict": 100_000}}
    resp = await client.post("/api/generate", json=body)
    assert resp.status == 200, await resp.text()
    assert json.loads(await resp.content.readline())["done"] is False
    return resp


async def gauges(client: TestClient) -> dict[str, float]:
    """The unlabelled series of ``/metrics`` (the ones an endpoint picker reads)."""
    text = await (await client.get("/metrics")).text()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


async def test_two_streams_are_running_and_hold_kv_cells(client: TestClient) -> None:
    try:
        async with asyncio.timeout(60):
            streams = [await open_stream(client, "one two three"), await open_stream(client, "four five")]
    except TimeoutError:
        raise AssertionError("the two-slot runner never streamed two answers at once") from None
    during = await gauges(client)
    assert during["ollamapy_running_requests"] == 2
    assert during["ollamapy_queued_requests"] == 0
    assert 0 < during["ollamapy_kv_cache_utilization"] <= 1
    stats = await (await client.get("/dashboard/stats")).json()
    assert stats["runners"][0]["slots_used"] == 2 and stats["runners"][0]["kv_cells_used"] > len("one two three")

    for resp in streams:
        resp.close()
    async with asyncio.timeout(60):  # the server notices the clients left
        while (after := await gauges(client))["ollamapy_running_requests"] != 0:
            await asyncio.sleep(0.01)
    assert after["ollamapy_queued_requests"] == 0
    assert 0 <= after["ollamapy_kv_cache_utilization"] <= 1
