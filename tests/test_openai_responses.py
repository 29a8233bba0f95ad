"""The OpenAI Responses API ⇄ native converters, without a server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ollamapy.compat.openai_responses import ResponsesRequest, ResponsesStream, forced_tool_names, from_responses_request, new_response_ids, to_response
from ollamapy.errors import InvalidRequest

PNG = base64.b64encode(b"\x89PNG\r\n").decode()
WEATHER = {"type": "function", "name": "get_weather", "description": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def request(**body: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi", **body})


def native_messages(**body: Any) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True, exclude_defaults=True) for m in from_responses_request(request(**body)).messages]


def test_string_input_instructions_and_options() -> None:
    chat = from_responses_request(request(instructions="be brief", max_output_tokens=9, top_p=0.5, stream=True))
    assert [(m.role, m.content) for m in chat.messages] == [("system", "be brief"), ("user", "hi")]
    assert chat.options == {"temperature": 1.0, "top_p": 0.5, "num_predict": 9}  # OpenAI's default temperature, as Ollama
    assert chat.stream is True and chat.tools is None and chat.think is None


def test_input_items_become_native_messages() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "look "}, {"type": "input_image", "detail": "auto", "image_url": f"data:image/png;base64,{PNG}"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "they want weather"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "sunny"}]},
    ]
    assert native_messages(input=items) == [
        {"role": "user", "content": "look ", "images": [PNG]},
        {"role": "assistant", "content": "checking", "thinking": "they want weather",
         "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"input": [{"content": "x"}]}, "input[0]: input item missing required 'type' field"),
        ({"input": [{"type": "web_search_call"}]}, 'input[0]: unknown input item type: "web_search_call"'),
        ({"input": [{"role": "user", "content": [{"type": "audio"}]}]}, "content[0]: unknown content type: audio"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "file inputs are not currently supported"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]}, "failed to parse function call arguments"),
        ({"reasoning": {"effort": "huge"}}, 'invalid reasoning value: "huge"'),
        ({"tool_choice": "required"}, "Invalid value for 'tool_choice'"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, "Invalid value for 'tool_choice': no function named 'other'"),
    ],
)
def test_invalid_requests(body: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        from_responses_request(request(**body))
    assert info.value.message.startswith(error)


def test_tools_text_format_and_reasoning() -> None:
    native_tool = {"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": WEATHER["parameters"]}}
    assert from_responses_request(request(tools=[WEATHER])).tools == [native_tool]
    assert from_responses_request(request(tools=[WEATHER], tool_choice="none")).tools is None
    forced = from_responses_request(request(tools=[WEATHER], tool_choice="required"))
    assert forced.format["properties"]["name"] == {"const": "get_weather"}
    assert forced_tool_names(request(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"})) == ["get_weather"]
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    assert from_responses_request(request(text={"format": {"type": "json_schema", "name": "s", "schema": schema}})).format == schema
    assert from_responses_request(request(reasoning={"effort": "none"})).think is False
    assert from_responses_request(request(reasoning={"effort": "high"})).think == "high"


def test_whole_answer_as_a_response() -> None:
    req = request(instructions="be brief", max_output_tokens=5)
    native = {"model": "m", "created_at": "2024-07-22T20:47:51Z", "message": {"role": "assistant", "content": "Hello", "thinking": "hm"},
              "done": True, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 2}
    response = to_response("resp_1", "msg_1", native, req)
    assert response["object"] == "response" and response["status"] == "completed" and response["created_at"] == 1721681271
    assert response["output"] == [
        {"id": "rs_resp_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}], "encrypted_content": "hm"},
        {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]},
    ]
    assert response["usage"]["total_tokens"] == 9 and response["instructions"] == "be brief" and response["max_output_tokens"] == 5
    call = {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}
    with_call = to_response("resp_2", "msg_2", {**native, "message": {"content": "", "tool_calls": [call]}}, req)
    assert with_call["output"] == [{"id": "fc_resp_2_0", "type": "function_call", "status": "completed", "call_id": "call_1",
                                    "name": "get_weather", "arguments": '{"city":"Oslo"}'}]
    response_id, item_id = new_response_ids()
    assert response_id.startswith("resp_") and item_id.startswith("msg_")


def chunk(content: str = "", thinking: str = "", done: bool = False, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return {"model": "m", "message": message, "done": done, **extra}


def test_stream_events_in_ollamas_order_with_sequence_numbers() -> None:
    stream = ResponsesStream("resp_1", "msg_1", request())
    events = []
    for native in (chunk(thinking="hm"), chunk(content="Hel"), chunk(content="lo"), chunk(done=True, done_reason="stop", prompt_eval_count=3, eval_count=2)):
        events += stream.feed(native)
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(name == data["type"] for name, data in events)
    completed = events[-1][1]["response"]
    assert [item["type"] for item in completed["output"]] == ["reasoning", "message"]
    assert completed["output"][1]["content"][0]["text"] == "Hello" and completed["usage"]["total_tokens"] == 5
    assert events[8][1]["output_index"] == 1  # the message follows the reasoning item


def test_stream_forced_call_and_error_event() -> None:
    stream = ResponsesStream("resp_1", "msg_1", request(tools=[WEATHER], tool_choice="required"), forced_tools=["get_weather"])
    events = stream.feed(chunk(content='{"name": "get_weather", "arguments": '))
    events += stream.feed(chunk(content='{"city": "Rome"}}', done=True, done_reason="stop"))
    names = [name for name, _ in events]
    assert names == ["response.created", "response.in_progress", "response.output_item.added", "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert json.loads(events[4][1]["arguments"]) == {"city": "Rome"}
    assert events[-1][1]["response"]["output"][0]["name"] == "get_weather"
    name, data = stream.error_event(500, "boom")
    assert name == "error" and data["message"] == "boom" and data["sequence_number"] == len(events)
    assert data["error"]["type"] == "api_error"
