"""The functions a template can call: Go's builtins and Ollama's additions.

Each function carries a Go signature (:class:`GoFunc`) because the interpreter, like
Go's, checks argument counts and types against it and converts literal arguments by the
declared parameter type (``printf 3`` fails with ``expected string; found 3``). Builtins
take raw interpreter values (Go's ``reflect.Value`` parameters) and port Go's
text/template/funcs.go; Ollama's ``json``, ``currentDate``, ``yesterdayDate`` and
``toTypeScriptType`` follow its template/template.go.
"""

from __future__ import annotations

import datetime
import inspect
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ollamapy.golang import go_bytes, is_print

from .gofmt import elements, go_len, sprint, sprintf, sprintln
from .gojson import JSONError, marshal
from .gotypes import (
    ANY,
    INVALID,
    REFLECT_VALUE,
    STRING,
    GoSlice,
    GoType,
    Iface,
    Kind,
    Ptr,
    Uint8,
    as_value,
    kind_of,
    struct_fields,
    type_of,
    zero_of,
)
from .values import ToolProperty

__all__ = [
    "BUILTINS",
    "FuncError",
    "GoFunc",
    "indirect",
    "indirect_interface",
    "is_true",
    "method_func",
    "ollama_funcs",
    "printable_value",
    "truth",
]


class FuncError(Exception):
    """The error a called function returned; execution reports ``error calling NAME: …``."""


@dataclass(frozen=True)
class GoFunc:
    """A callable with a Go signature: parameter types, the last one variadic if so."""

    name: str
    params: tuple[GoType, ...]
    variadic: bool
    impl: Callable[..., Any]

    @property
    def num_in(self) -> int:
        return len(self.params)

    def param(self, i: int) -> GoType:
        """The type of argument ``i`` (the element type for variadic extras)."""
        if self.variadic and i >= len(self.params) - 1:
            return self.params[-1]
        return self.params[i]


# --- reflection helpers ----------------------------------------------------------------


def indirect(v: Any) -> tuple[Any, bool]:
    """Go's ``indirect``: follow pointers and interfaces; report a nil on the way."""
    while True:
        if isinstance(v, Iface):
            if v.value is None:
                return v, True
            v = v.value
        elif isinstance(v, Ptr):
            if v.target is None:
                return v, True
            v = v.target
        else:
            return v, False


def indirect_interface(v: Any) -> Any:
    """The concrete value inside an interface value (INVALID for a nil interface)."""
    if isinstance(v, Iface):
        return INVALID if v.value is None else v.value
    return v


def is_true(v: Any) -> tuple[bool, bool]:
    """Go's ``isTrue``: (truth, whether the value has a truth value)."""
    k = kind_of(v)
    if k == Kind.INVALID:
        return False, True
    if k in (Kind.SLICE, Kind.MAP, Kind.STRING):
        return go_len(v) > 0, True
    if k == Kind.BOOL:
        return bool(v), True
    if k in (Kind.INT, Kind.UINT, Kind.FLOAT, Kind.COMPLEX):
        return v != 0, True
    if k == Kind.PTR:
        return isinstance(v, Ptr) and v.target is not None, True
    if k == Kind.INTERFACE:
        return v.value is not None, True
    if k == Kind.FUNC:
        return True, True
    if k == Kind.STRUCT:
        return True, True
    return False, False


def truth(v: Any) -> bool:
    """The truth of a value as ``and``, ``or``, ``not`` and ``if`` see it."""
    return is_true(indirect_interface(v))[0]


def printable_value(v: Any) -> tuple[Any, bool]:
    """Go's ``printableValue``: what ``fmt`` should print for ``v`` (or not printable)."""
    if isinstance(v, Ptr):
        v, _ = indirect(v)
    if v is INVALID:
        return "<no value>", True
    if kind_of(v) == Kind.FUNC:
        return None, False
    return v, True


