"""The OpenAI ⇄ native converters, without a server."""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from ollamapy.compat.openai import (
    ChatCompletionRequest,
    ChatStream,
    CompletionRequest,
    CompletionStream,
    EmbeddingRequest,
    error_body,
    force_tool_call,
    forced_tool_names,
    from_chat_request,
    from_completion_request,
    from_embedding_request,
    new_id,
    to_chat_completion,
    to_chunks,
    to_completion,
    to_embedding_list,
    to_model,
    to_model_list,
    tool_call_schema,
)
from ollamapy.errors import InvalidRequest

USER = [{"role": "user", "content": "hi"}]
CREATED_AT = "2024-07-22T20:47:51.147561Z"
CREATED = int(datetime(2024, 7, 22, 20, 47, 51, tzinfo=UTC).timestamp())
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def _chat(**body: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **body})


def _native_chat(**body: Any) -> dict[str, Any]:
    return from_chat_request(_chat(**body)).model_dump(exclude_none=True, by_alias=True)


# --- chat request ----------------------------------------------------------------------


def test_sampling_defaults_are_openais() -> None:
    native = _native_chat()
    assert native["options"] == {"temperature": 1.0, "top_p": 1.0}
    assert native["stream"] is False and "format" not in native and "tools" not in native


def test_sampling_fields_map_to_options() -> None:
    native = _native_chat(max_tokens=7, seed=3, temperature=0.2, top_p=0.5, frequency_penalty=0.1, presence_penalty=0.3, stop=["a", 1, "b"], stream=True)
    assert native["options"] == {"stop": ["a", "b"], "num_predict": 7, "temperature": 0.2, "seed": 3, "frequency_penalty": 0.1, "presence_penalty": 0.3, "top_p": 0.5}
    assert native["stream"] is True
    assert _native_chat(stop="x")["options"]["stop"] == ["x"]
    assert _native_chat(top_p=0)["options"]["top_p"] == 0
    assert _native_chat(max_completion_tokens=9)["options"]["num_predict"] == 9
    assert _native_chat(max_tokens=4, max_completion_tokens=9)["options"]["num_predict"] == 4


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        ({"type": " JSON_OBJECT "}, "json"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}, {"type": "object"}),
        ({"type": "json_schema"}, None),
        ({"type": "text"}, None),
    ],
)
def test_response_format(response_format: dict[str, Any], expected: Any) -> None:
    assert from_chat_request(_chat(response_format=response_format)).format == expected


@pytest.mark.parametrize(
    ("body", "think"),
    [
        ({"reasoning_effort": "none"}, False),
        ({"reasoning_effort": "minimal"}, "low"),
        ({"reasoning_effort": "high"}, "high"),
        ({"reasoning_effort": "xhigh"}, "max"),
        ({"reasoning_effort": "ultra"}, "max"),
        ({"reasoning": {"effort": "medium"}, "reasoning_effort": "high"}, "medium"),
        ({}, None),
    ],
)
def test_reasoning_effort(body: dict[str, Any], think: Any) -> None:
    assert from_chat_request(_chat(**body)).think == think


def test_invalid_reasoning_effort() -> None:
    with pytest.raises(InvalidRequest, match="invalid reasoning value: 'huge'"):
        from_chat_request(_chat(reasoning_effort="huge"))


def test_logprobs_map_to_native() -> None:
    native = from_chat_request(_chat(logprobs=True, top_logprobs=3))
    assert native.logprobs is True and native.top_logprobs == 3
    assert from_chat_request(_chat()).logprobs is False


def test_debug_render_only_passes_through() -> None:
    assert from_chat_request(_chat(_debug_render_only=True)).debug_render_only is True
    assert from_completion_request(_completion(_debug_render_only=True)).debug_render_only is True


