"""OpenAI wire types and pure converters to and from Ollama's native API.

The counterpart of Ollama's ``openai/openai.go``: requests arrive as OpenAI bodies, become
native :class:`~ollamapy.api.types.ChatRequest` / ``GenerateRequest`` / ``EmbedRequest``
objects, run through the native core, and the native answers (the same dicts ``/api/chat``
and ``/api/generate`` stream) are converted back. Nothing here does I/O, so every rule is
testable without a server. Responses are plain dicts because OpenAI's shapes distinguish
``null`` from an absent key (``finish_reason: null`` must be sent, ``logprobs`` left out).

Beyond Ollama (ollamapy improvements): ``tool_choice`` is honoured (``none`` drops the
tools, ``required`` / a named function constrains the output with a JSON schema forcing a
call; see :func:`tool_call_schema`), ``max_completion_tokens`` is read when ``max_tokens``
is absent, and ``/v1/completions`` accepts a one-element prompt list.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ollamapy.api.types import ChatRequest, EmbedRequest, GenerateRequest, Message, ToolCall, ToolCallFunction
from ollamapy.errors import InvalidRequest
from ollamapy.prompt.tool_parser import tool_call_id
from ollamapy.store.names import ModelName

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "ChatStream",
    "CompletionRequest",
    "CompletionStream",
    "EmbeddingRequest",
    "ForcedToolCall",
    "JsonSchemaFormat",
    "OpenAIToolCall",
    "OpenAIToolCallFunction",
    "Reasoning",
    "ResponseFormat",
    "StreamOptions",
    "decode_image_url",
    "error_body",
    "force_tool_call",
    "forced_tool_names",
    "forced_tools",
    "from_chat_request",
    "from_completion_request",
    "from_embedding_request",
    "new_id",
    "openai_tool_calls",
    "to_chat_completion",
    "to_chunks",
    "to_completion",
    "to_embedding_list",
    "to_model",
    "to_model_list",
    "tool_call_schema",
]

SYSTEM_FINGERPRINT = "fp_ollama"
_IMAGE_PREFIXES = ("data:;base64,", *tuple(f"data:image/{t};base64," for t in ("jpeg", "jpg", "png", "webp")))
_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}


# --- wire types -----------------------------------------------------------------------


class _Wire(BaseModel):
    """Base for OpenAI request bodies: unknown fields are ignored, as Go's decoder does."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class StreamOptions(_Wire):
    include_usage: bool = False


class Reasoning(_Wire):
    effort: str = ""


class JsonSchemaFormat(_Wire):
    schema_: Any = Field(None, alias="schema")
    """The JSON schema itself; ``name`` and ``strict`` are accepted and ignored."""


class ResponseFormat(_Wire):
    type: str = ""
    """``text``, ``json_object`` or ``json_schema``."""
    json_schema: JsonSchemaFormat | None = None


class OpenAIToolCallFunction(_Wire):
    name: str = ""
    arguments: str = ""
    """The arguments as a JSON string (OpenAI), not an object (Ollama)."""


class OpenAIToolCall(_Wire):
    id: str = ""
    index: int = 0
    type: str = ""
    function: OpenAIToolCallFunction = Field(default_factory=OpenAIToolCallFunction)


class ChatMessage(_Wire):
    role: str = ""
    content: Any = None
    """A string, a list of content parts, or null (only with ``tool_calls``)."""
    reasoning: str = ""
    tool_calls: list[OpenAIToolCall] | None = None
    name: str = ""
    tool_call_id: str = ""


