"""End to end on the real Gemma 3 270M: the embedded default model answers through the API."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.store.default_model import import_default_model
from ollamapy.supervisor.app import create_app

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "seed": 1, "num_predict": 48}
MARKERS = ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>")


@pytest.fixture(scope="module")
def gemma_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gemma") / "models"
    import_default_model(root, model="gemma3:270m")
    return root


@pytest.fixture
async def client(aiohttp_client: Any, gemma_store: Path) -> TestClient:
    return await aiohttp_client(create_app(gemma_store))


async def test_generate_answers_without_template_markers(client: TestClient) -> None:
    resp = await client.post("/api/generate", json={"model": "gemma3:270m", "prompt": "Why is the sky blue?", "options": GREEDY})
    assert resp.status == 200
    chunks = [json.loads(line) for line in (await resp.text()).splitlines()]
    text = "".join(c["response"] for c in chunks)
    final = chunks[-1]
    assert text.strip()
    assert final["done_reason"] in ("stop", "length")
    assert not any(marker in text for marker in MARKERS)
    assert final["prompt_eval_count"] > 5 and final["eval_count"] > 0


async def test_chat_answers_and_follows_the_template(client: TestClient) -> None:
    body = {
        "model": "gemma3:270m",
        "messages": [{"role": "system", "content": "Answer in one short sentence."}, {"role": "user", "content": "What is the capital of France?"}],
        "stream": False,
        "options": GREEDY,
    }
    answer = await (await client.post("/api/chat", json=body)).json()
    content = answer["message"]["content"]
    assert answer["message"]["role"] == "assistant"
    assert content.strip() and answer["done_reason"] in ("stop", "length")
    assert not any(marker in content for marker in MARKERS)
    debug = await (await client.post("/api/chat", json={**body, "_debug_render_only": True})).json()
    assert debug["_debug_info"]["rendered_template"] == (
        "<start_of_turn>user\nAnswer in one short sentence.\n\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    )


async def test_embed_gives_640_dimensional_unit_vectors(client: TestClient) -> None:
    body = await (await client.post("/api/embed", json={"model": "gemma3:270m", "input": ["hello world", "the sky is blue"]})).json()
    assert [len(v) for v in body["embeddings"]] == [640, 640]
    for vector in body["embeddings"]:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