def test_content_parts_become_separate_messages() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": f"data:;base64,{png}"},
    ]
    messages = from_chat_request(_chat(messages=[{"role": "User", "content": parts}])).messages
    assert [m.to_wire() for m in messages] == [
        {"role": "user", "content": "look"},
        {"role": "user", "content": "", "images": [png]},
        {"role": "user", "content": "", "images": [png]},
    ]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}], "image URLs are not currently supported, please use base64 encoded data instead"),
        ([{"type": "image_url", "image_url": {"url": "data:image/gif;base64,AAAA"}}], "invalid image input"),
        ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}], "invalid message format"),
        ([{"type": "image_url", "image_url": {"url": 5}}], "invalid message format"),
        ([{"type": "text", "text": 5}], "invalid message format"),
        ([{"type": "video"}], "invalid message format"),
        (["plain"], "invalid message format"),
        (None, "invalid message content type: <nil>"),
        (3, "invalid message content type: float64"),
        ({"a": 1}, "invalid message content type: map[string]interface {}"),
    ],
)
def test_bad_message_content(content: Any, error: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        from_chat_request(_chat(messages=[{"role": "user", "content": content}]))
    assert info.value.message == error


def test_tool_history_converts() -> None:
    call = {"id": "call_1", "index": 0, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "units": "c"}'}}
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "reasoning": "hmm", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "20 degrees"},
        {"role": "tool", "name": "explicit", "content": "x"},
    ]
    native = from_chat_request(_chat(messages=messages)).messages
    assistant = native[1].to_wire()
    assert assistant["thinking"] == "hmm"
    assert assistant["tool_calls"] == [{"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "units": "c"}}}]
    assert list(assistant["tool_calls"][0]["function"]["arguments"]) == ["city", "units"]
    assert native[2].tool_name == "get_weather" and native[2].tool_call_id == "call_1"
    assert native[3].tool_name == "explicit"


def test_tool_calls_with_parts_go_on_the_last_part() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    native = from_chat_request(_chat(messages=[{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "tool_calls": [call]}])).messages
    assert native[0].tool_calls is None and native[1].tool_calls is not None


@pytest.mark.parametrize("arguments", ["not json", "[1]", ""])
def test_invalid_tool_call_arguments(arguments: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(InvalidRequest, match="^invalid tool call arguments$"):
        from_chat_request(_chat(messages=[{"role": "assistant", "content": "", "tool_calls": [call]}]))


# --- tool_choice ------------------------------------------------------------------------


def test_tool_choice_none_sends_no_tools() -> None:
    native = from_chat_request(_chat(tools=[WEATHER], tool_choice="none"))
    assert native.tools is None and native.format is None


def test_tool_choice_auto_sends_tools_unconstrained() -> None:
    for choice in ("auto", None):
        native = from_chat_request(_chat(tools=[WEATHER], tool_choice=choice))
        assert native.tools == [WEATHER] and native.format is None


def test_tool_choice_required_forces_a_call_of_any_tool() -> None:
    req = _chat(tools=[WEATHER, TIME], tool_choice="required", response_format={"type": "json_object"})
    native = from_chat_request(req)
    assert native.tools == [WEATHER, TIME]
    assert native.format == tool_call_schema([WEATHER, TIME])
    assert [v["properties"]["name"] for v in native.format["anyOf"]] == [{"const": "get_weather"}, {"const": "get_time"}]
    assert forced_tool_names(req) == ["get_weather", "get_time"]


def test_tool_choice_named_function_forces_that_tool() -> None:
    req = _chat(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    native = from_chat_request(req)
    assert native.tools == [WEATHER, TIME]
    assert native.format == {
        "type": "object",
        "properties": {"name": {"const": "get_time"}, "arguments": TIME["function"]["parameters"]},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
    assert forced_tool_names(req) == ["get_time"]
    assert forced_tool_names(_chat(tools=[WEATHER])) == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"tool_choice": "required"}, "'tool_choice' is only allowed when 'tools' are specified"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "no function named 'nope'"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, 'invalid tool_choice: "sometimes"'),
    ],
)
def test_tool_choice_errors(body: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(error)):
        from_chat_request(_chat(**body))


def test_tool_call_schema_compiles_to_a_grammar() -> None:
    no_params = {"type": "function", "function": {"name": "ping"}}
    grammar = json_schema_to_gbnf(json.dumps(tool_call_schema([WEATHER, TIME, no_params])))
    assert '"\\"get_weather\\""' in grammar and '"\\"ping\\""' in grammar
    assert tool_call_schema([no_params])["properties"]["arguments"] == {"type": "object"}


def test_force_tool_call_reads_constrained_content() -> None:
    native = {"message": {"role": "assistant", "content": '{"name": "get_weather", "arguments": {"city": "Oslo"}}'}, "done_reason": "stop"}
    forced = force_tool_call(native, ["get_weather"])
    (call,) = forced["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}
    assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"]) and forced["message"]["content"] == ""
    assert force_tool_call(native, []) is native
    assert force_tool_call(native, ["other"]) is native
    truncated = {"message": {"role": "assistant", "content": '{"name": "get_weather", "argu'}}
    assert force_tool_call(truncated, ["get_weather"]) is truncated


# --- chat response ---------------------------------------------------------------------


def _native_done(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "created_at": CREATED_AT, "done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 3, **extra}


def test_to_chat_completion() -> None:
    native = _native_done(message={"role": "assistant", "content": "hello", "thinking": "mull"}, done_reason="length")
    body = to_chat_completion("chatcmpl-7", native)
    assert body == {
        "id": "chatcmpl-7",
        "object": "chat.completion",
        "created": CREATED,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello", "reasoning": "mull"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def test_to_chat_completion_tool_calls_and_logprobs() -> None:
    calls = [{"id": "call_abc", "function": {"index": 0, "name": "f", "arguments": {"b": 1, "a": "é"}}}]
    logprobs = [{"token": "hi", "logprob": -0.5, "top_logprobs": [{"token": "hi", "logprob": -0.5}, {"token": "yo", "logprob": -1.0, "bytes": [121, 111]}]}]
    body = to_chat_completion("chatcmpl-1", _native_done(message={"role": "assistant", "content": "", "tool_calls": calls}, logprobs=logprobs))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [{"id": "call_abc", "index": 0, "type": "function", "function": {"name": "f", "arguments": '{"b":1,"a":"é"}'}}]
    assert choice["logprobs"] == {
        "content": [
            {
                "token": "hi",
                "logprob": -0.5,
                "bytes": [104, 105],
                "top_logprobs": [{"token": "hi", "logprob": -0.5, "bytes": [104, 105]}, {"token": "yo", "logprob": -1.0, "bytes": [121, 111]}],
            }
        ]
    }


def test_debug_render_only_answer_converts() -> None:
    body = to_chat_completion("chatcmpl-1", {"model": "m", "created_at": CREATED_AT, "done": True, "_debug_info": {"rendered_template": "x", "image_count": 0}})
    assert body["_debug_info"]["rendered_template"] == "x"
    assert body["choices"][0]["finish_reason"] is None and body["usage"]["total_tokens"] == 0


def _piece(content: str = "", thinking: str = "", **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return {"model": "m", "created_at": CREATED_AT, "message": message, "done": False, **extra}


def _stream(pieces: list[dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
    stream = ChatStream("chatcmpl-5", 1234, **{"include_usage": False, **options})
    return [chunk for piece in pieces for chunk in stream.feed(piece)]


def test_stream_role_once_split_thinking_and_finish_chunk() -> None:
    done = {**_piece(), "done": True, "done_reason": "length", "prompt_eval_count": 4, "eval_count": 2}
    chunks = _stream([_piece("Hel"), _piece("lo", thinking="t"), _piece(""), done])
    assert {c["id"] for c in chunks} == {"chatcmpl-5"} and {c["created"] for c in chunks} == {1234}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [{"role": "assistant", "content": "Hel"}, {"reasoning": "t"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "length"]
    assert all("usage" not in c for c in chunks)


def test_stream_usage_chunk_and_tool_call_finish() -> None:
    call = {"id": "call_x", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}
    done = {**_piece(), "done": True, "done_reason": "stop", "prompt_eval_count": 4, "eval_count": 2}
    with_call = {**_piece(), "message": {"role": "assistant", "content": "", "tool_calls": [call]}}
    chunks = _stream([with_call, done], include_usage=True)
    assert chunks[0]["choices"][0]["delta"]["tool_calls"] == [{"id": "call_x", "index": 0, "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]
    assert chunks[1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
    assert chunks[2]["choices"] == [] and chunks[2]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_stream_forced_call_is_held_then_sent_as_call() -> None:
    pieces = [_piece('{"name": "get_weather", '), _piece('"arguments": {"city": "Rome"}}'), {**_piece(), "done": True, "done_reason": "stop"}]
    chunks = _stream(pieces, forced_tools=["get_weather"])
    assert len(chunks) == 2
    delta = chunks[0]["choices"][0]["delta"]
    assert delta["role"] == "assistant" and delta["content"] == ""
    assert json.loads(delta["tool_calls"][0]["function"]["arguments"]) == {"city": "Rome"}
    assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_forced_but_unparseable_content_is_sent_as_content() -> None:
    pieces = [_piece('{"name": "get_wea'), {**_piece(), "done": True, "done_reason": "length"}]
    chunks = _stream(pieces, forced_tools=["get_weather"])
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": '{"name": "get_wea'}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_to_chunks_logprobs_ride_on_the_first_split_chunk() -> None:
    lp = [{"token": "a", "logprob": -0.1}]
    chunks = to_chunks("id", 1, _piece("a", thinking="b", logprobs=lp), first=False)
    assert "logprobs" in chunks[0]["choices"][0] and "logprobs" not in chunks[1]["choices"][0]
    assert to_chunks("id", 1, _piece(""), first=True) == []
    only_logprobs = to_chunks("id", 1, _piece("", logprobs=lp), first=False)
    assert only_logprobs[0]["choices"][0]["delta"] == {"content": ""}


# --- completions ----------------------------------------------------------------------


def _completion(**body: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "once", **body})


def test_from_completion_request_defaults() -> None:
    native = from_completion_request(_completion())
    assert native.prompt == "once" and native.stream is False and native.logprobs is False
    assert native.options == {"temperature": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "top_p": 1.0}
    native = from_completion_request(_completion(top_p=0.3, temperature=0, max_tokens=5, stop="x", suffix="end", logprobs=2, prompt=["one"]))
    assert native.options == {"stop": ["x"], "num_predict": 5, "temperature": 0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "top_p": 0.3}
    assert native.suffix == "end" and native.prompt == "one"
    assert native.logprobs is True and native.top_logprobs == 2
    assert from_completion_request(_completion(logprobs=0)).logprobs is True


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"stop": ["a", 2]}, "invalid type for 'stop' field: float64"),
        ({"prompt": ["a", "b"]}, "invalid type for 'prompt' field: []interface {}"),
    ],
)
def test_completion_request_errors(body: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(error)):
        from_completion_request(_completion(**body))


def test_to_completion() -> None:
    native = {"model": "m", "created_at": CREATED_AT, "response": "text", "done": True, "done_reason": "stop", "prompt_eval_count": 2, "eval_count": 4}
    assert to_completion("cmpl-3", native) == {
        "id": "cmpl-3",
        "object": "text_completion",
        "created": CREATED,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"text": "text", "index": 0, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
    }


def test_completion_stream_with_logprobs_and_usage() -> None:
    stream = CompletionStream("cmpl-1", 99, include_usage=True)
    lp = lambda tok: [{"token": tok, "logprob": -0.2, "top_logprobs": [{"token": tok, "logprob": -0.2}]}]
    chunks = stream.feed({"model": "m", "response": "ab", "done": False, "logprobs": lp("ab")})
    chunks += stream.feed({"model": "m", "response": "c", "done": False, "logprobs": lp("c")})
    chunks += stream.feed({"model": "m", "response": "", "done": True, "done_reason": "length", "prompt_eval_count": 1, "eval_count": 2})
    assert [c["choices"][0]["text"] for c in chunks[:3]] == ["ab", "c", ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
    assert chunks[1]["choices"][0]["logprobs"] == {"tokens": ["c"], "token_logprobs": [-0.2], "top_logprobs": [{"c": -0.2}], "text_offset": [2]}
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 3
    assert {c["object"] for c in chunks} == {"text_completion"} and {c["created"] for c in chunks} == {99}


# --- embeddings -------------------------------------------------------------------------


def test_from_embedding_request() -> None:
    assert from_embedding_request(EmbeddingRequest(model="e", input="")).input == [""]
    native = from_embedding_request(EmbeddingRequest(model="e", input=["a", "b"], dimensions=4, encoding_format="BASE64"))
    assert native.input == ["a", "b"] and native.dimensions == 4
    for bad in (None, []):
        with pytest.raises(InvalidRequest, match="^invalid input$"):
            from_embedding_request(EmbeddingRequest(model="e", input=bad))
    with pytest.raises(InvalidRequest) as info:
        from_embedding_request(EmbeddingRequest(model="e", input="x", encoding_format="int8"))
    assert info.value.message == "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."


def test_to_embedding_list_float_and_base64() -> None:
    native = {"model": "e", "embeddings": [[0.5, -1.25], [1.0, 0.0]], "prompt_eval_count": 6}
    floats = to_embedding_list("e", native, "")
    assert floats == {
        "object": "list",
        "data": [{"object": "embedding", "embedding": [0.5, -1.25], "index": 0}, {"object": "embedding", "embedding": [1.0, 0.0], "index": 1}],
        "model": "e",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }
    encoded = to_embedding_list("e", native, "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -1.25)


# --- models and errors ----------------------------------------------------------------------


def test_models() -> None:
    when = datetime(2024, 1, 2, tzinfo=UTC)
    assert to_model("tiny:latest", when) == {"id": "tiny:latest", "object": "model", "created": int(when.timestamp()), "owned_by": "library"}
    assert to_model("me/tiny:v1", when)["owned_by"] == "me"
    listed = to_model_list({"models": [{"name": "a:latest", "modified_at": "2024-01-02T00:00:00Z"}]})
    assert listed == {"object": "list", "data": [{"id": "a:latest", "object": "model", "created": int(when.timestamp()), "owned_by": "library"}]}


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (404, "not_found_error"), (500, "api_error"), (503, "api_error")])
def test_error_body(status: int, kind: str) -> None:
    assert error_body(status, "boom") == {"error": {"message": "boom", "type": kind, "param": None, "code": None}}


def test_new_id() -> None:
    assert re.fullmatch(r"chatcmpl-\d{1,3}", new_id("chatcmpl"))
    assert all(0 <= int(new_id("cmpl").split("-")[1]) <= 998 for _ in range(50))