class ChatCompletionRequest(_Wire):
    """``POST /v1/chat/completions``. ``None`` marks fields whose absence has a meaning
    (``temperature``/``top_p`` absent = 1.0, ``max_tokens`` absent = unlimited)."""

    model: str = ""
    messages: list[ChatMessage] = Field(default_factory=list)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    """OpenAI's newer name for ``max_tokens``; used only when ``max_tokens`` is absent."""
    seed: int | None = None
    stop: Any = None
    temperature: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    top_p: float | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    """``"none"``, ``"auto"``, ``"required"`` or ``{"type": "function", "function": {"name": …}}``."""
    reasoning: Reasoning | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int = 0
    debug_render_only: bool = Field(False, alias="_debug_render_only")

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(_Wire):
    """``POST /v1/completions`` (legacy text completions)."""

    model: str = ""
    prompt: Any = ""
    """A string (or, ollamapy, a one-element list of strings)."""
    frequency_penalty: float = 0.0
    max_tokens: int | None = None
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: Any = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float = 0.0
    """0 (or absent) means 1.0."""
    suffix: str = ""
    logprobs: int | None = None
    """How many alternatives to return per token; any value turns logprobs on."""
    debug_render_only: bool = Field(False, alias="_debug_render_only")

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class EmbeddingRequest(_Wire):
    """``POST /v1/embeddings``."""

    input: Any = None
    model: str = ""
    dimensions: int = 0
    encoding_format: str = ""
    """``float`` (default) or ``base64`` (little-endian float32 bytes)."""


