"""Real clients against a live server on loopback: the official ``ollama``, ``openai`` and
``anthropic`` packages and ``langchain-ollama``, unchanged, on the tiny model (structure, not words).

The server is the real application on a real socket, served from its own thread and event
loop so the clients' ordinary blocking calls can run in the test.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
import pytest
from aiohttp import web
from pydantic import BaseModel

from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.cors import setup_browser_safety
from ollamapy.supervisor.routes.openai import setup_openai_routes
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf

pytestmark = pytest.mark.serving

GREEDY = {"temperature": 0, "seed": 42}
TOOL_TEMPLATE = (
    "{{- if .Tools }}Tools: {{ json .Tools }}\n{{ end }}"
    "{{- range .Messages }}{{ .Role }}: {{ .Content }}"
    "{{- if .ToolCalls }}{{ range .ToolCalls }}{\"name\": \"{{ .Function.Name }}\", \"arguments\": {{ json .Function.Arguments }}}{{ end }}{{ end }}\n"
    "{{ end }}assistant: "
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"]},
    },
}
CALL_SCHEMA = {
    "type": "object",
    "properties": {"name": {"const": "get_weather"}, "arguments": WEATHER["function"]["parameters"]},
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
USER = [{"role": "user", "content": "hello"}]


class LiveServer:
    """The application on 127.0.0.1 (a free port), run by a thread with its own loop."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-server", daemon=True)
        self.url = ""

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=120)

    def start(self) -> None:
        self._thread.start()
        self._call(self._runner.setup())
        self._call(web.TCPSite(self._runner, "127.0.0.1", 0).start())
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _app(models_dir: Path) -> web.Application:
    app = create_app(models_dir)
    if not any(r.resource is not None and r.resource.canonical == "/v1/models" for r in app.router.routes()):
        setup_openai_routes(app)  # until create_app registers /v1 itself
    setup_browser_safety(app, listen_host="127.0.0.1")
    return app


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("client-gguf")
    return {"tiny": write_tiny_gguf(root / "tiny.gguf"), "embed": write_tiny_gguf(root / "embed.gguf", TinyModelSpec(pooling_type=1, name="tiny-embed"))}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ggufs: dict[str, Path]) -> Iterator[LiveServer]:
    """A live server holding ``tiny``, ``tooly`` (a tool template) and ``embedder``, all
    created through the ollama client (blob upload, then create from ``files``)."""
    live = LiveServer(_app(tmp_path_factory.mktemp("client-models")))
    live.start()
    try:
        client = ollama.Client(host=live.url)
        tiny = client.create_blob(ggufs["tiny"])
        client.create(model="tiny", files={"tiny.gguf": tiny}, template="{{ range .Messages }}{{ .Content }} {{ end }}{{ .Prompt }}")
        client.create(model="tooly", files={"tiny.gguf": tiny}, template=TOOL_TEMPLATE)
        client.create(model="embedder", files={"embed.gguf": client.create_blob(ggufs["embed"])})
        yield live
    finally:
        live.stop()


@pytest.fixture
def ollama_client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url)


@pytest.fixture
def openai_client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0)


# --- the official ollama client -----------------------------------------------------------------


def test_ollama_list_show_and_created_models(ollama_client: ollama.Client) -> None:
    names = {m.model for m in ollama_client.list().models}
    assert {"tiny:latest", "tooly:latest", "embedder:latest"} <= names
    shown = ollama_client.show("tooly")
    assert shown.template == TOOL_TEMPLATE
    assert shown.details is not None and shown.details.format == "gguf"
    assert "tools" in (shown.capabilities or [])
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"


def test_ollama_create_from_copy_and_delete(ollama_client: ollama.Client) -> None:
    ollama_client.create(model="tiny-sys", from_="tiny", system="You are terse.")
    assert "SYSTEM You are terse." in (ollama_client.show("tiny-sys").modelfile or "")
    ollama_client.copy("tiny-sys", "tiny-sys-copy")
    names = {m.model for m in ollama_client.list().models}
    assert {"tiny-sys:latest", "tiny-sys-copy:latest"} <= names
    ollama_client.delete("tiny-sys")
    ollama_client.delete("tiny-sys-copy")
    assert not {"tiny-sys:latest", "tiny-sys-copy:latest"} & {m.model for m in ollama_client.list().models}
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.delete("tiny-sys")
    assert info.value.status_code == 404


def test_ollama_generate(ollama_client: ollama.Client) -> None:
    whole = ollama_client.generate(model="tiny", prompt="the sky is", options={**GREEDY, "num_predict": 8})
    assert whole.done and whole.done_reason == "length" and whole.eval_count == 8
    assert isinstance(whole.response, str) and whole.context
    parts = list(ollama_client.generate(model="tiny", prompt="the sky is", stream=True, options={**GREEDY, "num_predict": 8}))
    assert parts[-1].done and all(not p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == whole.response


def test_ollama_chat(ollama_client: ollama.Client) -> None:
    whole = ollama_client.chat(model="tiny", messages=USER, options={**GREEDY, "num_predict": 6})
    assert whole.message.role == "assistant" and whole.done_reason == "length"
    parts = list(ollama_client.chat(model="tiny", messages=USER, stream=True, options={**GREEDY, "num_predict": 6}))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].eval_count == 6


