"""Images reach the model, end to end: real runners on the tiny vision model over HTTP.

``write_tiny_vision_model`` gives a random-weight text model and an ``mlp`` projector
that llama.cpp's mtmd loads. With the same text at temperature 0, an image must add prompt
tokens and change the logprobs (a different image changes them differently, the same
image twice does not), on every API that carries images.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from ollamapy.api.runner_protocol import CompletionRequest, LoadSpec
from ollamapy.store import modelfile
from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.supervisor.runner_process import RunnerProcess
from ollamapy.testing import write_tiny_vision_model
from ollamapy.testing.api import create_model, upload_blob
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf
from ollamapy.testing.tiny_vision import TinyProjectorSpec, tiny_png

pytestmark = pytest.mark.serving

RED = base64.b64encode(tiny_png(40, 30, (200, 10, 10))).decode()
BLUE = base64.b64encode(tiny_png(28, 28, (0, 0, 255), checker=(255, 255, 0))).decode()
OPTIONS = {"temperature": 0, "seed": 42, "num_predict": 6}
TEXT = "what is in the picture?"


@pytest.fixture(scope="module")
def vision_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_vision_model(tmp_path_factory.mktemp("vision"))


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path, vision_files: tuple[Path, Path], tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "2")
    test_client: TestClient = await aiohttp_client(create_app(models_dir))
    model, projector = vision_files
    files = {"model.gguf": await upload_blob(test_client, model), "mmproj.gguf": await upload_blob(test_client, projector)}
    resp = await test_client.post("/api/create", json={"model": "seer", "files": files, "template": "{{ .Prompt }}", "stream": False})
    assert resp.status == 200, await resp.text()
    await create_model(test_client, "blind", tiny_gguf, template="{{ .Prompt }}")
    return test_client


# --- the model ---------------------------------------------------------------------------

async def _show(client: TestClient, name: str) -> dict[str, Any]:
    resp = await client.post("/api/show", json={"model": name})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_modelfile_with_two_from_lines_makes_a_vision_model(client: TestClient, vision_files: tuple[Path, Path]) -> None:
    model, projector = vision_files
    request, local = modelfile.to_create_request(modelfile.parse(f"FROM {model}\nFROM {projector}\n"), model.parent)
    for name in request["files"]:
        request["files"][name] = await upload_blob(client, local[name])
    resp = await client.post("/api/create", json={**request, "model": "from-modelfile", "stream": False})
    assert resp.status == 200, await resp.text()
    for name in ("from-modelfile", "seer"):
        shown = await _show(client, name)
        assert "vision" in shown["capabilities"]
        assert shown["projector_info"]["general.architecture"] == "clip"
        assert shown["projector_info"]["clip.vision.image_size"] == TinyProjectorSpec().image_size
    blind = await _show(client, "blind")
    assert "vision" not in blind["capabilities"] and "projector_info" not in blind


async def test_ps_counts_the_projector(client: TestClient, vision_files: tuple[Path, Path]) -> None:
    for name in ("seer", "blind"):
        resp = await client.post("/api/generate", json={"model": name})
        assert resp.status == 200, await resp.text()
    sizes = {m["name"].split(":")[0]: m["size"] for m in (await (await client.get("/api/ps")).json())["models"]}
    assert sizes["seer"] - sizes["blind"] >= vision_files[1].stat().st_size


# --- images reach the model, on every API -------------------------------------------------

Ask = Callable[[TestClient, str | None], Awaitable[tuple[int, list[float], str]]]
"""Ask about one image (or none): (prompt tokens, logprobs, text)."""


async def _native(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(path, json={"model": "seer", "stream": False, "options": OPTIONS, "logprobs": True, **body})
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


async def ask_generate(client: TestClient, image: str | None) -> tuple[int, list[float], str]:
    body = await _native(client, "/api/generate", {"prompt": TEXT, "images": [image] if image else []})
    return body["prompt_eval_count"], [lp["logprob"] for lp in body["logprobs"]], body["response"]


async def ask_chat(client: TestClient, image: str | None) -> tuple[int, list[float], str]:
    message: dict[str, Any] = {"role": "user", "content": TEXT, **({"images": [image]} if image else {})}
    body = await _native(client, "/api/chat", {"messages": [message]})
    return body["prompt_eval_count"], [lp["logprob"] for lp in body["logprobs"]], body["message"]["content"]


async def ask_openai(client: TestClient, image: str | None) -> tuple[int, list[float], str]:
    content: list[dict[str, Any]] = [{"type": "text", "text": TEXT}]
    if image:
        content.insert(0, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}})
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "seer", "messages": [{"role": "user", "content": content}], "temperature": 0, "seed": 42, "max_tokens": 6, "logprobs": True},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    choice = body["choices"][0]
    return body["usage"]["prompt_tokens"], [e["logprob"] for e in choice["logprobs"]["content"]], choice["message"]["content"]


async def ask_anthropic(client: TestClient, image: str | None) -> tuple[int, list[float], str]:
    content: list[dict[str, Any]] = [{"type": "text", "text": TEXT}]
    if image:
        content.insert(0, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}})
    resp = await client.post(
        "/v1/messages",
        json={"model": "seer", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": content}]},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    # no logprobs in Anthropic's API: the text stands in for them
    return body["usage"]["input_tokens"], [], "".join(block.get("text", "") for block in body["content"])


def same(a: tuple[int, list[float], str], b: tuple[int, list[float], str], *, tolerance: float = 1e-4) -> bool:
    """The same answer: prompt tokens and text exactly, logprobs up to float rounding (a
    repeated prompt comes from the prefix cache, and its last token, evaluated again on
    its own, is summed in another order than in the first prompt chunk)."""
    return a[0] == b[0] and a[2] == b[2] and a[1] == pytest.approx(b[1], abs=tolerance)


@pytest.mark.parametrize("ask", [ask_generate, ask_chat, ask_openai, ask_anthropic], ids=["generate", "chat", "openai", "anthropic"])
async def test_the_image_reaches_the_model(client: TestClient, ask: Ask) -> None:
    plain = await ask(client, None)
    red = await ask(client, RED)
    blue = await ask(client, BLUE)
    red_again = await ask(client, RED)
    image_tokens = TinyProjectorSpec().image_tokens
    assert red[0] >= plain[0] + image_tokens and blue[0] == red[0]
    assert red[1:] != blue[1:] and red[1:] != plain[1:]
    assert same(red_again, red)
    # two image requests at once on the one runner answer as they do alone; a step that
    # decodes both sequences sums in another order, so logprobs agree to ~1e-3, not 1e-4
    # (different images differ by tenths)
    together = await asyncio.gather(ask(client, RED), ask(client, BLUE))
    assert same(together[0], red, tolerance=1e-2) and same(together[1], blue, tolerance=1e-2)
    runners = client.app[SCHEDULER].loaded()
    assert len(runners) == 1 and runners[0].request.num_parallel == 2


async def test_debug_render_shows_the_image_marker(client: TestClient) -> None:
    resp = await client.post("/api/chat", json={"model": "seer", "messages": [{"role": "user", "content": "see", "images": [RED]}], "_debug_render_only": True})
    assert (await resp.json())["_debug_info"] == {"rendered_template": "[img-0]see", "image_count": 1}


@pytest.mark.parametrize(
    ("model", "image", "error"),
    [
        ("seer", "not base64!", "illegal base64 data at input byte 3"),
        ("seer", base64.b64encode(b"plain text, not a picture").decode(), "image: unknown format"),
        ("blind", RED, "registry.ollama.ai/library/blind:latest does not support vision"),
    ],
)
async def test_bad_image_input_is_a_400_before_any_load(client: TestClient, model: str, image: str, error: str) -> None:
    for path, body in (
        ("/api/generate", {"prompt": TEXT, "images": [image]}),
        ("/api/chat", {"messages": [{"role": "user", "content": TEXT, "images": [image]}]}),
    ):
        resp = await client.post(path, json={"model": model, **body})
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"] == error
    assert client.app[SCHEDULER].loaded() == []


async def test_vision_inside_the_model_file_is_a_400_naming_why(client: TestClient, tmp_path: Path) -> None:
    """Ollama's single-file vision models: the capability is there, llama.cpp cannot load
    the encoder, so images are refused up front and text alone still works."""
    gguf = write_tiny_gguf(tmp_path / "one-file.gguf", TinyModelSpec(name="one-file", vision_block_count=2))
    await create_model(client, "onefile", gguf, template="{{ .Prompt }}")
    shown = await _show(client, "onefile")
    assert "vision" in shown["capabilities"] and "projector_info" not in shown
    why = (
        "registry.ollama.ai/library/onefile:latest keeps its vision encoder inside the model file "
        "(Ollama's single-file format), which llama.cpp cannot load; images need a model with a separate projector"
    )
    for path, body in (
        ("/api/generate", {"prompt": TEXT, "images": [RED]}),
        ("/api/chat", {"messages": [{"role": "user", "content": TEXT, "images": [RED]}]}),
    ):
        resp = await client.post(path, json={"model": "onefile", **body})
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"] == why
    assert client.app[SCHEDULER].loaded() == []  # no runner was started, so none crashed
    answer = await client.post("/api/generate", json={"model": "onefile", "prompt": TEXT, "stream": False, "options": OPTIONS})
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["eval_count"] > 0


# --- the runner -----------------------------------------------------------------------------

@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def runner(vision_files: tuple[Path, Path]) -> AsyncIterator[RunnerProcess]:
    model, projector = vision_files
    process = await RunnerProcess.start(LoadSpec(model_path=str(model), projectors=[str(projector)], num_ctx=2048, num_parallel=2), model_name="seer")
    try:
        await process.wait_until_ready(stall_timeout=60)
        yield process
    finally:
        await process.close()


async def _complete(runner: RunnerProcess, prompt: str, images: list[str]) -> tuple[int, int, str]:
    request = CompletionRequest(prompt=prompt, images=images, temperature=0, num_predict=4)
    chunks = [chunk async for chunk in runner.completion(request)]
    return chunks[-1].prompt_eval_count, chunks[-1].prompt_cached_count, "".join(c.content for c in chunks)


@pytest.mark.asyncio(loop_scope="module")
async def test_follow_up_turn_reuses_the_images_kv(runner: RunnerProcess) -> None:
    first = "user: [img-0] what is it?\nassistant:"
    count, cached, answer = await _complete(runner, first, [RED])
    assert cached == 0
    follow_up = f"{first}{answer}\nuser: and now?\nassistant:"
    count2, cached2, _ = await _complete(runner, follow_up, [RED])
    assert cached2 >= count  # the image and the first turn come from the cache
    _, cached3, _ = await _complete(runner, follow_up, [BLUE])
    assert cached3 < follow_up.index("[img-0]") + 2  # another image: only the text before it
    assert count2 > count


@pytest.mark.asyncio(loop_scope="module")
async def test_runner_refuses_a_marker_without_its_image(runner: RunnerProcess) -> None:
    with pytest.raises(Exception) as info:
        await _complete(runner, "[img-0] and [img-1]", [RED])
    assert "invalid image index: 1" in str(info.value)
    assert (await _complete(runner, "[img-0] ok", [RED]))[0] > 0