# --- shared helpers --------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """Ollama's response ids: ``chatcmpl-<0..998>`` / ``cmpl-<0..998>``."""
    return f"{prefix}-{random.randrange(999)}"


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error shape; the type follows the status as Ollama maps it."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _go_type(value: Any) -> str:
    """The Go type name ``encoding/json`` gives a JSON value (for Ollama's ``%T`` messages)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _unix(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp())


def _stops(stop: Any, *, strict: bool) -> list[str] | None:
    """``stop`` as a list: a string, or a list whose non-strings are skipped (chat) or
    refused (completions, ``strict``); other types mean no stop."""
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list):
        return None
    strings = [s for s in stop if isinstance(s, str)]
    if strict and len(strings) != len(stop):
        other = next(s for s in stop if not isinstance(s, str))
        raise InvalidRequest(f"invalid type for 'stop' field: {_go_type(other)}")
    return strings


def _usage(native: dict[str, Any]) -> dict[str, int]:
    prompt = native.get("prompt_eval_count") or 0
    completion = native.get("eval_count") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chat_logprob(entry: dict[str, Any], *, alternative: bool = False) -> dict[str, Any]:
    """A native logprob in OpenAI's shape: ``bytes`` (and, for chosen tokens,
    ``top_logprobs``) always present."""
    out = {"token": entry["token"], "logprob": entry["logprob"], "bytes": entry.get("bytes", list(entry["token"].encode()))}
    if not alternative:
        out["top_logprobs"] = [_chat_logprob(alt, alternative=True) for alt in entry.get("top_logprobs") or []]
    return out


def _choice_logprobs(native: dict[str, Any]) -> dict[str, Any]:
    entries = native.get("logprobs")
    return {"logprobs": {"content": [_chat_logprob(e) for e in entries]}} if entries else {}


# --- chat: request ---------------------------------------------------------------------


def _tool_calls(calls: list[OpenAIToolCall] | None) -> list[ToolCall] | None:
    if calls is None:
        return None
    native = []
    for call in calls:
        try:
            arguments = json.loads(call.function.arguments)
        except json.JSONDecodeError:
            raise InvalidRequest("invalid tool call arguments") from None
        if not isinstance(arguments, dict):
            raise InvalidRequest("invalid tool call arguments")
        function = ToolCallFunction(index=call.index, name=call.function.name, arguments=arguments)
        native.append(ToolCall(id=call.id or None, function=function))
    return native


def _image_data(part: dict[str, Any]) -> str:
    """The base64 payload of an ``image_url`` part."""
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str):
        raise InvalidRequest("invalid message format")
    return decode_image_url(url)


def decode_image_url(url: str) -> str:
    """The base64 payload of an image data URI (Ollama's ``decodeImageURL``; URLs are refused)."""
    if url.startswith(("http://", "https://")):
        raise InvalidRequest("image URLs are not currently supported, please use base64 encoded data instead")
    prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        raise InvalidRequest("invalid image input")
    data = url[len(prefix) :]
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise InvalidRequest("invalid message format") from None
    return data


def _part_message(role: str, part: Any) -> Message:
    """One content part as its own native message, as Ollama splits them."""
    if not isinstance(part, dict):
        raise InvalidRequest("invalid message format")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidRequest("invalid message format")
        return Message(role=role, content=part["text"])
    if kind == "image_url":
        return Message(role=role, images=[_image_data(part)])
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        if not isinstance(data, str):
            raise InvalidRequest("invalid message format")
        return Message(role=role, images=[data])
    raise InvalidRequest("invalid message format")


def _tool_name(messages: Sequence[ChatMessage], msg: ChatMessage) -> str | None:
    """A tool result's tool name: its ``name``, else the call its ``tool_call_id`` answers
    (searching backwards, so the last call with a duplicated id wins)."""
    if msg.role.lower() != "tool":
        return None
    if msg.name:
        return msg.name
    for earlier in reversed(messages):
        for call in earlier.tool_calls or []:
            if msg.tool_call_id and call.id == msg.tool_call_id:
                return call.function.name
    return None


def _messages(messages: Sequence[ChatMessage]) -> list[Message]:
    out: list[Message] = []
    for msg in messages:
        tool_name = _tool_name(messages, msg)
        tool_call_id = msg.tool_call_id or None
        content = msg.content
        if isinstance(content, str):
            out.append(
                Message(role=msg.role, content=content, thinking=msg.reasoning or None, tool_calls=_tool_calls(msg.tool_calls), tool_name=tool_name, tool_call_id=tool_call_id)
            )
        elif isinstance(content, list):
            parts = [_part_message(msg.role, part) for part in content]
            for part in parts:
                part.tool_name, part.tool_call_id = tool_name, tool_call_id
            out.extend(parts)
            if out and msg.tool_calls:
                out[-1].tool_calls = _tool_calls(msg.tool_calls)
                out[-1].thinking = msg.reasoning or None
        elif msg.tool_calls is None:
            raise InvalidRequest(f"invalid message content type: {_go_type(content)}")
        else:
            out.append(Message(role=msg.role, thinking=msg.reasoning or None, tool_calls=_tool_calls(msg.tool_calls), tool_name=tool_name, tool_call_id=tool_call_id))
    return out


def _sampling(
    *,
    stop: Any,
    strict_stop: bool,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    frequency_penalty: float | None,
    presence_penalty: float | None,
) -> dict[str, Any]:
    """OpenAI sampling fields as native options: ``None`` leaves an option to the model,
    except temperature and top_p, which default to 1.0 (OpenAI's defaults)."""
    options: dict[str, Any] = {}
    stops = _stops(stop, strict=strict_stop)
    if stops is not None:
        options["stop"] = stops
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    options["temperature"] = 1.0 if temperature is None else temperature
    if seed is not None:
        options["seed"] = seed
    if frequency_penalty is not None:
        options["frequency_penalty"] = frequency_penalty
    if presence_penalty is not None:
        options["presence_penalty"] = presence_penalty
    options["top_p"] = 1.0 if top_p is None else top_p
    return options


def _response_format(fmt: ResponseFormat | None) -> Any:
    if fmt is None:
        return None
    kind = fmt.type.strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema" and fmt.json_schema is not None:
        return fmt.json_schema.schema_
    return None


def _think(req: ChatCompletionRequest) -> bool | str | None:
    effort = req.reasoning.effort if req.reasoning is not None else (req.reasoning_effort or "")
    if not effort:
        return None
    if effort not in _EFFORTS:
        raise InvalidRequest(f"invalid reasoning value: '{effort}' (must be \"none\", \"minimal\", \"low\", \"medium\", \"high\", \"xhigh\", \"max\", or \"ultra\")")
    return _EFFORTS[effort]


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function")
    return function if isinstance(function, dict) else {}


def _function_name(tool: dict[str, Any]) -> str:
    return str(_function(tool).get("name", ""))


def forced_tools(tools: Sequence[dict[str, Any]] | None, choice: Any) -> list[dict[str, Any]]:
    """The (native) tools a ``tool_choice`` forces a call among; empty when a call is not
    forced. A named choice is ``{"type": "function", "function": {"name"}}`` (chat) or
    ``{"type": "function", "name"}`` (Responses)."""
    if choice is None or choice in ("auto", "none"):
        return []
    if not tools:
        raise InvalidRequest("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
    if choice == "required":
        return list(tools)
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name") or _function(choice).get("name")
        chosen = [t for t in tools if _function_name(t) == name]
        if not chosen:
            raise InvalidRequest(f"Invalid value for 'tool_choice': no function named '{name}' was specified in the 'tools' parameter.")
        return chosen
    raise InvalidRequest(f"invalid tool_choice: {json.dumps(choice)} (must be \"none\", \"auto\", \"required\", or a function)")


def forced_tool_names(req: ChatCompletionRequest) -> list[str]:
    """Names of the tools ``tool_choice`` forces a call among (empty when not forced)."""
    return [_function_name(t) for t in forced_tools(req.tools, req.tool_choice)]


def tool_call_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema whose only instances are calls of one of ``tools``.

    Each tool gives ``{"name": <const tool name>, "arguments": <its parameters schema>}``
    (name first, so a streaming parser learns the tool early, no other keys); several
    tools are alternatives (``anyOf``), so the arguments always match the named tool.
    """
    variants = []
    for tool in tools:
        parameters = _function(tool).get("parameters") or {"type": "object"}
        variants.append(
            {
                "type": "object",
                "properties": {"name": {"const": _function_name(tool)}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def from_chat_request(req: ChatCompletionRequest) -> ChatRequest:
    """The native chat request for an OpenAI one (Ollama's ``FromChatRequest`` + tool_choice).

    ``tool_choice: "none"`` sends no tools; a forced choice keeps the tools (the template
    still describes them) and sets ``format`` to :func:`tool_call_schema` of the forced
    ones, overriding ``response_format``.
    """
    forced = forced_tools(req.tools, req.tool_choice)
    fmt = tool_call_schema(forced) if forced else _response_format(req.response_format)
    return ChatRequest.model_validate(
        {
            "model": req.model,
            "messages": _messages(req.messages),
            "format": fmt,
            "options": _sampling(
                stop=req.stop,
                strict_stop=False,
                max_tokens=req.max_tokens if req.max_tokens is not None else req.max_completion_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=req.seed,
                frequency_penalty=req.frequency_penalty,
                presence_penalty=req.presence_penalty,
            ),
            "stream": req.stream,
            "tools": None if req.tool_choice == "none" else req.tools,
            "think": _think(req),
            "logprobs": bool(req.logprobs),
            "top_logprobs": req.top_logprobs,
            "_debug_render_only": req.debug_render_only,
        }
    )


# --- chat: response --------------------------------------------------------------------


def force_tool_call(native: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """When a call was forced but the template's parser did not see one (its tool tag was
    never written), read the constrained JSON content as that call.

    ``native`` is a whole chat answer; it is returned unchanged when nothing was forced,
    calls were already parsed, or the content is not a call of one of ``names``.
    """
    message = native.get("message") or {}
    if not names or message.get("tool_calls"):
        return native
    call = _parse_call(message.get("content", ""), names)
    if call is None:
        return native
    return {**native, "message": {**message, "content": "", "tool_calls": [call]}}


class ForcedToolCall:
    """The streamed form of :func:`force_tool_call`: while a call is forced and none has
    been parsed, each chunk's content is held back; the last chunk gets the held content
    read as the call (or given back as content when it is not one)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._called = False
        self._held = ""

    def message(self, native: dict[str, Any]) -> dict[str, Any]:
        """The message to send for one native chunk."""
        message = dict(native.get("message") or {})
        self._called = self._called or bool(message.get("tool_calls"))
        if not self.names or self._called:
            return message
        self._held += message.get("content") or ""
        message["content"] = ""
        if native.get("done"):
            message = force_tool_call({"message": {**message, "content": self._held}}, self.names)["message"]
        return message


def _parse_call(text: str, names: Sequence[str]) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names or not isinstance(value.get("arguments"), dict):
        return None
    return {"id": tool_call_id(), "function": {"index": 0, "name": value["name"], "arguments": value["arguments"]}}


def openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id", ""),
            "index": call["function"].get("index", 0),
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": json.dumps(call["function"].get("arguments", {}), ensure_ascii=False, separators=(",", ":"))},
        }
        for call in calls
    ]