def _type_name(v: Any) -> str:
    if v is INVALID:
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    return type_of(v).name


# --- builtins ----------------------------------------------------------------------


def _not(arg: Any) -> bool:
    return not truth(arg)


def _len(item: Any) -> int:
    item, is_nil = indirect(item)
    if is_nil:
        raise FuncError("len of nil pointer")
    if kind_of(item) in (Kind.SLICE, Kind.MAP, Kind.STRING):
        return go_len(item)
    raise FuncError(f"len of type {_type_name(item)}")


def _index_arg(index: Any, cap: int) -> int:
    k = kind_of(index)
    if k in (Kind.INT, Kind.UINT):
        x = int(index)
    elif k == Kind.INVALID:
        raise FuncError("cannot index slice/array with nil")
    else:
        raise FuncError(f"cannot index slice/array with type {type_of(index).name}")
    if x < 0 or x > cap:
        raise FuncError(f"index out of range: {x}")
    return x


def _index(item: Any, *indexes: Any) -> Any:
    item = indirect_interface(item)
    if item is INVALID:
        raise FuncError("index of untyped nil")
    for index in indexes:
        index = indirect_interface(index)
        item, is_nil = indirect(item)
        if is_nil:
            raise FuncError("index of nil pointer")
        k = kind_of(item)
        if k in (Kind.SLICE, Kind.STRING):
            n = go_len(item)
            x = _index_arg(index, n)
            if x == n:
                raise FuncError("reflect: slice index out of range" if k == Kind.SLICE else "reflect: string index out of range")
            item = Uint8(go_bytes(item)[x]) if k == Kind.STRING else elements(item)[x]
        elif k == Kind.MAP:
            t = type_of(item)
            assert t.key is not None and t.elem is not None
            key = _prepare_arg(index, t.key)
            if key in item:
                item = as_value(item[key], t.elem)
            else:
                item = zero_of(t.elem)
        else:
            raise FuncError(f"can't index item of type {type_of(item).name}")
    return item


def _prepare_arg(value: Any, arg_type: GoType) -> Any:
    if value is INVALID:
        if arg_type.kind in (Kind.INTERFACE, Kind.MAP, Kind.SLICE, Kind.PTR, Kind.FUNC):
            return None
        raise FuncError(f"value is nil; should be of type {arg_type.name}")
    vt = type_of(value)
    if vt == arg_type or arg_type.kind == Kind.INTERFACE:
        return value
    if vt.kind in (Kind.INT, Kind.UINT) and arg_type.kind in (Kind.INT, Kind.UINT):
        return int(value)
    raise FuncError(f"value has type {vt.name}; should be {arg_type.name}")


def _slice(item: Any, *indexes: Any) -> Any:
    item = indirect_interface(item)
    if item is INVALID:
        raise FuncError("slice of untyped nil")
    item, is_nil = indirect(item)
    if is_nil:
        raise FuncError("slice of nil pointer")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    k = kind_of(item)
    if k == Kind.STRING:
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
    elif k != Kind.SLICE:
        raise FuncError(f"can't slice item of type {type_of(item).name}")
    cap = go_len(item)
    idx = [0, cap, 0]
    for i, index in enumerate(indexes):
        idx[i] = _index_arg(index, cap)  # Go's slice does not look inside interfaces here
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    if k == Kind.STRING:
        return go_bytes(item)[idx[0] : idx[1]].decode("utf-8", "surrogateescape")
    if isinstance(item, (bytes, bytearray)):
        return type(item)(item[idx[0] : idx[1]])
    return GoSlice(item[idx[0] : idx[1]], type_of(item))


_BASIC = {
    Kind.BOOL: "bool",
    Kind.INT: "int",
    Kind.UINT: "uint",
    Kind.FLOAT: "float",
    Kind.COMPLEX: "complex",
    Kind.STRING: "string",
}


def _basic_kind(v: Any) -> str | None:
    return _BASIC.get(kind_of(v))


