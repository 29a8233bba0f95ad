"""OpenAI Responses API (``POST /v1/responses``) wire types and pure converters.

The counterpart of Ollama's ``openai/responses.go``, which Codex and the ``openai`` SDK's
``client.responses`` speak: ``input`` (a string, or items: messages, ``function_call``,
``function_call_output``, ``reasoning``) and ``instructions`` become a native
:class:`~ollamapy.api.types.ChatRequest`; the native answer comes back as a ``response``
object (a ``reasoning`` item, then ``function_call`` items or one assistant ``message``),
or as its stream of events (``response.created`` … ``response.completed``, each with a
``sequence_number``). Nothing is stored: ``previous_response_id`` is not supported, as in
Ollama. Nothing here does I/O.

Beyond Ollama: ``tool_choice`` is honoured as on ``/v1/chat/completions`` (``none`` drops
the tools, ``required`` or a named function forces a call), and an error in the middle
of a stream ends it with an ``error`` event the ``openai`` SDK raises.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ollamapy.api.types import ChatRequest, Message, ToolCall, ToolCallFunction
from ollamapy.compat.openai import ForcedToolCall, decode_image_url, error_body, forced_tools, openai_tool_calls, tool_call_schema
from ollamapy.errors import InvalidRequest

__all__ = ["ResponsesRequest", "ResponsesStream", "forced_tool_names", "from_responses_request", "new_response_ids", "to_response"]

_EFFORTS = ("low", "medium", "high", "max")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ResponsesTool(_Wire):
    type: str = "function"
    name: str = ""
    description: str | None = None
    strict: bool | None = None
    parameters: dict[str, Any] | None = None


class Reasoning(_Wire):
    effort: str = ""
    summary: str = ""


class TextFormat(_Wire):
    type: str = "text"
    name: str = ""
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(_Wire):
    format: TextFormat | None = None


class ResponsesRequest(_Wire):
    model: str = ""
    input: str | list[dict[str, Any]] = ""
    instructions: str = ""
    max_output_tokens: int | None = None
    reasoning: Reasoning = Field(default_factory=Reasoning)
    temperature: float | None = None
    top_p: float | None = None
    text: TextConfig | None = None
    truncation: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: Any = None
    stream: bool = False
    background: bool = False


def new_response_ids() -> tuple[str, str]:
    """(response id, message item id), as Ollama makes them: ``resp_<n>``, ``msg_<n>``."""
    return f"resp_{random.randrange(999999)}", f"msg_{random.randrange(999999)}"


# --- request ---------------------------------------------------------------------------


def _content(items: Any, where: str) -> tuple[str, list[str]]:
    """Text and images of a content list (``input_text``, ``output_text``, ``input_image``)."""
    if isinstance(items, str):
        return items, []
    text, images = "", []
    for i, part in enumerate(items if isinstance(items, list) else []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            text += str(part.get("text", ""))
        elif kind == "input_image":
            if part.get("image_url"):
                images.append(decode_image_url(str(part["image_url"])))
        elif kind == "input_file":
            raise InvalidRequest("file inputs are not currently supported")
        else:
            raise InvalidRequest(f"{where}[{i}]: unknown content type: {kind}")
    return text, images


def _item_type(item: dict[str, Any], index: int) -> str:
    kind = item.get("type") or ("message" if item.get("role") else "")
    if not kind:
        raise InvalidRequest(f"input[{index}]: input item missing required 'type' field")
    if kind not in ("message", "function_call", "function_call_output", "reasoning"):
        raise InvalidRequest(f"input[{index}]: unknown input item type: {json.dumps(kind)}")
    return str(kind)


def _messages(req: ResponsesRequest) -> list[Message]:
    """Ollama's conversion: instructions as a system message, then the input; reasoning is
    kept for the next assistant message, and function calls join the assistant message
    before them."""
    out: list[Message] = []
    if req.instructions:
        out.append(Message(role="system", content=req.instructions))
    if isinstance(req.input, str):
        if req.input:
            out.append(Message(role="user", content=req.input))
        return out
    names: dict[str, str] = {}
    thinking = ""
    for index, item in enumerate(req.input):
        kind = _item_type(item, index)
        if kind == "reasoning":
            thinking = str(item.get("encrypted_content") or "")
        elif kind == "message":
            text, images = _content(item.get("content"), "content")
            message = Message(role=str(item.get("role", "")), content=text, images=images or None)
            if message.role == "assistant" and thinking:
                message.thinking, thinking = thinking, ""
            out.append(message)
        elif kind == "function_call":
            try:
                arguments = json.loads(item["arguments"]) if item.get("arguments") else {}
            except json.JSONDecodeError as err:
                raise InvalidRequest(f"failed to parse function call arguments: {err}") from None
            call_id, name = str(item.get("call_id", "")), str(item.get("name", ""))
            names[call_id] = name
            if out and out[-1].role == "assistant":
                target = out[-1]
            else:
                target = Message(role="assistant")
                out.append(target)
            calls = target.tool_calls or []
            calls.append(ToolCall(id=call_id, function=ToolCallFunction(index=len(calls), name=name, arguments=arguments)))
            target.tool_calls = calls
            if thinking:
                target.thinking, thinking = thinking, ""
        else:  # function_call_output
            call_id = str(item.get("call_id", ""))
            text, images = _content(item.get("output", ""), "output")
            out.append(Message(role="tool", content=text, images=images or None, tool_call_id=call_id, tool_name=names.get(call_id)))
    if thinking:
        out.append(Message(role="assistant", thinking=thinking))
    return out


def _native_tool(tool: ResponsesTool) -> dict[str, Any]:
    return {"type": tool.type, "function": {"name": tool.name, "description": tool.description or "", "parameters": tool.parameters or {"type": "object"}}}


def _forced_tools(req: ResponsesRequest) -> list[dict[str, Any]]:
    return forced_tools([_native_tool(t) for t in req.tools or []], req.tool_choice)


def forced_tool_names(req: ResponsesRequest) -> list[str]:
    """Names of the tools ``tool_choice`` forces a call among (empty when not forced)."""
    return [t["function"]["name"] for t in _forced_tools(req)]


def _think(effort: str) -> bool | str | None:
    if not effort:
        return None
    if effort == "none":
        return False
    if effort in _EFFORTS:
        return effort
    raise InvalidRequest(f'invalid reasoning value: "{effort}" (must be "high", "medium", "low", "max", or "none")')


def from_responses_request(req: ResponsesRequest) -> ChatRequest:
    """The native chat request for a Responses request (Ollama's ``FromResponsesRequest``).

    As in Ollama, ``temperature`` defaults to 1.0 (OpenAI's default) rather than the model's.
    """
    options: dict[str, Any] = {"temperature": 1.0 if req.temperature is None else req.temperature}
    if req.top_p is not None:
        options["top_p"] = req.top_p
    if req.max_output_tokens is not None:
        options["num_predict"] = req.max_output_tokens
    forced = _forced_tools(req)
    fmt = req.text.format if req.text is not None else None
    return ChatRequest.model_validate(
        {
            "model": req.model,
            "messages": _messages(req),
            "options": options,
            "stream": req.stream,
            "tools": None if req.tool_choice == "none" or not req.tools else [_native_tool(t) for t in req.tools],
            "format": tool_call_schema(forced) if forced else (fmt.schema_ if fmt is not None and fmt.type == "json_schema" else None),
            "think": _think(req.reasoning.effort),
        }
    )


# --- response --------------------------------------------------------------------------


def _response_object(req: ResponsesRequest, response_id: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None, created_at: int) -> dict[str, Any]:
    """The ``response`` object with every field OpenAI's has, echoing the request."""
    text_format: dict[str, Any] = {"type": "text"}
    if req.text is not None and req.text.format is not None:
        text_format = req.text.format.model_dump(by_alias=True, exclude_defaults=True) | {"type": req.text.format.type}
    reasoning = None
    if req.reasoning.effort or req.reasoning.summary:
        reasoning = {"effort": req.reasoning.effort or None, "summary": req.reasoning.summary or None}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": int(time.time()) if status == "completed" else None,
        "status": status,
        "incomplete_details": None,
        "model": req.model,
        "previous_response_id": None,
        "instructions": req.instructions or None,
        "output": output,
        "error": None,
        "tools": [t.model_dump() for t in req.tools or []],
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "truncation": req.truncation or "disabled",
        "parallel_tool_calls": True,
        "text": {"format": text_format},
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "reasoning": reasoning,
        "usage": usage,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": None,
        "store": False,
        "background": req.background,
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def _usage(native: dict[str, Any]) -> dict[str, Any]:
    prompt, generated = native.get("prompt_eval_count") or 0, native.get("eval_count") or 0
    return {
        "input_tokens": prompt,
        "output_tokens": generated,
        "total_tokens": prompt + generated,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _reasoning_item(item_id: str, thinking: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": thinking}], "encrypted_content": thinking}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [_text_part(text)] if status == "completed" else []}


def _call_item(item_id: str, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    arguments = call["function"]["arguments"] if status == "completed" else ""
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call["id"], "name": call["function"]["name"], "arguments": arguments}


def _created_at(native: dict[str, Any]) -> int:
    stamp = native.get("created_at")
    return int(datetime.fromisoformat(stamp).timestamp()) if isinstance(stamp, str) else int(time.time())


def to_response(response_id: str, item_id: str, native: dict[str, Any], req: ResponsesRequest) -> dict[str, Any]:
    """A whole native chat answer as a ``response`` object."""
    message = native.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("thinking"):
        output.append(_reasoning_item(f"rs_{response_id}", message["thinking"]))
    calls = openai_tool_calls(message.get("tool_calls") or [])
    if calls:
        output.extend(_call_item(f"fc_{response_id}_{i}", call) for i, call in enumerate(calls))
    else:
        output.append(_message_item(item_id, message.get("content", "")))
    return _response_object(req, response_id, "completed", output, _usage(native), _created_at(native))


class ResponsesStream:
    """Turns the native chat stream into Responses events (Ollama's event sequence), keeping
    what spans chunks: the sequence number, the open reasoning and message items with
    their text so far, the function calls sent, and a forced call's held-back content."""

    def __init__(self, response_id: str, item_id: str, req: ResponsesRequest, forced_tools: Sequence[str] = ()) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.req = req
        self._forced = ForcedToolCall(forced_tools)
        self._created_at = int(time.time())
        self._sequence = 0
        self._output_index = 0
        self._started = False
        self._reasoning_id: str | None = None
        self._reasoning_done = False
        self._thinking = ""
        self._text: str | None = None
        self._calls: list[dict[str, Any]] = []

    def _event(self, name: str, **data: Any) -> tuple[str, dict[str, Any]]:
        event = {"type": name, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return name, event

    def error_event(self, status: int, message: str) -> tuple[str, dict[str, Any]]:
        """The ``error`` event that ends a stream that failed midway."""
        body = error_body(status, message)
        return self._event("error", code=body["error"]["type"], message=message, param=None, error=body["error"])

    def _response(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        return _response_object(self.req, self.response_id, status, output, usage, self._created_at)

    def _finish_reasoning(self) -> list[tuple[str, dict[str, Any]]]:
        if self._reasoning_id is None or self._reasoning_done:
            return []
        self._reasoning_done = True
        events = [
            self._event("response.reasoning_summary_text.done", item_id=self._reasoning_id, output_index=self._output_index, summary_index=0, text=self._thinking),
            self._event("response.output_item.done", output_index=self._output_index, item=_reasoning_item(self._reasoning_id, self._thinking)),
        ]
        self._output_index += 1
        return events

    def _thinking_events(self, thinking: str) -> list[tuple[str, dict[str, Any]]]:
        events = []
        if self._reasoning_id is None:
            self._reasoning_id = f"rs_{random.randrange(999999)}"
            events.append(self._event("response.output_item.added", output_index=self._output_index, item={"id": self._reasoning_id, "type": "reasoning", "summary": []}))
        self._thinking += thinking
        events.append(self._event("response.reasoning_summary_text.delta", item_id=self._reasoning_id, output_index=self._output_index, summary_index=0, delta=thinking))
        return events

    def _call_events(self, calls: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        events = self._finish_reasoning()
        for call in calls:
            index = self._output_index + len(self._calls)
            item_id = f"fc_{random.randrange(999999)}_{len(self._calls)}"
            self._calls.append(_call_item(item_id, call))
            arguments = call["function"]["arguments"]
            events.append(self._event("response.output_item.added", output_index=index, item=_call_item(item_id, call, "in_progress")))
            if arguments:
                events.append(self._event("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=arguments))
            events.append(self._event("response.function_call_arguments.done", item_id=item_id, output_index=index, arguments=arguments))
            events.append(self._event("response.output_item.done", output_index=index, item=self._calls[-1]))
        return events

    def _text_events(self, text: str) -> list[tuple[str, dict[str, Any]]]:
        events = self._finish_reasoning()
        if self._text is None:
            self._text = ""
            events.append(self._event("response.output_item.added", output_index=self._output_index, item=_message_item(self.item_id, "", "in_progress")))
            events.append(self._event("response.content_part.added", item_id=self.item_id, output_index=self._output_index, content_index=0, part=_text_part("")))
        self._text += text
        events.append(self._event("response.output_text.delta", item_id=self.item_id, output_index=self._output_index, content_index=0, delta=text, logprobs=[]))
        return events

    def _completion_events(self, native: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._finish_reasoning()
        output: list[dict[str, Any]] = []
        if self._reasoning_id is not None:
            output.append(_reasoning_item(self._reasoning_id, self._thinking))
        if self._calls:
            output.extend(self._calls)
        elif self._text is not None:
            text = self._text
            events.append(self._event("response.output_text.done", item_id=self.item_id, output_index=self._output_index, content_index=0, text=text, logprobs=[]))
            events.append(self._event("response.content_part.done", item_id=self.item_id, output_index=self._output_index, content_index=0, part=_text_part(text)))
            events.append(self._event("response.output_item.done", output_index=self._output_index, item=_message_item(self.item_id, text)))
            output.append(_message_item(self.item_id, text))
        events.append(self._event("response.completed", response=self._response("completed", output, _usage(native))))
        return events

    def feed(self, native: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The (event, data) pairs to send for one native chunk."""
        events: list[tuple[str, dict[str, Any]]] = []
        if not self._started:
            self._started = True
            events.append(self._event("response.created", response=self._response("in_progress", [], None)))
            events.append(self._event("response.in_progress", response=self._response("in_progress", [], None)))
        message = self._forced.message(native)
        if message.get("thinking"):
            events += self._thinking_events(message["thinking"])
        calls = openai_tool_calls(message.get("tool_calls") or [])
        if calls:
            events += self._call_events(calls)
        elif not self._calls and message.get("content"):
            events += self._text_events(message["content"])
        if native.get("done"):
            events += self._completion_events(native)
        return events