def to_chat_completion(completion_id: str, native: dict[str, Any]) -> dict[str, Any]:
    """A whole native chat answer as a ``chat.completion`` object."""
    message = native.get("message") or {"role": "assistant", "content": ""}
    out_message: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning"] = message["thinking"]
    calls = openai_tool_calls(message.get("tool_calls") or [])
    if calls:
        out_message["tool_calls"] = calls
    reason = "tool_calls" if calls else (native.get("done_reason") or None)
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": _unix(native["created_at"]),
        "model": native.get("model", ""),
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "message": out_message, "finish_reason": reason, **_choice_logprobs(native)}],
        "usage": _usage(native),
    }
    if "_debug_info" in native:
        body["_debug_info"] = native["_debug_info"]
    return body


def _chunk(completion_id: str, created: int, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
    }


def to_chunks(completion_id: str, created: int, native: dict[str, Any], *, first: bool) -> list[dict[str, Any]]:
    """The delta chunks for one native chat chunk: none when it carries nothing, two when
    it has thinking and content (or calls) together (reasoning first, with the logprobs).

    ``first`` puts ``role`` in the first delta. Finish and usage come from :class:`ChatStream`.
    """
    message = native.get("message") or {}
    thinking = message.get("thinking") or ""
    content = message.get("content") or ""
    calls = openai_tool_calls(message.get("tool_calls") or [])
    logprobs = _choice_logprobs(native)
    deltas: list[dict[str, Any]] = []
    if thinking:
        deltas.append({"reasoning": thinking})
    if content or calls:
        deltas.append({"content": content, **({"tool_calls": calls} if calls else {})})
    if not deltas and logprobs:
        deltas.append({"content": ""})
    chunks = []
    for i, delta in enumerate(deltas):
        if first and i == 0:
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "finish_reason": None, **(logprobs if i == 0 else {})}
        chunks.append(_chunk(completion_id, created, native.get("model", ""), [choice]))
    return chunks