def _is_nil(v: Any) -> bool:
    if v is INVALID:
        return True
    if isinstance(v, Ptr):
        return v.target is None
    if isinstance(v, Iface):
        return v.value is None
    return bool(getattr(v, "nil", False))


def _eq(arg1: Any, *arg2: Any) -> bool:
    arg1 = indirect_interface(arg1)
    if not arg2:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in arg2:
        arg = indirect_interface(arg)
        k2 = _basic_kind(arg)
        result = False
        if k1 != k2:
            if k1 == "int" and k2 == "uint":
                result = arg1 >= 0 and arg1 == arg
            elif k1 == "uint" and k2 == "int":
                result = arg >= 0 and arg1 == arg
            elif arg1 is not INVALID and arg is not INVALID:
                raise FuncError(f"incompatible types for comparison: {type_of(arg1).name} and {type_of(arg).name}")
        elif k1 is not None:
            result = arg1 == arg
        else:
            if kind_of(arg1) != kind_of(arg) and arg1 is not INVALID and arg is not INVALID:
                raise FuncError(
                    f"non-comparable types {sprintf('%s', [arg1])}: {_type_name(arg1)}, "
                    f"{_type_name(arg)}: {sprintf('%v', [arg])}"
                )
            if _is_nil(arg1) or _is_nil(arg):
                result = _is_nil(arg) == _is_nil(arg1)
            else:
                if kind_of(arg) in (Kind.SLICE, Kind.MAP, Kind.FUNC):
                    raise FuncError(f"non-comparable type {sprintf('%s', [arg])}: {_type_name(arg)}")
                if type_of(arg1) != type_of(arg):
                    result = False
                elif isinstance(arg1, Ptr):
                    result = arg1.target is arg.target
                elif kind_of(arg1) == Kind.STRUCT and _has_uncomparable_field(arg1):
                    raise FuncError(f"runtime error: comparing uncomparable type {_type_name(arg1)}")
                else:
                    result = arg1 is arg or arg1 == arg
        if result:
            return True
    return False


def _has_uncomparable_field(v: Any) -> bool:
    return any(t.kind in (Kind.SLICE, Kind.MAP, Kind.FUNC) for _, t in struct_fields(v))


def _ne(arg1: Any, arg2: Any) -> bool:
    return not _eq(arg1, arg2)


def _lt(arg1: Any, arg2: Any) -> bool:
    arg1 = indirect_interface(arg1)
    k1 = _basic_kind(arg1)
    if k1 is None:
        raise FuncError("invalid type for comparison")
    arg2 = indirect_interface(arg2)
    k2 = _basic_kind(arg2)
    if k2 is None:
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        if k1 == "int" and k2 == "uint":
            return bool(arg1 < 0 or arg1 < arg2)
        if k1 == "uint" and k2 == "int":
            return bool(arg2 >= 0 and arg1 < arg2)
        raise FuncError(f"incompatible types for comparison: {type_of(arg1).name} and {type_of(arg2).name}")
    if k1 in ("bool", "complex"):
        raise FuncError("invalid type for comparison")
    if k1 == "string":
        return go_bytes(arg1) < go_bytes(arg2)
    return bool(arg1 < arg2)


def _le(arg1: Any, arg2: Any) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


def _gt(arg1: Any, arg2: Any) -> bool:
    return not _le(arg1, arg2)


def _ge(arg1: Any, arg2: Any) -> bool:
    return not _lt(arg1, arg2)


