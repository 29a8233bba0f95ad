"""generate / chat / embed / ps over real HTTP with real runner processes on the tiny GGUF."""

from __future__ import annotations

import asyncio
import json
import math
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.testing.api import create_model, until_idle, upload_blob
from ollamapy.testing.tiny_gguf import write_tiny_lora

pytestmark = pytest.mark.serving

GREEDY = {"temperature": 0, "seed": 42}


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path, tiny_gguf: Path, tiny_embed_gguf: Path) -> TestClient:
    app = create_app(models_dir)
    test_client = await aiohttp_client(app)
    await create_model(test_client, "tiny", tiny_gguf, template="{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}")
    await create_model(test_client, "embedder", tiny_embed_gguf)
    return test_client


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def _generate(client: TestClient, **body: Any) -> list[dict[str, Any]]:
    resp = await client.post("/api/generate", json={"model": "tiny", **body})
    assert resp.status == 200, await resp.text()
    return _lines(await resp.text())


def _runners(client: TestClient) -> list[Any]:
    return client.app[SCHEDULER].loaded()


# --- generate ------------------------------------------------------------------------------


async def test_generate_streams_chunks_then_metrics(client: TestClient) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "the sky is", "options": {**GREEDY, "num_predict": 12}})
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    chunks = _lines(await resp.text())
    assert all(c["model"] == "tiny" and c["created_at"].endswith("Z") for c in chunks)
    assert all(c["done"] is False for c in chunks[:-1]) and chunks[-1]["done"] is True
    final = chunks[-1]
    assert final["done_reason"] == "length"
    assert final["eval_count"] == 12
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] >= 0
    assert final["total_duration"] >= final["load_duration"]
    assert isinstance(final["context"], list) and len(final["context"]) > final["prompt_eval_count"]


async def test_generate_non_streaming_equals_streamed_text(client: TestClient) -> None:
    body = {"prompt": "hello world", "options": {**GREEDY, "num_predict": 16}}
    streamed = "".join(c["response"] for c in await _generate(client, **body))
    whole = (await _generate(client, stream=False, **body))[0]
    assert whole["done"] is True and whole["response"] == streamed and whole["eval_count"] == 16


async def test_seed_determinism_with_temperature(client: TestClient) -> None:
    body = {"prompt": "the", "stream": False, "options": {"temperature": 1.0, "seed": 7, "num_predict": 24}}
    first = (await _generate(client, **body))[0]["response"]
    second = (await _generate(client, **body))[0]["response"]
    other = (await _generate(client, **{**body, "options": {**body["options"], "seed": 8}}))[0]["response"]
    assert first == second
    assert first != other


async def test_stop_string_never_leaks(client: TestClient) -> None:
    full = (await _generate(client, prompt="the sky", stream=False, options={**GREEDY, "num_predict": 40}))[0]["response"]
    stop = full[10:13]
    assert len(stop) == 3
    cut = await _generate(client, prompt="the sky", options={**GREEDY, "num_predict": 40, "stop": [stop]})
    text = "".join(c["response"] for c in cut)
    assert stop not in text
    assert text == full[: full.index(stop)]
    assert cut[-1]["done_reason"] == "stop"


async def test_format_json_prefixes_and_schema(client: TestClient) -> None:
    chunks = await _generate(client, prompt="give json", format="json", options={**GREEDY, "num_predict": 30})
    text = ""
    for chunk in chunks[:-1]:
        text += chunk["response"]
        assert _is_json_prefix(text), text
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    result = (await _generate(client, prompt="answer", format=schema, stream=False, options={**GREEDY, "num_predict": 64}))[0]
    assert isinstance(json.loads(result["response"])["ok"], bool)


def _is_json_prefix(text: str) -> bool:
    """True when some completion of ``text`` is valid JSON (sound: only says yes with proof).

    The closing brackets come from a scan of the prefix; a few fillers finish a string,
    literal, number or pending key/value before them.
    """
    stripped = text.lstrip()
    if not stripped:
        return True
    stack: list[str] = []
    in_string = escaped = False
    for ch in stripped:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                return False
            stack.pop()
    closers = "".join(reversed(stack))
    for middle in ("", '"', 'n"', "0", "e", "ue", "rue", "lse", "se", "ull", "ll", "l"):
        for glue in ("", ":0", '"k":0', "0", '":0', 'k":0'):
            try:
                json.loads(stripped + middle + glue + closers)
                return True
            except json.JSONDecodeError:
                continue
    return False