class ChatStream:
    """Turns the native chat stream into OpenAI chunks, keeping what spans chunks: one
    ``created``, ``role`` only in the first delta, whether a tool call was sent (which makes
    the finish reason ``tool_calls``), and, when a call is forced, the content held back
    until the end so the constrained JSON can be sent as the call it is.
    """

    def __init__(self, completion_id: str, created: int, *, include_usage: bool, forced_tools: Sequence[str] = ()) -> None:
        self.id = completion_id
        self.created = created
        self.include_usage = include_usage
        self._forced = ForcedToolCall(forced_tools)
        self._first = True
        self._tool_call_sent = False

    def _emit(self, native: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = to_chunks(self.id, self.created, native, first=self._first)
        if chunks:
            self._first = False
        self._tool_call_sent = self._tool_call_sent or bool((native.get("message") or {}).get("tool_calls"))
        return chunks

    def feed(self, native: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks (possibly none) to send for one native chunk; after the ``done`` one,
        the finish chunk and, if asked for, the usage chunk follow. ``[DONE]`` is the
        caller's."""
        chunks = self._emit({**native, "message": self._forced.message(native)})
        if not native.get("done"):
            return chunks
        reason = "tool_calls" if self._tool_call_sent else (native.get("done_reason") or "stop")
        model = native.get("model", "")
        chunks.append(_chunk(self.id, self.created, model, [{"index": 0, "delta": {}, "finish_reason": reason}]))
        if self.include_usage:
            chunks.append({**_chunk(self.id, self.created, model, []), "usage": _usage(native)})
        return chunks


# --- completions -----------------------------------------------------------------------


def _prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if value is None:
        return ""
    raise InvalidRequest(f"invalid type for 'prompt' field: {_go_type(value)} (a single string is supported)")


def from_completion_request(req: CompletionRequest) -> GenerateRequest:
    """The native generate request (Ollama's ``FromCompleteRequest``); the model's template
    applies, ``logprobs: n`` asks for n alternatives per token."""
    options = _sampling(
        stop=req.stop,
        strict_stop=True,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p or None,
        seed=req.seed,
        frequency_penalty=req.frequency_penalty,
        presence_penalty=req.presence_penalty,
    )
    return GenerateRequest.model_validate(
        {
            "model": req.model,
            "prompt": _prompt(req.prompt),
            "suffix": req.suffix,
            "options": options,
            "stream": req.stream,
            "logprobs": req.logprobs is not None,
            "top_logprobs": req.logprobs or 0,
            "_debug_render_only": req.debug_render_only,
        }
    )


def _completion_logprobs(entries: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """Native logprobs in the legacy completions shape; ``offset`` is where this piece's
    text starts in the whole completion."""
    text_offset = []
    for entry in entries:
        text_offset.append(offset)
        offset += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{alt["token"]: alt["logprob"] for alt in e.get("top_logprobs") or []} for e in entries],
        "text_offset": text_offset,
    }


def _completion_choice(native: dict[str, Any], finish_reason: str | None, offset: int = 0) -> dict[str, Any]:
    choice: dict[str, Any] = {"text": native.get("response", ""), "index": 0, "finish_reason": finish_reason}
    if native.get("logprobs"):
        choice["logprobs"] = _completion_logprobs(native["logprobs"], offset)
    return choice


def _completion_object(completion_id: str, created: int, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
    }


def to_completion(completion_id: str, native: dict[str, Any]) -> dict[str, Any]:
    """A whole native generate answer as a ``text_completion`` object."""
    choice = _completion_choice(native, native.get("done_reason") or None)
    return {**_completion_object(completion_id, _unix(native["created_at"]), native.get("model", ""), [choice]), "usage": _usage(native)}


class CompletionStream:
    """Native generate chunks as ``text_completion`` chunks: one per piece of text, a
    finish chunk with empty text, then the usage chunk when asked for."""

    def __init__(self, completion_id: str, created: int, *, include_usage: bool) -> None:
        self.id = completion_id
        self.created = created
        self.include_usage = include_usage
        self._offset = 0

    def feed(self, native: dict[str, Any]) -> list[dict[str, Any]]:
        model = native.get("model", "")
        chunks = []
        if native.get("response") or native.get("logprobs"):
            chunks.append(_completion_object(self.id, self.created, model, [_completion_choice(native, None, self._offset)]))
            self._offset += len(native.get("response", ""))
        if native.get("done"):
            finish = {"text": "", "index": 0, "finish_reason": native.get("done_reason") or "stop"}
            chunks.append(_completion_object(self.id, self.created, model, [finish]))
            if self.include_usage:
                chunks.append({**_completion_object(self.id, self.created, model, []), "usage": _usage(native)})
        return chunks


# --- embeddings ------------------------------------------------------------------------


def from_embedding_request(req: EmbeddingRequest) -> EmbedRequest:
    """The native embed request; ``""`` embeds one empty string, null or ``[]`` is refused."""
    fmt = req.encoding_format.lower()
    if fmt not in ("", "float", "base64"):
        raise InvalidRequest(f"Invalid value for 'encoding_format' = {req.encoding_format}. Supported values: ['float', 'base64'].")
    value = [""] if req.input == "" else req.input
    if value is None or value == []:
        raise InvalidRequest("invalid input")
    return EmbedRequest(model=req.model, input=value, dimensions=req.dimensions)


def _base64_floats(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def to_embedding_list(model: str, native: dict[str, Any], encoding_format: str) -> dict[str, Any]:
    """A native ``/api/embed`` answer as OpenAI's embedding list."""
    as_base64 = encoding_format.lower() == "base64"
    data = [
        {"object": "embedding", "embedding": _base64_floats(vector) if as_base64 else vector, "index": i}
        for i, vector in enumerate(native.get("embeddings") or [])
    ]
    tokens = native.get("prompt_eval_count") or 0
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# --- models ----------------------------------------------------------------------------


def to_model(name: str, modified_at: datetime) -> dict[str, Any]:
    """One model object: ``owned_by`` is the name's namespace (``library`` by default)."""
    return {"id": name, "object": "model", "created": int(modified_at.timestamp()), "owned_by": ModelName.parse(name).namespace}


def to_model_list(native: dict[str, Any]) -> dict[str, Any]:
    """A native ``/api/tags`` answer as OpenAI's model list."""
    return {"object": "list", "data": [to_model(m["name"], datetime.fromisoformat(m["modified_at"])) for m in native.get("models", [])]}