def _eval_args(args: tuple[Any, ...]) -> str:
    """Go's ``evalArgs``: Sprint of the args, each made printable as templates print it."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    printable = []
    for a in args:
        value, ok = printable_value(INVALID if a is None else a)
        printable.append(value if ok else a)
    return sprint(printable)


def _html(*args: Any) -> str:
    s = _eval_args(args)
    table = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
    return "".join(table.get(c, c) for c in s)


def _js(*args: Any) -> str:
    s = _eval_args(args)
    out = []
    table = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}
    for c in s:
        code = ord(c)
        if c in table:
            out.append(table[c])
        elif code < 0x20:
            out.append(f"\\u00{code:02X}")
        elif code < 0x80 or 0xD800 <= code < 0xE000 or is_print(c):
            out.append(c)
        else:
            out.append(f"\\u{code:04X}")
    return "".join(out)


def _urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(go_bytes(_eval_args(args)), safe="-_.~")


def _print(*args: Any) -> str:
    return sprint(list(args))


def _printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, list(args))


def _println(*args: Any) -> str:
    return sprintln(list(args))


def _call(fn: Any, *args: Any) -> Any:
    raise AssertionError("call is evaluated by the interpreter")  # pragma: no cover


def _logic(arg0: Any, *args: Any) -> Any:
    raise AssertionError("and/or are evaluated by the interpreter")  # pragma: no cover


_RV = REFLECT_VALUE
BUILTINS: dict[str, GoFunc] = {
    "and": GoFunc("and", (_RV, _RV), True, _logic),
    "call": GoFunc("call", (_RV, _RV), True, _call),
    "html": GoFunc("html", (ANY,), True, _html),
    "index": GoFunc("index", (_RV, _RV), True, _index),
    "slice": GoFunc("slice", (_RV, _RV), True, _slice),
    "js": GoFunc("js", (ANY,), True, _js),
    "len": GoFunc("len", (_RV,), False, _len),
    "not": GoFunc("not", (_RV,), False, _not),
    "or": GoFunc("or", (_RV, _RV), True, _logic),
    "print": GoFunc("print", (ANY,), True, _print),
    "printf": GoFunc("printf", (STRING, ANY), True, _printf),
    "println": GoFunc("println", (ANY,), True, _println),
    "urlquery": GoFunc("urlquery", (ANY,), True, _urlquery),
    "eq": GoFunc("eq", (_RV, _RV), True, _eq),
    "ge": GoFunc("ge", (_RV, _RV), False, _ge),
    "gt": GoFunc("gt", (_RV, _RV), False, _gt),
    "le": GoFunc("le", (_RV, _RV), False, _le),
    "lt": GoFunc("lt", (_RV, _RV), False, _lt),
    "ne": GoFunc("ne", (_RV, _RV), False, _ne),
}


# --- Ollama's functions --------------------------------------------------------------


def _json(v: Any) -> str:
    try:
        return marshal(v)
    except JSONError:
        return ""


def _to_typescript_type(v: Any) -> str:
    if isinstance(v, ToolProperty):
        return v.go_ToTypeScriptType()
    if isinstance(v, Ptr) and isinstance(v.target, ToolProperty):
        return v.target.go_ToTypeScriptType()
    return "any"


def ollama_funcs(today: Callable[[], datetime.date]) -> dict[str, GoFunc]:
    """Ollama's template functions, with ``today`` as the clock of the date functions."""

    def current_date(*_args: str) -> str:
        return today().isoformat()

    def yesterday_date(*_args: str) -> str:
        return (today() - datetime.timedelta(days=1)).isoformat()

    return {
        "json": GoFunc("json", (ANY,), False, _json),
        "currentDate": GoFunc("currentDate", (STRING,), True, current_date),
        "yesterdayDate": GoFunc("yesterdayDate", (STRING,), True, yesterday_date),
        "toTypeScriptType": GoFunc("toTypeScriptType", (ANY,), False, _to_typescript_type),
    }


def method_func(name: str, method: Callable[..., Any]) -> GoFunc:
    """A bound method as a GoFunc: each positional parameter an ``any``, ``*args`` variadic."""
    params: list[GoType] = []
    variadic = False
    for p in inspect.signature(method).parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            variadic = True
            params.append(ANY)
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            params.append(ANY)
    return GoFunc(name, tuple(params), variadic, method)

