"""Request decoding and Ollama's native (NDJSON) answers, shared by every handler.

Bodies are decoded as Go's ``encoding/json`` decoder does, so a body it refuses is a 400
with its message. Ollama's streaming rule: an error before the first byte is a real HTTP
status with a JSON body; after the stream has started, it is one more NDJSON line
``{"error": "..."}`` and the stream ends (``supervisor.routes.streaming`` writes every
stream). ``stream: false`` collects the stream into one JSON object.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ollamapy.errors import InvalidRequest
from ollamapy.golang.strconv import quote
from ollamapy.supervisor.inference import ChunkStream, NativeResult
from ollamapy.supervisor.lifecycle import STREAMS
from ollamapy.supervisor.routes.streaming import Framing, record_usage

# STREAMS is defined beside the tracker it holds; the app factory imports it from here.
__all__ = ["NDJSON", "STREAMS", "json_response", "native_answer", "read_request", "respond_stream"]

RequestT = TypeVar("RequestT", bound=BaseModel)

# --- decoding a body as Go's json.Decoder does -------------------------------------------
#
# Python's json module and Go's decoder disagree on bodies users do send: Python decodes
# UTF-16 and skips a UTF-8 byte order mark, fails on invalid UTF-8 inside strings (Go
# replaces it with U+FFFD), rejects text after the first value (Go's Decoder ignores it)
# and accepts NaN. Bodies Python accepts as a UTF-8 text without NaN are decoded the same
# by both; anything else goes through the scanner below, which follows Go's state machine
# and answers with its messages.

_SPACE = re.compile(rb"[ \t\r\n]*")
_STRING_PREFIX = re.compile(rb'"(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_DIGITS = re.compile(rb"[0-9]*")
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_MAX_DEPTH = 10000


class _UnexpectedEOF(Exception):
    """The body ended inside a value."""


def _quote_char(byte: int) -> str:
    """A byte as Go's JSON scanner names it in an error: ``'ÿ'``, ``'\\x00'``, ``'\\''``.

    Go quotes the rune of the same number (so 0xFF is ``ÿ``), except the quote marks."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    return "'" + quote(chr(byte))[1:-1] + "'"


def _syntax_error(byte: int, context: str) -> InvalidRequest:
    return InvalidRequest(f"invalid character {_quote_char(byte)} {context}")