def test_ollama_chat_with_tools(ollama_client: ollama.Client) -> None:
    response = ollama_client.chat(model="tooly", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER], format=CALL_SCHEMA, options={**GREEDY, "num_predict": 80})
    (call,) = response.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments["city"], str)


def test_ollama_embed_embeddings_and_ps(ollama_client: ollama.Client) -> None:
    embedded = ollama_client.embed(model="embedder", input=["hello", "the sky"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 64
    assert math.isclose(math.sqrt(sum(x * x for x in embedded.embeddings[0])), 1.0, rel_tol=1e-5)
    legacy = ollama_client.embeddings(model="embedder", prompt="hello")
    assert len(legacy.embedding) == 64
    running = {m.model for m in ollama_client.ps().models}
    assert "embedder:latest" in running
    assert all(m.expires_at is not None and m.size_vram is not None for m in ollama_client.ps().models)


def test_ollama_unknown_model_raises_response_error(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model="ghost", messages=USER)
    assert info.value.status_code == 404 and "not found" in info.value.error


# --- the official openai client ---------------------------------------------------------------------


def test_openai_chat(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, **GREEDY)  # type: ignore[arg-type]
    choice = completion.choices[0]
    assert completion.object == "chat.completion" and choice.finish_reason == "length"
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert completion.usage is not None and completion.usage.completion_tokens == 6


def test_openai_chat_stream_with_usage(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, stream=True, stream_options={"include_usage": True}, **GREEDY)  # type: ignore[arg-type]
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    whole = openai_client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, **GREEDY)  # type: ignore[arg-type]
    assert text == whole.choices[0].message.content


def test_openai_json_mode_and_schema(openai_client: openai.OpenAI) -> None:
    json_mode = openai_client.chat.completions.create(model="tiny", messages=USER, max_tokens=8, response_format={"type": "json_object"}, **GREEDY)  # type: ignore[arg-type]
    assert (json_mode.choices[0].message.content or "").lstrip().startswith("{")

    class Answer(BaseModel):
        ok: bool

    parsed = openai_client.chat.completions.parse(model="tiny", messages=USER, max_tokens=64, response_format=Answer, **GREEDY)  # type: ignore[arg-type]
    assert isinstance(parsed.choices[0].message.parsed, Answer)


def test_openai_tools_with_tool_choice_required(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(model="tooly", messages=USER, tools=[WEATHER], tool_choice="required", max_tokens=80, **GREEDY)  # type: ignore[arg-type]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]


def test_openai_completions(openai_client: openai.OpenAI) -> None:
    completion = openai_client.completions.create(model="tiny", prompt="the sky is", max_tokens=5, **GREEDY)  # type: ignore[arg-type]
    assert completion.object == "text_completion" and completion.choices[0].finish_reason == "length"
    streamed = list(openai_client.completions.create(model="tiny", prompt="the sky is", max_tokens=5, stream=True, **GREEDY))  # type: ignore[arg-type]
    assert "".join(c.choices[0].text for c in streamed if c.choices) == completion.choices[0].text


def test_openai_embeddings_float_and_base64(openai_client: openai.OpenAI) -> None:
    floats = openai_client.embeddings.create(model="embedder", input=["hello", "the sky"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 64
    # the client asks for base64 by default and decodes it itself
    decoded = openai_client.embeddings.create(model="embedder", input=["hello", "the sky"])
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) for a, b in zip(decoded.data[0].embedding, floats.data[0].embedding))
    assert decoded.usage.prompt_tokens > 0


def test_openai_models(openai_client: openai.OpenAI) -> None:
    ids = {m.id for m in openai_client.models.list()}
    assert {"tiny:latest", "tooly:latest", "embedder:latest"} <= ids
    model = openai_client.models.retrieve("tiny")
    assert model.id == "tiny" and model.owned_by == "library"


def test_openai_errors_are_the_clients_exception_classes(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.chat.completions.create(model="ghost", messages=USER)  # type: ignore[arg-type]
    assert missing.value.status_code == 404 and "model 'ghost' not found" in missing.value.message
    with pytest.raises(openai.BadRequestError):
        openai_client.chat.completions.create(model="tiny", messages=[])
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("ghost")


def test_openai_responses_and_their_stream(openai_client: openai.OpenAI) -> None:
    whole = openai_client.responses.create(model="tiny", input="hello", instructions="be brief", max_output_tokens=6, temperature=0)
    assert whole.object == "response" and whole.status == "completed" and whole.output[0].type == "message"
    assert whole.usage is not None and whole.usage.output_tokens == 6
    with openai_client.responses.stream(model="tiny", input="hello", instructions="be brief", max_output_tokens=6, temperature=0) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert final.output_text == whole.output_text


def test_openai_responses_function_call_round_trip(openai_client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "description": "weather", "parameters": WEATHER["function"]["parameters"], "strict": True}
    called = openai_client.responses.create(model="tooly", input="weather?", tools=[tool], tool_choice="required", max_output_tokens=80, temperature=0)  # type: ignore[list-item]
    (call,) = called.output
    assert call.type == "function_call" and call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)
    history = [{"role": "user", "content": "weather?"}, {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    answer = openai_client.responses.create(model="tooly", input=history, tools=[tool], max_output_tokens=5, temperature=0)  # type: ignore[arg-type, list-item]
    plain = openai_client.responses.create(model="tooly", input="weather?", tools=[tool], max_output_tokens=5, temperature=0)  # type: ignore[list-item]
    assert answer.status == "completed" and answer.usage is not None and plain.usage is not None
    assert answer.usage.input_tokens > plain.usage.input_tokens + 10  # the call and its output are in the prompt
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.create(model="ghost", input="x")
    with pytest.raises(openai.BadRequestError):
        openai_client.responses.create(model="tiny", input="x", reasoning={"effort": "huge"})  # type: ignore[typeddict-item]


# --- the official anthropic client (/v1/messages) --------------------------------------------------

ANTHROPIC_GREEDY = {"extra_body": {"temperature": 0}}  # newer SDKs have no temperature argument
WEATHER_TOOL = {"name": "get_weather", "description": "Get the weather in a city", "input_schema": WEATHER["function"]["parameters"]}


@pytest.fixture
def anthropic_client(server: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="ollama", max_retries=0)


def test_anthropic_message_and_its_stream(anthropic_client: anthropic.Anthropic) -> None:
    whole = anthropic_client.messages.create(model="tiny", max_tokens=6, messages=USER, system="be brief", **ANTHROPIC_GREEDY)  # type: ignore[arg-type]
    assert whole.type == "message" and whole.role == "assistant" and whole.model == "tiny"
    assert whole.stop_reason == "max_tokens" and whole.usage.output_tokens == 6 and whole.usage.input_tokens > 0
    (block,) = whole.content
    assert block.type == "text"
    with anthropic_client.messages.stream(model="tiny", max_tokens=6, messages=USER, system="be brief", **ANTHROPIC_GREEDY) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    assert final.content[0].type == "text" and final.content[0].text == block.text
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 6


def test_anthropic_forced_tool_use_and_the_tool_result_turn(anthropic_client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "weather?"}]
    options: dict[str, Any] = {"model": "tooly", "max_tokens": 80, "tools": [WEATHER_TOOL], **ANTHROPIC_GREEDY}
    whole = anthropic_client.messages.create(messages=ask, tool_choice={"type": "any"}, **options)  # type: ignore[arg-type]
    (call,) = whole.content
    assert call.type == "tool_use" and call.name == "get_weather" and isinstance(call.input["city"], str)
    assert whole.stop_reason == "tool_use"
    with anthropic_client.messages.stream(messages=ask, tool_choice={"type": "tool", "name": "get_weather"}, **options) as stream:  # type: ignore[arg-type]
        streamed = stream.get_final_message()
    assert [(b.type, b.name, b.input) for b in streamed.content] == [("tool_use", "get_weather", call.input)]  # type: ignore[union-attr]
    history = [*ask, {"role": "assistant", "content": [call.model_dump()]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    plain = {"model": "tooly", "max_tokens": 5, "tools": [WEATHER_TOOL], "tool_choice": {"type": "none"}, **ANTHROPIC_GREEDY}
    answer = anthropic_client.messages.create(messages=history, **plain)  # type: ignore[arg-type]
    without = anthropic_client.messages.create(messages=ask, **plain)  # type: ignore[arg-type]
    assert answer.stop_reason == "max_tokens"
    assert answer.usage.input_tokens > without.usage.input_tokens + 10  # the call and its result are in the prompt


def test_anthropic_errors_and_relaxed_thinking(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        anthropic_client.messages.create(model="ghost", max_tokens=5, messages=USER)  # type: ignore[arg-type]
    assert missing.value.status_code == 404 and missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        anthropic_client.messages.create(model="tiny", max_tokens=0, messages=USER)  # type: ignore[arg-type]
    assert bad.value.body["error"]["message"] == "max_tokens is required and must be positive"  # type: ignore[index]
    assert anthropic_client.messages.count_tokens(model="tiny", messages=USER).input_tokens == len("user" + "hello") // 4  # type: ignore[arg-type]
    # Claude Code asks every model to think; one that cannot simply answers.
    thought = anthropic_client.messages.create(model="tiny", max_tokens=3, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024})  # type: ignore[arg-type]
    assert thought.stop_reason == "max_tokens" and all(b.type == "text" for b in thought.content)


# --- langchain-ollama -----------------------------------------------------------------------------


def test_langchain_chat_and_embeddings(server: LiveServer) -> None:
    langchain_ollama = pytest.importorskip("langchain_ollama")
    chat = langchain_ollama.ChatOllama(model="tiny", base_url=server.url, num_predict=5, temperature=0, seed=42)
    reply = chat.invoke("hello")
    assert isinstance(reply.content, str) and reply.response_metadata["done_reason"] == "length"
    embeddings = langchain_ollama.OllamaEmbeddings(model="embedder", base_url=server.url)
    vector = embeddings.embed_query("hello")
    assert len(vector) == 64
