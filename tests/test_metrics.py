"""The model-server gauges of ``/metrics`` on fake runners: the unlabelled totals an endpoint
picker reads, their per-model and per-runner breakdowns, the LoRA info series, a runner too
busy to answer, and the rolling window behind the dashboard's tokens/s and TTFT."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ollamapy.api.runner_protocol import HealthResponse
from ollamapy.supervisor import metrics as metrics_module
from ollamapy.supervisor.app_keys import METRICS
from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import FakeReply, FakeRunnerFactory

PICKER_GAUGES = ("ollamapy_queued_requests", "ollamapy_running_requests", "ollamapy_kv_cache_utilization", "ollamapy_lora_requests_info")


@pytest.fixture
async def client(fake_client: TestClient, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "2")
    await create_model(fake_client, "tiny", tiny_gguf, template="{{ .Prompt }}")
    return fake_client


async def scrape(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of ``/metrics``: name -> [(labels, value)]."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def only(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The value of the one series of ``name`` whose labels include ``labels``."""
    values = [value for have, value in samples[name] if labels.items() <= have.items()]
    assert len(values) == 1, (name, samples.get(name))
    return values[0]


async def first_chunk(client: TestClient, prompt: str) -> Any:
    """Start a stream and return its response once the first chunk arrived."""
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": prompt})
    assert resp.status == 200
    assert json.loads(await resp.content.readline())["done"] is False
    return resp


async def test_picker_gauges_are_one_unlabelled_series_each_with_nothing_loaded(client: TestClient) -> None:
    samples = await scrape(client)
    for name in PICKER_GAUGES:
        assert len(samples[name]) == 1, name
    assert samples["ollamapy_queued_requests"] == [({}, 0.0)]
    assert samples["ollamapy_running_requests"] == [({}, 0.0)]
    assert samples["ollamapy_kv_cache_utilization"] == [({}, 0.0)]
    labels, stamp = samples["ollamapy_lora_requests_info"][0]
    assert labels == {"running_lora_adapters": "", "waiting_lora_adapters": "", "max_lora": labels["max_lora"]}
    assert int(labels["max_lora"]) >= 1 and stamp > 1_600_000_000
    assert "ollamapy_runner_kv_cache_utilization" not in samples


async def test_two_streams_run_and_fill_the_kv_cache_then_release_it(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    hold = asyncio.Event()
    fake_runners.reply = FakeReply(pieces=["a", "b", "c"], hold=hold)
    streams = [await first_chunk(client, "one"), await first_chunk(client, "two")]
    during = await scrape(client)
    assert only(during, "ollamapy_running_requests") == 2
    assert only(during, "ollamapy_queued_requests") == 0
    assert only(during, "ollamapy_requests_running", model="tiny:latest") == 2
    assert only(during, "ollamapy_runner_slots_used", model="tiny:latest") == 2
    assert only(during, "ollamapy_runner_slots", model="tiny:latest") == 2
    # each stream holds BOS + its prompt + the piece sent so far
    used = only(during, "ollamapy_runner_kv_cells_used", model="tiny:latest")
    assert used == (1 + 3 + 1) * 2
    cells = only(during, "ollamapy_runner_kv_cells", model="tiny:latest")
    assert cells == fake_runners.last.spec.num_ctx
    assert only(during, "ollamapy_kv_cache_utilization") == pytest.approx(used / cells)
    assert only(during, "ollamapy_runner_kv_cache_utilization", model="tiny:latest") == pytest.approx(used / cells)

    hold.set()
    for resp in streams:
        assert json.loads((await resp.text()).splitlines()[-1])["done"] is True
    after = await scrape(client)
    assert only(after, "ollamapy_running_requests") == 0
    assert only(after, "ollamapy_kv_cache_utilization") == 0
    assert only(after, "ollamapy_runner_slots_used", model="tiny:latest") == 0


async def test_a_third_stream_on_two_slots_is_queued(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    hold = asyncio.Event()
    fake_runners.reply = FakeReply(hold=hold)
    streams = [await first_chunk(client, "one"), await first_chunk(client, "two")]
    third = asyncio.ensure_future(client.post("/api/generate", json={"model": "tiny", "prompt": "three"}))
    app_metrics = client.app[METRICS]
    while app_metrics.scheduler.waiting == 0:  # the third request reaches the scheduler
        await asyncio.sleep(0)
    samples = await scrape(client)
    assert only(samples, "ollamapy_queued_requests") == 1
    assert only(samples, "ollamapy_requests_waiting", model="tiny:latest") == 1
    assert only(samples, "ollamapy_running_requests") == 2
    hold.set()
    for resp in [*streams, await third]:
        await resp.text()
    assert only(await scrape(client), "ollamapy_queued_requests") == 0


async def test_a_runner_that_does_not_answer_keeps_its_last_figures(
    client: TestClient, fake_runners: FakeRunnerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = asyncio.Event()
    fake_runners.reply = FakeReply(hold=hold)
    stream = await first_chunk(client, "one")
    before = only(await scrape(client), "ollamapy_runner_kv_cells_used", model="tiny:latest")
    assert before > 0
    never = asyncio.Event()

    async def stuck(timeout: float = 10.0) -> HealthResponse:
        await asyncio.wait_for(never.wait(), timeout)
        raise AssertionError("unreachable")

    monkeypatch.setattr(metrics_module, "HEALTH_TIMEOUT", 0.01)
    monkeypatch.setattr(fake_runners.last, "health", stuck)
    samples = await scrape(client)  # answered although the runner is not
    assert only(samples, "ollamapy_runner_kv_cells_used", model="tiny:latest") == before
    hold.set()
    await stream.text()


async def test_the_rolling_window_counts_what_the_histograms_count(client: TestClient) -> None:
    for prompt in ("one", "two"):
        resp = await client.post("/api/generate", json={"model": "tiny", "prompt": prompt, "stream": False})
        assert (await resp.json())["eval_count"] == 3
    app_metrics = client.app[METRICS]
    await app_metrics.refresh()
    recent = app_metrics.recent()
    samples = await scrape(client)
    assert recent["models"]["tiny:latest"]["requests"] == only(samples, "ollamapy_time_to_first_token_seconds_count", model="tiny:latest") == 2
    ttft_sum = only(samples, "ollamapy_time_to_first_token_seconds_sum", model="tiny:latest")
    assert recent["ttft_seconds"] == pytest.approx(ttft_sum / 2)
    assert recent["window_seconds"] > 0
    assert recent["tokens_per_second"] == pytest.approx(6 / recent["window_seconds"])
    assert recent["series"] and all(point["tokens_per_second"] >= 0 for point in recent["series"])


async def test_generated_tokens_count_while_the_answer_streams(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    hold = asyncio.Event()
    fake_runners.reply = FakeReply(pieces=["a", "b", "c"], hold=hold)
    stream = await first_chunk(client, "one")
    assert only(await scrape(client), "ollamapy_generated_tokens_total", model="tiny:latest") == 1
    hold.set()
    assert json.loads((await stream.text()).splitlines()[-1])["eval_count"] == 3
    assert only(await scrape(client), "ollamapy_generated_tokens_total", model="tiny:latest") == 3