class _GoScanner:
    """Finds where the first JSON value of a body ends, or raises Go's syntax error."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def at(self, pos: int) -> int:
        if pos >= len(self.body):
            raise _UnexpectedEOF
        return self.body[pos]

    def space(self, pos: int) -> int:
        match = _SPACE.match(self.body, pos)
        return match.end() if match else pos

    def string(self, pos: int) -> int:
        match = _STRING_PREFIX.match(self.body, pos)
        end = match.end() if match else pos + 1
        byte = self.at(end)  # what stopped the valid prefix: the closing quote, or an error
        if byte == ord('"'):
            return end + 1
        if byte != ord("\\"):
            raise _syntax_error(byte, "in string literal")
        if self.at(end + 1) != ord("u"):
            raise _syntax_error(self.body[end + 1], "in string escape code")
        bad = next(offset for offset in range(2, 6) if self.at(end + offset) not in _HEX_DIGITS)
        raise _syntax_error(self.body[end + bad], "in \\u hexadecimal character escape")

    def digits(self, pos: int, context: str) -> int:
        """One or more digits: the first is required (else ``context``), then any more."""
        if not 0x30 <= self.at(pos) <= 0x39:
            raise _syntax_error(self.body[pos], context)
        match = _DIGITS.match(self.body, pos)
        return match.end() if match else pos

    def number(self, pos: int) -> int:
        if self.body[pos] == ord("-"):
            pos += 1
        pos = pos + 1 if self.at(pos) == ord("0") else self.digits(pos, "in numeric literal")
        if pos < len(self.body) and self.body[pos] == ord("."):
            pos = self.digits(pos + 1, "after decimal point in numeric literal")
        if pos < len(self.body) and self.body[pos] in b"eE":
            pos += 1
            if self.at(pos) in b"+-":
                pos += 1
            pos = self.digits(pos, "in exponent of numeric literal")
        return pos

    def literal(self, pos: int) -> int:
        word = _LITERALS[self.body[pos]]
        for offset in range(1, len(word)):
            if self.at(pos + offset) != word[offset]:
                expecting = _quote_char(word[offset])
                raise _syntax_error(self.body[pos + offset], f"in literal {word.decode()} (expecting {expecting})")
        return pos + len(word)

    def key(self, pos: int) -> int:
        """An object key and its colon; returns where its value starts."""
        if self.at(pos) != ord('"'):
            raise _syntax_error(self.body[pos], "looking for beginning of object key string")
        pos = self.space(self.string(pos))
        if self.at(pos) != ord(":"):
            raise _syntax_error(self.body[pos], "after object key")
        return pos + 1

    def value_end(self) -> int:
        """The end of the first value (Go's Decoder ignores what follows it)."""
        open_containers: list[int] = []
        pos = 0
        while True:
            pos = self.space(pos)
            byte = self.at(pos)
            if byte in b"{[":
                if len(open_containers) == _MAX_DEPTH:
                    raise _syntax_error(byte, "exceeded max depth")
                pos = self.space(pos + 1)
                if self.at(pos) != (ord("}") if byte == ord("{") else ord("]")):
                    open_containers.append(byte)
                    if byte == ord("{"):
                        pos = self.key(pos)
                    continue
                pos += 1
            elif byte == ord('"'):
                pos = self.string(pos)
            elif byte == ord("-") or 0x30 <= byte <= 0x39:
                pos = self.number(pos)
            elif byte in _LITERALS:
                pos = self.literal(pos)
            else:
                raise _syntax_error(byte, "looking for beginning of value")
            # after a value: close containers until one expects another element
            while open_containers:
                pos = self.space(pos)
                byte = self.at(pos)
                in_object = open_containers[-1] == ord("{")
                if byte == ord(","):
                    pos = self.key(self.space(pos + 1)) if in_object else pos + 1
                    break
                if byte == (ord("}") if in_object else ord("]")):
                    open_containers.pop()
                    pos += 1
                    continue
                raise _syntax_error(byte, "after object key:value pair" if in_object else "after array element")
            else:
                return pos


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON; the scanner names the error


def _decode_json_body(raw: bytes, *, empty_message: str) -> Any:
    """The first JSON value of ``raw`` as Go's decoder reads it; an empty body (only
    whitespace) is ``empty_message`` and a body cut short is Go's ``unexpected EOF``."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    if not raw.strip(b" \t\r\n"):
        raise InvalidRequest(empty_message)
    try:
        end = _GoScanner(raw).value_end()
    except _UnexpectedEOF:
        raise InvalidRequest("unexpected EOF") from None
    try:
        # Go replaces invalid UTF-8 inside strings; outside them the scanner allowed ASCII only
        return json.loads(raw[:end].decode("utf-8", "replace"))
    except RecursionError:
        raise InvalidRequest("exceeded max depth") from None


async def read_request(request: web.Request, model: type[RequestT], *, empty_message: str = "missing request body") -> RequestT:
    """Decode the JSON body into ``model`` with Ollama's messages for empty and bad bodies.

    The native API says ``missing request body`` for an empty body; the OpenAI routes pass
    Go's ``EOF``, which is what Ollama's middleware answers there.
    """
    data = _decode_json_body(await request.read(), empty_message=empty_message)
    if not isinstance(data, dict):
        raise InvalidRequest(f"json: cannot unmarshal {type(data).__name__} into Go value of type object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"invalid value for field {field!r}: {first['msg']}") from None


def json_response(body: Any, status: int = 200) -> web.Response:
    """A compact JSON response as Go's encoder writes it (``application/json; charset=utf-8``)."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8")


def _line(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


NDJSON: Framing[dict[str, Any]] = Framing(_line, lambda _status, message: {"error": message}, headers={"Content-Type": "application/x-ndjson"})
"""Ollama's framing: one JSON object a line, an error is ``{"error": "..."}``."""


async def respond_stream(
    request: web.Request,
    events: AsyncIterator[dict[str, Any]],
    *,
    stream: bool,
    collect: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
) -> web.StreamResponse:
    """Send ``events`` as NDJSON, or (``stream=False``) as one object built by ``collect``.

    ``collect`` defaults to "the last event", which is what create/pull/push answer.
    """
    if stream:
        return await NDJSON.respond(request, events)
    seen = [event async for event in events]
    body = collect(seen) if collect else (seen[-1] if seen else {})
    record_usage(request, body)
    return json_response(body)


async def native_answer(request: web.Request, result: NativeResult) -> dict[str, Any]:
    """The whole native answer of a started request (``stream: false``), its model and
    token counts recorded for the access log as the stream writer records a stream's."""
    body = await result.whole() if isinstance(result, ChunkStream) else result.body
    record_usage(request, body)
    return body
