"""Go's ``encoding/json.Marshal`` for interpreter values.

Ollama's ``json`` template function and the ``String()`` methods of its tool types are
``json.Marshal``, so their output must be Go's byte for byte: compact, map keys sorted,
struct fields in declaration order with their tags and ``omitempty``, ``[]byte`` as
base64. Strings and numbers are encoded by :mod:`ollamapy.golang.jsonenc`, which the rest
of ollamapy shares; this module adds the interpreter's kinds (structs, pointers, maps of
interface values).
"""

from __future__ import annotations

import base64
from typing import Any

from ollamapy.golang import MarshalError as JSONError
from ollamapy.golang import format_number, go_bytes, quote_string

from .gofmt import elements, map_items
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
        out.append(format_number(float(v)))
    elif k == Kind.STRING:
        out.append(quote_string(str(v)))
    elif k == Kind.SLICE:
        if getattr(v, "nil", False):
            out.append("null")
        elif (elem := type_of(v).elem) is not None and elem.kind == Kind.UINT:
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
            out.append(quote_string(key))
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
        out.append(quote_string(spec.json if spec is not None and spec.json else name))
        out.append(":")
        _encode(value, out)
    out.append("}")


def marshal(v: Any) -> str:
    """``json.Marshal(v)`` as a string; raises :class:`JSONError` where Go errors."""
    out: list[str] = []
    _encode(v, out)
    return "".join(out)
