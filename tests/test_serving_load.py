"""A bounded load test over real HTTP: many mixed requests on one batching runner.

Twenty-four requests at once on a runner with four slots (generate streamed and not,
OpenAI completions, embeddings, and endless streams the client drops midway), on the
tiny model with sharp logits so a batched greedy answer must equal the lone one. Nothing
may be lost or leaked: every finished answer is the lone answer, the dropped streams stop
generating, the runner survives with no sequence left behind, and answers afterwards are
unchanged.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.testing.api import create_model, until_health
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf

pytestmark = pytest.mark.serving

GREEDY = {"temperature": 0, "num_predict": 24}
PROMPTS = ["the sky is", "once upon a time", "hello world", "a b c d e f g", "numbers one two", "zebra"]
ENDLESS = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}
"""A format the tiny model cannot finish: the stream runs until the client leaves."""


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "4")
    test_client = await aiohttp_client(create_app(models_dir))
    sharp = write_tiny_gguf(tmp_path / "sharp.gguf", TinyModelSpec(output_scale=40.0, name="sharp"))
    await create_model(test_client, "sharp", sharp, template="{{ .Prompt }}")
    return test_client


async def generate_text(client: TestClient, prompt: str, *, stream: bool) -> str:
    resp = await client.post("/api/generate", json={"model": "sharp", "prompt": prompt, "stream": stream, "options": GREEDY})
    assert resp.status == 200, await resp.text()
    lines = [json.loads(line) for line in (await resp.text()).splitlines() if line.strip()]
    assert lines[-1]["done"] is True
    return "".join(line["response"] for line in lines)


async def openai_text(client: TestClient, prompt: str) -> str:
    body = {"model": "sharp", "prompt": prompt, "temperature": 0, "max_tokens": GREEDY["num_predict"]}
    resp = await client.post("/v1/completions", json=body)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["choices"][0]["text"])


async def embedding(client: TestClient, text: str) -> list[float]:
    resp = await client.post("/api/embed", json={"model": "sharp", "input": text})
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["embeddings"][0])


async def dropped_stream(client: TestClient, lines: int, full_batch: asyncio.Event) -> int:
    """Read ``lines`` chunks of an endless stream, then hang up once the runner has had a
    full batch: the endless streams hold their slots until then, so it surely happens."""
    resp = await client.post("/api/generate", json={"model": "sharp", "prompt": "x", "format": ENDLESS, "options": {"num_predict": 100_000}})
    assert resp.status == 200, await resp.text()
    for _ in range(lines):
        assert json.loads(await resp.content.readline())["done"] is False
    try:
        await asyncio.wait_for(full_batch.wait(), 60)
    except TimeoutError:
        raise AssertionError("the runner never had all of its slots busy at once") from None
    resp.close()
    return lines


async def test_mixed_concurrent_load_loses_and_leaks_nothing(client: TestClient) -> None:
    alone = {p: await generate_text(client, p, stream=True) for p in PROMPTS}
    alone_embedding = await embedding(client, PROMPTS[0])
    (runner,) = client.app[SCHEDULER].loaded()
    pid = runner.handle.pid
    assert len(set(alone.values())) > 1
    assert (await runner.handle.health()).max_active_sequences == 1  # one at a time so far

    rng = random.Random(7)
    full_batch = asyncio.Event()
    jobs: list[tuple[str, str, Any]] = []
    for i in range(24):
        prompt = PROMPTS[i % len(PROMPTS)]
        kind = ("stream", "single", "openai", "embed", "drop", "stream")[i % 6]
        if kind == "stream":
            jobs.append((kind, prompt, generate_text(client, prompt, stream=True)))
        elif kind == "single":
            jobs.append((kind, prompt, generate_text(client, prompt, stream=False)))
        elif kind == "openai":
            jobs.append((kind, prompt, openai_text(client, prompt)))
        elif kind == "embed":
            jobs.append((kind, PROMPTS[0], embedding(client, PROMPTS[0])))
        else:
            jobs.append((kind, prompt, dropped_stream(client, rng.randint(1, 20), full_batch)))

    async def watch() -> None:
        await until_health(runner.handle, lambda h: h.max_active_sequences >= 4)
        full_batch.set()

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.wait_for(asyncio.gather(*(job for _, _, job in jobs)), 180)
    finally:
        watcher.cancel()
    # The runner really had a full batch: four sequences decoded together, never more.
    assert (await runner.handle.health()).max_active_sequences == 4

    for (kind, prompt, _), result in zip(jobs, results):
        if kind == "embed":
            assert result == pytest.approx(alone_embedding, rel=1e-4, abs=1e-5)
        elif kind != "drop":
            assert result == alone[prompt], (kind, prompt)

    # The dropped streams stopped: no request is left and the decode batch is empty, so
    # nothing is generated any more.
    health = await until_health(runner.handle, lambda h: h.active == 0 and h.active_sequences == 0)
    assert health.prompt_tokens_pending == 0

    # Same runner, no stray processes, and the same answers afterwards.
    assert [r.handle.pid for r in client.app[SCHEDULER].loaded()] == [pid]
    runners = [p for p in psutil.Process().children(recursive=True) if "ollamapy.runner" in " ".join(p.cmdline())]
    assert [p.pid for p in runners] == [pid]
    assert {p: await generate_text(client, p, stream=False) for p in PROMPTS} == alone