def test_json_prefix_checker_is_sound() -> None:
    assert _is_json_prefix('{"a": [1, tr') and _is_json_prefix('{"ok": fa') and _is_json_prefix('{"k')
    assert not _is_json_prefix('{"a": ]') and not _is_json_prefix("}") and not _is_json_prefix('{"a" 1')


async def test_empty_prompt_loads_and_keep_alive_zero_unloads(client: TestClient) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny"})
    body = await resp.json()
    assert body["done"] is True and body["done_reason"] == "load" and body["response"] == ""
    (runner,) = _runners(client)
    pid = runner.handle.pid
    assert psutil.pid_exists(pid)
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["tiny:latest"]
    assert ps["models"][0]["context_length"] == 4096

    resp = await client.post("/api/generate", json={"model": "tiny", "keep_alive": 0})
    body = await resp.json()
    assert body["done_reason"] == "unload"
    assert _runners(client) == []
    await _wait_gone(pid)
    assert (await (await client.get("/api/ps")).json()) == {"models": []}


async def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert loop.time() < deadline, f"runner {pid} still alive"
        await asyncio.sleep(0.05)


async def test_keep_alive_expiry_terminates_runner(client: TestClient) -> None:
    await _generate(client, prompt="hi", keep_alive="1s", options={"num_predict": 2})
    (runner,) = _runners(client)
    pid = runner.handle.pid
    ps = await (await client.get("/api/ps")).json()
    assert ps["models"][0]["expires_at"] > ""
    await _wait_gone(pid)
    assert _runners(client) == []


async def test_keep_alive_forever_reports_far_future(client: TestClient) -> None:
    await _generate(client, prompt="hi", keep_alive=-1, options={"num_predict": 1})
    ps = await (await client.get("/api/ps")).json()
    assert int(ps["models"][0]["expires_at"][:4]) > 2200


async def test_eviction_with_max_loaded_one(aiohttp_client: Any, models_dir: Path, tiny_gguf: Path, tiny_embed_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MAX_LOADED_MODELS", "1")
    client = await aiohttp_client(create_app(models_dir))
    await create_model(client, "tiny", tiny_gguf)
    await create_model(client, "embedder", tiny_embed_gguf)
    await _generate(client, prompt="hi", options={"num_predict": 1})
    first_pid = _runners(client)[0].handle.pid
    resp = await client.post("/api/embed", json={"model": "embedder", "input": "hello"})
    assert resp.status == 200
    assert [r.model.short_name for r in _runners(client)] == ["embedder:latest"]
    await _wait_gone(first_pid)


ENDLESS = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}
"""A format the tiny model cannot finish: no end-of-sequence, no token repeated in a row."""


async def test_queue_full_answers_503(aiohttp_client: Any, models_dir: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MAX_QUEUE", "1")
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "1")
    client = await aiohttp_client(create_app(models_dir))
    await create_model(client, "tiny", tiny_gguf)
    await _generate(client, prompt="warm", options={"num_predict": 1})
    long_body = {"model": "tiny", "prompt": "x", "format": ENDLESS, "options": {"num_predict": 100_000}}
    busy = await client.post("/api/generate", json=long_body)
    await busy.content.readline()  # the runner's one slot is now generating
    short = {"model": "tiny", "prompt": "x", "options": {"num_predict": 1}}
    waiting = asyncio.ensure_future(client.post("/api/generate", json=short))
    await until(lambda: client.app[SCHEDULER].waiting == 1)
    rejected = await client.post("/api/generate", json=short)
    assert rejected.status == 503
    assert await rejected.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    busy.close()
    assert (await asyncio.wait_for(waiting, 30)).status == 200


async def until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_runner_killed_mid_stream_gives_error_line_then_recovers(client: TestClient) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "x", "format": ENDLESS, "options": {"num_predict": 100_000}})
    first = json.loads(await resp.content.readline())
    assert first["done"] is False
    (runner,) = _runners(client)
    runner.handle._process.send_signal(signal.SIGKILL)
    lines = _lines((await resp.read()).decode())
    assert lines[-1]["error"].startswith("model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check ollamapy server logs for details")
    again = await _generate(client, prompt="hi", stream=False, options={"num_predict": 3})
    assert again[0]["done"] is True and again[0]["eval_count"] == 3


async def test_client_disconnect_stops_generation(client: TestClient) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny", "prompt": "x", "format": ENDLESS, "options": {"num_predict": 100_000}})
    await resp.content.readline()
    (runner,) = _runners(client)
    resp.close()
    assert (await until_idle(runner.handle)).tokens_generated < 100_000


