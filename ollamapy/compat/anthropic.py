"""Anthropic Messages API wire types and pure converters to and from the native chat API.

The counterpart of Ollama's ``anthropic/anthropic.go`` (``POST /v1/messages``, what
Claude Code and the ``anthropic`` SDKs speak): a Messages request becomes a native
:class:`~ollamapy.api.types.ChatRequest`, runs through the same core as ``/api/chat``,
and the native answers come back as a ``message`` object or as its stream of server-sent
events (``message_start``, ``content_block_start/delta/stop`` for thinking, text and
``tool_use`` blocks, ``message_delta`` with the stop reason and usage, ``message_stop``).
Nothing here does I/O.

Beyond Ollama (which reads ``tool_choice`` but ignores it): ``tool_choice`` is honoured as
on ``/v1/chat/completions``: ``none`` sends no tools, ``any`` and ``tool`` constrain the
output to a call (:func:`~ollamapy.compat.openai.tool_call_schema`). An answer with no
content block has ``content: []`` (Ollama sends ``null``), and an error in the middle of
a stream ends it with Anthropic's ``error`` event.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ollamapy.api.types import ChatRequest, Message, ToolCall, ToolCallFunction
from ollamapy.compat.openai import ForcedToolCall, tool_call_schema
from ollamapy.errors import InvalidRequest

__all__ = [
    "ContentBlock",
    "CountTokensRequest",
    "MessageParam",
    "MessageStream",
    "MessagesRequest",
    "ThinkingConfig",
    "Tool",
    "ToolChoice",
    "error_body",
    "estimate_input_tokens",
    "forced_tool_names",
    "from_messages_request",
    "new_message_id",
    "to_message",
]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_THINK_EFFORTS = ("high", "medium", "low", "max")


# --- wire types -----------------------------------------------------------------------


class _Wire(BaseModel):
    """Unknown fields are ignored, as Go's decoder ignores them."""

    model_config = ConfigDict(extra="ignore")


class ContentBlock(_Wire):
    """One block of a message: text, image, tool_use, tool_result or thinking (others are skipped)."""

    type: str = ""
    text: str | None = None
    source: dict[str, Any] | None = None
    id: str = ""
    name: str = ""
    input: dict[str, Any] | None = None
    tool_use_id: str = ""
    content: Any = None
    is_error: bool = False
    thinking: str | None = None
    signature: str = ""


class MessageParam(_Wire):
    role: str
    content: list[ContentBlock]

    @field_validator("content", mode="before")
    @classmethod
    def _text_is_one_block(cls, value: Any) -> Any:
        """A plain string is a single text block."""
        return [{"type": "text", "text": value}] if isinstance(value, str) else value


class Tool(_Wire):
    type: str = ""
    name: str
    description: str = ""
    input_schema: dict[str, Any] | None = None


