"""Go's ``encoding/json.Marshal`` for interpreter values.

Ollama's ``json`` template function and the ``String()`` methods of its tool types are
``json.Marshal``, so their output must be Go's byte for byte: compact, map keys sorted,
struct fields in declaration order with their tags and ``omitempty``, ``[]byte`` as
base64, ``<``/``>``/``&`` and U+2028/U+2029 escaped, floats formatted as ES6 numbers.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from .gofmt import elements, format_float, go_bytes, go_string, map_items
from .gotypes import (
    INVALID,
    Iface,
    Kind,
    Ptr,
    as_value,
    kind_of,
    struct_fields,
    type_of,
)

__all__ = ["JSONError", "marshal"]


class JSONError(ValueError):
    """A value ``encoding/json`` refuses (NaN, infinities, functions, complex numbers)."""


_SHORT = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(s: str) -> str:
    out = ['"']
    for ch in go_string(s):
        code = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif code < 0x20 or ch in "<>&" or ch in "\u2028\u2029":
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code < 0xE000:  # an invalid byte
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise JSONError(f"json: unsupported value: {format_float(f, 'g', -1)}")
    a = abs(f)
    fmt = "e" if a != 0 and (a < 1e-6 or a >= 1e21) else "f"
    s = format_float(f, fmt, -1)
    if fmt == "e" and len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
        s = s[:-2] + s[-1]
    return s


def _is_empty(v: Any) -> bool:
    """Go's ``isEmptyValue`` for ``omitempty``."""
    k = kind_of(v)
    if k == Kind.INTERFACE:
        return v.value is None
    if k == Kind.PTR:
        return isinstance(v, Ptr) and v.target is None
    if k in (Kind.SLICE, Kind.MAP, Kind.STRING):
        return len(v) == 0
    if k in (Kind.BOOL, Kind.INT, Kind.UINT, Kind.FLOAT, Kind.COMPLEX):
        return not v
    return False


def _encode(v: Any, out: list[str]) -> None:
    if isinstance(v, Iface):
        v = v.value
    if v is None or v is INVALID:
        out.append("null")
        return
    if isinstance(v, Ptr):
        if v.target is None:
            out.append("null")
            return
        v = v.target
    marshaler = getattr(v, "marshal_json", None)
    if callable(marshaler):
        out.append(marshaler())
        return
    k = kind_of(v)
    if k == Kind.BOOL:
        out.append("true" if v else "false")
    elif k in (Kind.INT, Kind.UINT):
        out.append(str(int(v)))
    elif k == Kind.FLOAT:
        out.append(_float(float(v)))
    elif k == Kind.STRING:
        out.append(_string(str(v)))
    elif k == Kind.SLICE:
        if getattr(v, "nil", False):
            out.append("null")
        elif type_of(v).elem is not None and type_of(v).elem.kind == Kind.UINT:  # type: ignore[union-attr]
            out.append('"' + base64.b64encode(bytes(v)).decode("ascii") + '"')
        else:
            out.append("[")
            for i, item in enumerate(elements(v)):
                if i:
                    out.append(",")
                _encode(item, out)
            out.append("]")
    elif k == Kind.MAP:
        if getattr(v, "nil", False):
            out.append("null")
            return
        pairs = [(str(key) if not isinstance(key, str) else key, val) for key, val in map_items(v)]
        out.append("{")
        for i, (key, val) in enumerate(sorted(pairs, key=lambda kv: go_bytes(kv[0]))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(val, out)
        out.append("}")
    elif k == Kind.STRUCT:
        _encode_struct(v, out)
    else:
        raise JSONError(f"json: unsupported type: {type_of(v).name}")


def _encode_struct(v: Any, out: list[str]) -> None:
    specs = {f.name: f for f in getattr(v, "GO_FIELDS", ())}
    out.append("{")
    first = True
    for name, declared in struct_fields(v):
        value = as_value(getattr(v, name), declared)
        spec = specs.get(name)
        if spec is not None and spec.omitempty and _is_empty(value):
            continue
        if not first:
            out.append(",")
        first = False
        out.append(_string(spec.json if spec is not None and spec.json else name))
        out.append(":")
        _encode(value, out)
    out.append("}")


def marshal(v: Any) -> str:
    """``json.Marshal(v)`` as a string; raises :class:`JSONError` where Go errors."""
    out: list[str] = []
    _encode(v, out)
    return "".join(out)