async def test_lora_adapter_changes_greedy_output(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    lora = write_tiny_lora(models_dir.parent / "lora.gguf")
    lora_digest = await upload_blob(client, lora)
    model_digest = await upload_blob(client, tiny_gguf)
    resp = await client.post("/api/create", json={"model": "tiny-lora", "files": {"m.gguf": model_digest}, "adapters": {"l.gguf": lora_digest}, "template": "{{ .Prompt }}", "stream": False})
    assert resp.status == 200
    body = {"prompt": "the sky is", "stream": False, "options": {**GREEDY, "num_predict": 16}}
    plain = (await _generate(client, **body))[0]["response"]
    adapted = (await client.post("/api/generate", json={"model": "tiny-lora", **body}))
    assert (await adapted.json())["response"] != plain


async def test_raw_and_debug_render(client: TestClient) -> None:
    debug = await (await client.post("/api/generate", json={"model": "tiny", "prompt": "hi", "system": "sys", "_debug_render_only": True})).json()
    assert debug["done"] is True
    assert debug["_debug_info"] == {"rendered_template": "sys hi", "image_count": 0}
    assert _runners(client) == []  # nothing was loaded
    raw = (await _generate(client, prompt="raw text", raw=True, stream=False, options={**GREEDY, "num_predict": 4}))[0]
    assert "context" not in raw


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "ghost", "prompt": "x"}, 404, "model 'ghost' not found"),
        ({"model": "", "prompt": "x"}, 404, "model '' not found"),
        ({"model": "tiny", "prompt": "x", "raw": True, "system": "s"}, 400, "raw mode does not support template, system, or context"),
        ({"model": "tiny", "prompt": "x", "suffix": "y"}, 400, "registry.ollama.ai/library/tiny:latest does not support insert"),
        ({"model": "tiny", "prompt": "x", "images": ["aGk="]}, 400, "registry.ollama.ai/library/tiny:latest does not support vision"),
        ({"model": "tiny", "prompt": "x", "think": True}, 400, '"tiny" does not support thinking'),
        ({"model": "tiny", "prompt": "x", "format": "yaml"}, 400, 'invalid format: "yaml"; expected "json" or a valid JSON Schema object'),
        ({"model": "tiny", "prompt": "x", "top_logprobs": 21}, 400, "top_logprobs must be between 0 and 20"),
        ({"model": "tiny", "prompt": "x", "keep_alive": "42"}, 400, 'time: missing unit in duration "42"'),
        ({"model": "embedder", "prompt": "x"}, 400, '"embedder" does not support generate'),
        ({"model": "tiny", "prompt": "x", "options": {"top_k": "many"}}, 400, 'option "top_k" must be of type integer'),
    ],
)
async def test_generate_errors(client: TestClient, body: dict[str, Any], status: int, error: str) -> None:
    resp = await client.post("/api/generate", json=body)
    assert resp.status == status, await resp.text()
    assert (await resp.json())["error"] == error
    assert _runners(client) == []


async def test_logprobs(client: TestClient) -> None:
    result = (await _generate(client, prompt="the", stream=False, logprobs=True, top_logprobs=3, options={**GREEDY, "num_predict": 5}))[0]
    assert len(result["logprobs"]) == 5
    first = result["logprobs"][0]
    assert first["logprob"] <= 0 and len(first["top_logprobs"]) == 3


# --- chat ---------------------------------------------------------------------------------------


async def test_chat_stream_and_non_stream(client: TestClient) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "options": {**GREEDY, "num_predict": 10}}
    resp = await client.post("/api/chat", json=body)
    chunks = _lines(await resp.text())
    assert all(c["message"]["role"] == "assistant" for c in chunks)
    streamed = "".join(c["message"]["content"] for c in chunks)
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == "length" and final["eval_count"] == 10
    assert "context" not in final
    whole = await (await client.post("/api/chat", json={**body, "stream": False})).json()
    assert whole["message"] == {"role": "assistant", "content": streamed}


