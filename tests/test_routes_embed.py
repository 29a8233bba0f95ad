"""``/api/embed``, ``/api/embeddings`` and ``/api/ps`` on fake runners."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import FakeRunnerFactory, fake_embedding


@pytest.fixture
async def client(fake_client: TestClient, tiny_embed_gguf: Path) -> TestClient:
    await create_model(fake_client, "embedder", tiny_embed_gguf)
    return fake_client


async def embed(client: TestClient, status: int = 200, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/embed", json={"model": "embedder", **body})
    assert resp.status == status, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


async def test_embed_answers_normalized_vectors_with_counts(client: TestClient) -> None:
    body = await embed(client, input=["hello", "hi"])
    assert set(body) == {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
    assert body["model"] == "embedder"
    first, second = body["embeddings"]
    assert first == pytest.approx(_unit(fake_embedding("hello"))) and second == pytest.approx(_unit(fake_embedding("hi")))
    assert body["prompt_eval_count"] == len("hello") + 1 + len("hi") + 1
    assert body["total_duration"] >= body["load_duration"] >= 0


async def test_embed_a_string_and_nothing(client: TestClient) -> None:
    assert len((await embed(client, input="hello"))["embeddings"]) == 1
    assert await embed(client, input="") == {"model": "embedder", "embeddings": []}


async def test_dimensions_cut_and_renormalize(client: TestClient) -> None:
    (vector,) = (await embed(client, input="hello", dimensions=2))["embeddings"]
    assert vector == pytest.approx(_unit(fake_embedding("hello")[:2]))


async def test_long_input_is_truncated_to_the_context_or_refused(client: TestClient) -> None:
    text = "abcdefghijklmnopqrstuvwxyz"
    body = await embed(client, input=text, options={"num_ctx": 8})
    assert body["prompt_eval_count"] == 7  # num_ctx - 1
    (vector,) = body["embeddings"]
    assert vector == pytest.approx(_unit(fake_embedding(text[:6])))  # BOS + 6 bytes
    refused = await embed(client, 400, input=text, truncate=False, options={"num_ctx": 8})
    assert refused == {"error": "the input length exceeds the context length"}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"input": [1, 2]}, 400, "invalid input type"),
        ({"model": "nope", "input": "x"}, 404, "model 'nope' not found"),
    ],
)
async def test_embed_errors(client: TestClient, body: dict[str, Any], status: int, error: str) -> None:
    assert await embed(client, status, **body) == {"error": error}


async def test_legacy_embeddings_answer_one_raw_vector(client: TestClient) -> None:
    resp = await client.post("/api/embeddings", json={"model": "embedder", "prompt": "hello"})
    assert resp.status == 200
    assert await resp.json() == {"embedding": pytest.approx(fake_embedding("hello"))}
    resp = await client.post("/api/embeddings", json={"model": "embedder", "prompt": ""})
    assert await resp.json() == {"embedding": []}
    resp = await client.post("/api/embeddings", json={"prompt": "x"})
    assert resp.status == 400 and await resp.json() == {"error": "model is required"}


async def test_ps_lists_the_loaded_runner(client: TestClient, fake_runners: FakeRunnerFactory) -> None:
    fake_runners.memory = (3000, 1000)
    await embed(client, input="x", keep_alive="1h", options={"num_ctx": 64})
    (entry,) = (await (await client.get("/api/ps")).json())["models"]
    assert entry["name"] == entry["model"] == "embedder:latest"
    assert (entry["size"], entry["size_vram"], entry["context_length"]) == (3000, 1000, 64)
    assert entry["details"]["format"] == "gguf" and str(entry["expires_at"]).endswith("Z")
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}
