"""The Anthropic Messages ⇄ native converters, without a server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ollamapy.compat.anthropic import (
    MessagesRequest,
    MessageStream,
    error_body,
    estimate_input_tokens,
    forced_tool_names,
    from_messages_request,
    new_message_id,
    to_message,
)
from ollamapy.errors import InvalidRequest

PNG = base64.b64encode(b"\x89PNG\r\n").decode()
WEATHER = {"name": "get_weather", "description": "Weather in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def request(**body: Any) -> MessagesRequest:
    return MessagesRequest.model_validate({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], **body})


def native_messages(**body: Any) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True, exclude_defaults=True) for m in from_messages_request(request(**body)).messages]


def test_options_and_plain_text() -> None:
    chat = from_messages_request(request(temperature=0.5, top_p=0.9, top_k=7, stop_sequences=["END"], stream=True))
    assert chat.options == {"num_predict": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 7, "stop": ["END"]}
    assert chat.stream is True and chat.tools is None and chat.format is None and chat.think is None
    assert [m.model_dump(exclude_none=True, exclude_defaults=True) for m in chat.messages] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "system",
    ["be brief", [{"type": "text", "text": "be "}, {"type": "image"}, {"type": "text", "text": "brief"}]],
)
def test_system_is_a_first_system_message(system: Any) -> None:
    assert native_messages(system=system)[0] == {"role": "system", "content": "be brief"}


def test_blocks_become_native_messages_with_tool_results_first_for_the_user() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "look: "}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "need weather", "signature": "s"},
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    assert native_messages(messages=messages) == [
        {"role": "user", "content": "look: ", "images": [PNG]},
        {
            "role": "assistant",
            "content": "checking",
            "thinking": "need weather",
            "tool_calls": [{"id": "toolu_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "toolu_1"},
        {"role": "user", "content": "thanks"},
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"model": ""}, "model is required"),
        ({"max_tokens": 0}, "max_tokens is required and must be positive"),
        ({"messages": []}, "messages is required"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}]},
         "invalid image source type: url. Only base64 images are supported."),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "%%"}}]}]}, "invalid base64 image data"),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]}, "tool_use block missing required 'id' field"),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}]}, "tool_use block missing required 'name' field"),
        ({"tool_choice": {"type": "any"}}, "tool_choice is only allowed when tools are specified"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "other"}}, "tool_choice names a tool that is not in tools: 'other'"),
    ],
)
def test_invalid_requests(body: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        from_messages_request(request(**body))
    assert info.value.message.startswith(error)


def test_tools_and_tool_choice() -> None:
    native_tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER["input_schema"]}}
    auto = from_messages_request(request(tools=[WEATHER]))
    assert auto.tools == [native_tool] and auto.format is None
    assert from_messages_request(request(tools=[WEATHER], tool_choice={"type": "none"})).tools is None
    forced = from_messages_request(request(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}))
    assert forced.tools == [native_tool]
    assert forced.format["properties"]["name"] == {"const": "get_weather"}
    assert forced_tool_names(request(tools=[WEATHER], tool_choice={"type": "any"})) == ["get_weather"]
    assert forced_tool_names(request(tools=[WEATHER])) == []


@pytest.mark.parametrize(
    ("body", "think"),
    [
        ({}, None),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, True),
        ({"thinking": {"type": "disabled"}}, False),
        ({"output_config": {"effort": "XHigh"}}, "high"),
        ({"output_config": {"effort": "low"}}, "low"),
        ({"output_config": {"effort": "extreme"}}, None),
    ],
)
def test_thinking(body: dict[str, Any], think: Any) -> None:
    assert from_messages_request(request(**body)).think == think


def test_whole_answer_as_a_message() -> None:
    call = {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}
    native = {
        "model": "m",
        "message": {"role": "assistant", "content": "let me see", "thinking": "hmm", "tool_calls": [call]},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 12,
        "eval_count": 5,
    }
    assert to_message("msg_1", native) == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "let me see"},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "usage": {"input_tokens": 12, "output_tokens": 5},
        "stop_reason": "tool_use",
    }
    empty = to_message("msg_2", {"model": "m", "message": {"content": ""}, "done_reason": "length", "eval_count": 3})
    assert empty["content"] == [] and empty["stop_reason"] == "max_tokens"
    assert to_message("msg_3", {"message": {"content": "x"}, "done_reason": "stop"})["stop_reason"] == "end_turn"


def chunk(content: str = "", thinking: str = "", done: bool = False, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return {"model": "m", "message": message, "done": done, **extra}


def test_stream_thinking_then_text_then_the_end() -> None:
    stream = MessageStream("msg_1", "m", estimated_input_tokens=7)
    events = []
    for native in (chunk(thinking="hm"), chunk(thinking="m"), chunk(content="Hel"), chunk(content="lo"),
                   chunk(done=True, done_reason="stop", prompt_eval_count=9, eval_count=4)):
        events += stream.feed(native)
    assert events == [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "usage": {"input_tokens": 7, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "m"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "lo"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"input_tokens": 9, "output_tokens": 4}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_stream_tool_calls_are_whole_blocks() -> None:
    stream = MessageStream("msg_1", "m", estimated_input_tokens=1)
    call = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    events = stream.feed(chunk(content="ok")) + stream.feed({**chunk(), "message": {"content": "", "tool_calls": [call]}})
    events += stream.feed(chunk(done=True, done_reason="stop"))
    names = [(name, data.get("index")) for name, data in events]
    assert names == [
        ("message_start", None), ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_stop", 1), ("message_delta", None), ("message_stop", None),
    ]
    assert events[4][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    assert json.loads(events[5][1]["delta"]["partial_json"]) == {"city": "Oslo"}
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use"}


def test_stream_with_a_forced_call_holds_the_json_back_and_sends_the_call() -> None:
    stream = MessageStream("msg_1", "m", estimated_input_tokens=1, forced_tools=["get_weather"])
    events = stream.feed(chunk(content='{"name": "get_weather", '))
    events += stream.feed(chunk(content='"arguments": {"city": "Rome"}}', done=True, done_reason="stop"))
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]
    assert events[1][1]["content_block"]["name"] == "get_weather"
    assert json.loads(events[2][1]["delta"]["partial_json"]) == {"city": "Rome"}
    assert events[4][1]["delta"] == {"stop_reason": "tool_use"}


def test_errors_ids_and_estimates() -> None:
    assert error_body(404, "model 'x' not found")["error"] == {"type": "not_found_error", "message": "model 'x' not found"}
    assert error_body(503, "busy")["error"]["type"] == "overloaded_error"
    assert error_body(500, "boom")["error"]["type"] == "api_error"
    assert error_body(400, "bad")["type"] == "error" and error_body(400, "bad")["request_id"].startswith("req_")
    assert new_message_id().startswith("msg_") and len(new_message_id()) == 4 + 24
    # "be brief" (8) + "user" (4) + "hello world" (11) = 23 characters, about 5 tokens
    assert estimate_input_tokens(request(system="be brief", messages=[{"role": "user", "content": "hello world"}])) == 5