class ToolChoice(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str = ""
    disable_parallel_tool_use: bool = False


class ThinkingConfig(_Wire):
    type: str
    budget_tokens: int = 0


class OutputConfig(_Wire):
    effort: str = ""


class CountTokensRequest(_Wire):
    """``/v1/messages/count_tokens``: the parts of a Messages request that make its prompt."""

    model: str = ""
    messages: list[MessageParam] = Field(default_factory=list)
    system: str | list[dict[str, Any]] | None = None
    tools: list[Tool] | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = 0
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tool_choice: ToolChoice | None = None
    metadata: dict[str, Any] | None = None
    output_config: OutputConfig | None = None


# --- shared helpers --------------------------------------------------------------------


def new_message_id() -> str:
    """``msg_`` + 24 hex digits, as Ollama makes them."""
    return "msg_" + secrets.token_hex(12)


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error shape; the type follows the status."""
    return {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": "req_" + secrets.token_hex(12),
    }


def _system_text(system: str | list[dict[str, Any]] | None) -> str:
    if isinstance(system, str):
        return system
    return "".join(block.get("text", "") for block in system or [] if block.get("type") == "text" and isinstance(block.get("text"), str))


def estimate_input_tokens(req: CountTokensRequest) -> int:
    """Ollama's rough input size (characters / 4): for ``message_start``, sent before the
    prompt is evaluated (the real count comes with ``message_delta``), and the answer of
    ``count_tokens``."""
    total = len(_system_text(req.system))
    for message in req.messages:
        total += len(message.role)
        for block in message.content:
            total += len(block.text or "") + len(block.thinking or "")
            if block.type in ("tool_use", "tool_result"):
                total += len(block.model_dump_json(exclude_defaults=True))
    for tool in req.tools or []:
        total += len(tool.name) + len(tool.description) + len(json.dumps(tool.input_schema or {}))
    return max(total // 4, 1 if req.messages or req.system else 0)


# --- request ---------------------------------------------------------------------------


def _image(source: dict[str, Any] | None) -> str:
    """The base64 payload of an image source; only ``base64`` sources are supported."""
    if not isinstance(source, dict):
        raise InvalidRequest("invalid image source")
    if source.get("type") != "base64":
        raise InvalidRequest(f"invalid image source type: {source.get('type')}. Only base64 images are supported.")
    data = source.get("data")
    try:
        base64.b64decode(data if isinstance(data, str) else "", validate=True)
    except binascii.Error as err:
        raise InvalidRequest(f"invalid base64 image data: {err}") from None
    return str(data)


def _tool_result(block: ContentBlock, tool_name: str | None) -> Message:
    """A ``tool_result`` block as a native ``tool`` message (text and images of its content)."""
    text, images = "", []
    if isinstance(block.content, str):
        text = block.content
    elif isinstance(block.content, list):
        for part in block.content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                text += part["text"]
            elif part.get("type") == "image":
                images.append(_image(part.get("source")))
    return Message(role="tool", content=text, images=images or None, tool_call_id=block.tool_use_id or None, tool_name=tool_name)


def _messages(req: MessagesRequest) -> list[Message]:
    """Ollama's conversion: system first; per message, its text, images, thinking and
    tool calls as one message, and each tool result as a ``tool`` message (before the
    user's own text, which follows the results it comments on)."""
    out: list[Message] = []
    system = _system_text(req.system)
    if system:
        out.append(Message(role="system", content=system))
    names: dict[str, str] = {}
    for param in req.messages:
        role = param.role.lower()
        text, thinking = "", ""
        images: list[str] = []
        calls: list[ToolCall] = []
        results: list[Message] = []
        for block in param.content:
            if block.type == "text":
                text += block.text or ""
            elif block.type == "image":
                images.append(_image(block.source))
            elif block.type == "tool_use":
                if not block.id:
                    raise InvalidRequest("tool_use block missing required 'id' field")
                if not block.name:
                    raise InvalidRequest("tool_use block missing required 'name' field")
                names[block.id] = block.name
                calls.append(ToolCall(id=block.id, function=ToolCallFunction(index=len(calls), name=block.name, arguments=block.input or {})))
            elif block.type == "tool_result":
                results.append(_tool_result(block, names.get(block.tool_use_id)))
            elif block.type == "thinking":
                thinking = block.thinking or ""
        if role == "user":
            out.extend(results)
        if text or images or calls or thinking:
            out.append(Message(role=role, content=text, images=images or None, tool_calls=calls or None, thinking=thinking or None))
        if role != "user":
            out.extend(results)
    return out


def _native_tool(tool: Tool) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": tool.input_schema or {"type": "object"}}}


def _forced_tools(req: MessagesRequest) -> list[dict[str, Any]]:
    """The native tools ``tool_choice`` forces a call among; empty when a call is not forced."""
    choice = req.tool_choice
    if choice is None or choice.type in ("auto", "none"):
        return []
    tools = [_native_tool(t) for t in req.tools or []]
    if not tools:
        raise InvalidRequest("tool_choice is only allowed when tools are specified")
    if choice.type == "any":
        return tools
    chosen = [t for t in tools if t["function"]["name"] == choice.name]
    if not chosen:
        raise InvalidRequest(f"tool_choice names a tool that is not in tools: {choice.name!r}")
    return chosen


def forced_tool_names(req: MessagesRequest) -> list[str]:
    """Names of the tools ``tool_choice`` forces a call among (empty when not forced)."""
    return [t["function"]["name"] for t in _forced_tools(req)]


def _think(req: MessagesRequest) -> bool | str | None:
    if req.thinking is not None and req.thinking.type in ("enabled", "disabled"):
        return req.thinking.type == "enabled"
    effort = (req.output_config.effort if req.output_config else "").strip().lower()
    effort = "high" if effort == "xhigh" else effort
    return effort if effort in _THINK_EFFORTS else None


def from_messages_request(req: MessagesRequest) -> ChatRequest:
    """The native chat request for a Messages request (validated as Ollama validates it)."""
    if not req.model:
        raise InvalidRequest("model is required")
    if req.max_tokens <= 0:
        raise InvalidRequest("max_tokens is required and must be positive")
    if not req.messages:
        raise InvalidRequest("messages is required")
    options: dict[str, Any] = {"num_predict": req.max_tokens}
    for key in ("temperature", "top_p", "top_k"):
        if getattr(req, key) is not None:
            options[key] = getattr(req, key)
    if req.stop_sequences:
        options["stop"] = req.stop_sequences
    forced = _forced_tools(req)
    none = req.tool_choice is not None and req.tool_choice.type == "none"
    return ChatRequest.model_validate(
        {
            "model": req.model,
            "messages": _messages(req),
            "options": options,
            "stream": req.stream,
            "tools": None if none or not req.tools else [_native_tool(t) for t in req.tools],
            "format": tool_call_schema(forced) if forced else None,
            "think": _think(req),
        }
    )


# --- response --------------------------------------------------------------------------


def _stop_reason(done_reason: str | None, called: bool) -> str | None:
    if called:
        return "tool_use"
    if done_reason == "stop":
        return "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else None


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""), "input": function.get("arguments") or {}}


