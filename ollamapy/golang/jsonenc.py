"""Go's ``encoding/json`` output for Python values, byte for byte.

Ollama writes JSON with Go's encoder, which differs from :func:`json.dumps`: it escapes
``<``, ``>``, ``&``, U+2028 and U+2029 (``\\u003c``), writes each invalid UTF-8 byte as
``\\ufffd``, prints floats in ES6 style (``1e-7``, ``0.000001``, ``100000000000000000000``,
never ``1e+20``) and refuses NaN and infinities. Content-addressed blobs (manifests,
config) must hash the same as Ollama's, and the CLI shows tool-call arguments and
embeddings as Go marshals them, so those go through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ollamapy.golang.strconv import format_float, to_float32
from ollamapy.golang.utf8 import go_bytes, go_string

__all__ = ["MarshalError", "format_number", "marshal", "quote_string"]


class MarshalError(ValueError):
    """A value ``encoding/json`` refuses; ``str()`` is Go's message (``json: unsupported value: NaN``)."""


_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote_string(s: str) -> str:
    """A JSON string literal as ``json.Marshal`` writes a Go string (HTML-safe escaping)."""
    out = ['"']
    for ch in go_string(s):
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x20 or ch in "<>&\u2028\u2029":
            out.append(f"\\u{code:04x}")
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid byte
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_number(f: float, bitsize: int = 64) -> str:
    """A float64 (or float32 with ``bitsize=32``) as ``json.Marshal`` writes it.

    Shortest digits; exponent form only below 1e-6 or from 1e21, with a one-digit
    negative exponent not zero-padded (``1e-7``). Raises :class:`MarshalError` for NaN
    and infinities, as Go does.
    """
    if bitsize == 32:
        f = to_float32(f)
    if math.isnan(f) or math.isinf(f):
        raise MarshalError(f"json: unsupported value: {format_float(f, 'g', -1, bitsize)}")
    a = abs(f)
    if bitsize == 32:  # Go compares as float32, against the constants rounded to float32
        exponent_form = a < to_float32(1e-6) or a >= to_float32(1e21)
    else:
        exponent_form = a < 1e-6 or a >= 1e21
    fmt = "e" if a != 0 and exponent_form else "f"
    s = format_float(f, fmt, -1, bitsize)
    if fmt == "e" and len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
        s = s[:-2] + s[-1]
    return s


def _encode(value: Any, out: list[str], sort_keys: bool) -> None:
    if value is None:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, str):
        out.append(quote_string(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, sort_keys)
        out.append("]")
    elif isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
        if sort_keys:
            items.sort(key=lambda kv: go_bytes(kv[0]))
        out.append("{")
        for i, (key, item) in enumerate(items):
            if i:
                out.append(",")
            out.append(quote_string(key))
            out.append(":")
            _encode(item, out, sort_keys)
        out.append("}")
    else:
        raise MarshalError(f"json: unsupported type: {type(value).__name__}")


def marshal(value: Any, *, sort_keys: bool = True) -> str:
    """``json.Marshal`` of a JSON-shaped Python value (dict, list, str, int, float, bool, None).

    A dict is a Go map, whose keys Go sorts (by bytes); pass ``sort_keys=False`` when the
    dicts stand for Go structs, whose fields keep their declared (insertion) order.
    Python ints are Go integers and floats are float64s.
    """
    out: list[str] = []
    _encode(value, out, sort_keys)
    return "".join(out)