async def test_chat_load_unload_and_errors(client: TestClient) -> None:
    loaded = await (await client.post("/api/chat", json={"model": "tiny", "messages": []})).json()
    assert loaded["done_reason"] == "load" and loaded["message"] == {"role": "assistant", "content": ""}
    unloaded = await (await client.post("/api/chat", json={"model": "tiny", "messages": [], "keep_alive": 0})).json()
    assert unloaded["done_reason"] == "unload"
    resp = await client.post("/api/chat", json={"messages": []})
    assert resp.status == 400 and await resp.json() == {"error": "model is required"}
    resp = await client.post("/api/chat", json={"model": "nope", "messages": []})
    assert resp.status == 404 and await resp.json() == {"error": "model 'nope' not found"}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    resp = await client.post("/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": tools})
    assert resp.status == 400 and (await resp.json())["error"] == "registry.ollama.ai/library/tiny:latest does not support tools"


TOOL_TEMPLATE = (
    "{{- if .Tools }}Tools: {{ json .Tools }}\n{{ end }}"
    "{{- range .Messages }}{{ .Role }}: {{ .Content }}"
    "{{- if .ToolCalls }}{{ range .ToolCalls }}{\"name\": \"{{ .Function.Name }}\", \"arguments\": {{ json .Function.Arguments }}}{{ end }}{{ end }}\n"
    "{{ end }}assistant: "
)


async def test_chat_tool_calls_end_to_end(client: TestClient, tiny_gguf: Path) -> None:
    await create_model(client, "tooly", tiny_gguf, template=TOOL_TEMPLATE)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    schema = {
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"], "additionalProperties": False},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
    body = {"model": "tooly", "messages": [{"role": "user", "content": "weather?"}], "tools": tools, "format": schema, "options": {**GREEDY, "num_predict": 80}}
    whole = await (await client.post("/api/chat", json={**body, "stream": False})).json()
    calls = whole["message"]["tool_calls"]
    assert len(calls) == 1
    call = calls[0]
    assert call["function"]["name"] == "get_weather" and call["function"]["index"] == 0
    assert isinstance(call["function"]["arguments"]["city"], str)
    assert call["id"].startswith("call_") and len(call["id"]) == 13
    assert whole["message"]["content"] == ""
    streamed = _lines(await (await client.post("/api/chat", json=body)).text())
    assert [c["function"]["name"] for chunk in streamed for c in chunk["message"].get("tool_calls", [])] == ["get_weather"]


# --- embed ----------------------------------------------------------------------------------


async def test_embed_shapes_norms_and_dimensions(client: TestClient) -> None:
    body = await (await client.post("/api/embed", json={"model": "embedder", "input": ["hello", "the sky is blue"]})).json()
    assert body["model"] == "embedder" and len(body["embeddings"]) == 2
    for vector in body["embeddings"]:
        assert len(vector) == 64
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
    assert body["prompt_eval_count"] > 0 and body["total_duration"] >= body["load_duration"]
    cut = await (await client.post("/api/embed", json={"model": "embedder", "input": "hello", "dimensions": 8})).json()
    assert len(cut["embeddings"][0]) == 8
    assert math.isclose(math.sqrt(sum(x * x for x in cut["embeddings"][0])), 1.0, rel_tol=1e-5)
    empty = await (await client.post("/api/embed", json={"model": "embedder", "input": ""})).json()
    assert empty == {"model": "embedder", "embeddings": []}
    bad = await client.post("/api/embed", json={"model": "embedder", "input": [1, 2]})
    assert bad.status == 400 and await bad.json() == {"error": "invalid input type"}
    missing = await client.post("/api/embed", json={"model": "ghost", "input": "x"})
    assert missing.status == 404


async def test_embed_truncation(client: TestClient) -> None:
    long_text = "the sky is blue " * 400
    ok = await client.post("/api/embed", json={"model": "embedder", "input": long_text, "options": {"num_ctx": 64}})
    assert ok.status == 200
    refused = await client.post("/api/embed", json={"model": "embedder", "input": long_text, "truncate": False, "options": {"num_ctx": 64}})
    assert refused.status == 400 and await refused.json() == {"error": "the input length exceeds the context length"}


async def test_legacy_embeddings_are_unnormalized(client: TestClient) -> None:
    body = await (await client.post("/api/embeddings", json={"model": "embedder", "prompt": "hello"})).json()
    assert len(body["embedding"]) == 64
    assert not math.isclose(math.sqrt(sum(x * x for x in body["embedding"])), 1.0, rel_tol=1e-3)
    empty = await (await client.post("/api/embeddings", json={"model": "embedder", "prompt": ""})).json()
    assert empty == {"embedding": []}
    resp = await client.post("/api/embeddings", json={"prompt": "x"})
    assert resp.status == 400 and await resp.json() == {"error": "model is required"}