def to_message(message_id: str, native: dict[str, Any]) -> dict[str, Any]:
    """A whole native chat answer as a ``message`` object."""
    message = native.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("thinking"):
        content.append({"type": "thinking", "thinking": message["thinking"]})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    calls = message.get("tool_calls") or []
    content.extend(_tool_use(call) for call in calls)
    body: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": native.get("model", ""),
        "content": content,
        "usage": {"input_tokens": native.get("prompt_eval_count") or 0, "output_tokens": native.get("eval_count") or 0},
    }
    reason = _stop_reason(native.get("done_reason"), bool(calls))
    if reason:
        body["stop_reason"] = reason
    return body


class MessageStream:
    """Turns the native chat stream into Messages events, keeping what spans chunks: the
    open block (thinking, then text; each tool call is a whole block of its own), the
    index of the next block, whether a tool was called, and, when a call is forced, the
    content held back until the end so the constrained JSON can be sent as the call."""

    def __init__(self, message_id: str, model: str, *, estimated_input_tokens: int, forced_tools: Sequence[str] = ()) -> None:
        self.id = message_id
        self.model = model
        self._estimate = estimated_input_tokens
        self._forced = ForcedToolCall(forced_tools)
        self._started = False
        self._open: str | None = None
        self._index = 0
        self._called = False

    def _start_block(self, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._open = block["type"]
        return "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}

    def _stop_block(self) -> list[tuple[str, dict[str, Any]]]:
        if self._open is None:
            return []
        event = ("content_block_stop", {"type": "content_block_stop", "index": self._index})
        self._open = None
        self._index += 1
        return [event]

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}

    def _message_start(self) -> tuple[str, dict[str, Any]]:
        message = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "usage": {"input_tokens": self._estimate, "output_tokens": 0},
        }
        return "message_start", {"type": "message_start", "message": message}

    def feed(self, native: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The (event, data) pairs to send for one native chunk; the ``done`` one ends the message."""
        events: list[tuple[str, dict[str, Any]]] = []
        if not self._started:
            self._started = True
            events.append(self._message_start())
        message = self._forced.message(native)
        if message.get("thinking"):
            if self._open != "thinking":
                events += self._stop_block()
                events.append(self._start_block({"type": "thinking", "thinking": ""}))
            events.append(self._delta({"type": "thinking_delta", "thinking": message["thinking"]}))
        if message.get("content"):
            if self._open != "text":
                events += self._stop_block()
                events.append(self._start_block({"type": "text", "text": ""}))
            events.append(self._delta({"type": "text_delta", "text": message["content"]}))
        for call in message.get("tool_calls") or []:
            events += self._stop_block()
            block = _tool_use(call)
            events.append(self._start_block({**block, "input": {}}))
            events.append(self._delta({"type": "input_json_delta", "partial_json": json.dumps(block["input"], ensure_ascii=False, separators=(",", ":"))}))
            events += self._stop_block()
            self._called = True
        if native.get("done"):
            events += self._stop_block()
            usage = {"input_tokens": native.get("prompt_eval_count") or 0, "output_tokens": native.get("eval_count") or 0}
            delta = {"stop_reason": _stop_reason(native.get("done_reason"), self._called)}
            events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
            events.append(("message_stop", {"type": "message_stop"}))
        return events
