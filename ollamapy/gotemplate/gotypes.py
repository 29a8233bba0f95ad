"""Go's view of template data: types, kinds, interfaces, pointers, typed nils.

Go templates behave differently on a value depending on its *static* Go type: a key
looked up in a ``map[string]any`` yields an interface value (and ``.a.b`` on a nil
interface is an error), a nil ``[]T`` prints ``[]`` while a nil named slice with a
``String()`` method prints what that method says, a missing key of a ``map[string]T``
gives the zero ``T``. To render byte for byte as Go does, the interpreter needs that
much of Go's type system, and this module supplies it:

* plain Python data maps to Go's dynamic JSON shapes: ``dict`` is
  ``map[string]interface {}``, ``list`` is ``[]interface {}``, ``str``/``int``/``float``/
  ``bool`` are ``string``/``int``/``float64``/``bool``, ``bytes`` is ``[]uint8``,
  dataclasses and pydantic models are structs whose fields are read by name;
* :class:`GoSlice`, :class:`GoMap`, :class:`GoStruct` and :class:`Ptr` carry a declared
  Go type where data has one (Ollama's types in :mod:`.values` are built on them).

Inside the interpreter a value is either :data:`INVALID` (Go's zero ``reflect.Value``),
an :class:`Iface` (a value held in an interface, possibly nil) or a concrete value.
Go methods of a type are Python methods named ``go_<Name>``; a ``marshal_json()``
method returning JSON text plays the part of Go's ``MarshalJSON``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "ANY",
    "BOOL",
    "BYTES",
    "COMPLEX128",
    "FLOAT64",
    "INT",
    "INVALID",
    "MAP_ANY",
    "REFLECT_VALUE",
    "SLICE_ANY",
    "STRING",
    "STRINGS",
    "UINT8",
    "Field",
    "GoMap",
    "GoSlice",
    "GoStruct",
    "GoType",
    "Iface",
    "Invalid",
    "Kind",
    "Ptr",
    "Uint8",
    "as_value",
    "find_method",
    "kind_of",
    "map_of",
    "ptr_to",
    "slice_of",
    "struct_fields",
    "type_of",
    "zero_of",
]


class Kind(enum.Enum):
    """The reflect.Kind values templates distinguish."""

    INVALID = "invalid"
    BOOL = "bool"
    INT = "int"
    UINT = "uint"
    FLOAT = "float"
    COMPLEX = "complex"
    STRING = "string"
    SLICE = "slice"
    MAP = "map"
    STRUCT = "struct"
    PTR = "ptr"
    INTERFACE = "interface"
    FUNC = "func"


@dataclass(frozen=True, eq=False)
class GoType:
    """A Go type: its ``reflect.Type.String()`` name, kind and element/key types."""

    name: str
    kind: Kind
    elem: GoType | None = None
    key: GoType | None = None
    struct: type | None = None  # the GoStruct subclass of a struct type

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoType) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


BOOL = GoType("bool", Kind.BOOL)
INT = GoType("int", Kind.INT)
UINT8 = GoType("uint8", Kind.UINT)
FLOAT64 = GoType("float64", Kind.FLOAT)
COMPLEX128 = GoType("complex128", Kind.COMPLEX)
STRING = GoType("string", Kind.STRING)
ANY = GoType("interface {}", Kind.INTERFACE)
BYTES = GoType("[]uint8", Kind.SLICE, elem=UINT8)
SLICE_ANY = GoType("[]interface {}", Kind.SLICE, elem=ANY)
MAP_ANY = GoType("map[string]interface {}", Kind.MAP, elem=ANY, key=STRING)
STRINGS = GoType("[]string", Kind.SLICE, elem=STRING)
REFLECT_VALUE = GoType("reflect.Value", Kind.STRUCT)  # parameter type of the builtins


def slice_of(elem: GoType, name: str | None = None) -> GoType:
    """``[]elem`` (or a named slice type)."""
    return GoType(name or f"[]{elem.name}", Kind.SLICE, elem=elem)


def map_of(key: GoType, elem: GoType, name: str | None = None) -> GoType:
    """``map[key]elem`` (or a named map type)."""
    return GoType(name or f"map[{key.name}]{elem.name}", Kind.MAP, elem=elem, key=key)


def ptr_to(elem: GoType) -> GoType:
    """``*elem``."""
    return GoType(f"*{elem.name}", Kind.PTR, elem=elem)


@dataclass(frozen=True)
class Field:
    """A struct field: Go name, declared type, JSON key (None: the Go name) and omitempty."""

    name: str
    type: GoType
    json: str | None = None
    omitempty: bool = False


class Invalid:
    """Go's zero ``reflect.Value``: no value at all (prints ``<no value>``)."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = Invalid()


@dataclass(frozen=True)
class Iface:
    """A value of interface type; ``value`` None is a nil interface."""

    value: Any
    type: GoType = ANY


@dataclass(frozen=True)
class Ptr:
    """A pointer of Go type ``go_type`` to ``target`` (None: a typed nil pointer)."""

    target: Any
    go_type: GoType


class Uint8(int):
    """A byte, as indexing a string or a ``[]byte`` yields it."""

    go_type: ClassVar[GoType] = UINT8


_NAMED: dict[str, type] = {}  # named slice/map types with methods, by Go type name


def _register_named(cls: type) -> None:
    go_type = cls.__dict__.get("GO_TYPE")
    if isinstance(go_type, GoType):
        _NAMED[go_type.name] = cls


class GoSlice(list):  # type: ignore[type-arg]  # elements of any Go type, as template data holds them
    """A list with a declared Go slice type; ``nil`` marks Go's nil slice.

    A subclass that sets ``GO_TYPE`` is a named slice type: its zero value is an
    instance of the subclass, so the type's methods (``String()``) still apply.
    """

    go_type: GoType

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_named(cls)

    def __init__(self, items: Iterable[Any] = (), go_type: GoType = SLICE_ANY, *, nil: bool = False) -> None:
        super().__init__(items)
        self.go_type = go_type
        self.nil = nil and not self


class GoMap(dict):  # type: ignore[type-arg]  # keys and values of any Go type
    """A dict with a declared Go map type; ``nil`` marks Go's nil map (see GoSlice)."""

    go_type: GoType

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_named(cls)

    def __init__(self, items: Any = (), go_type: GoType = MAP_ANY, *, nil: bool = False) -> None:
        super().__init__(items)
        self.go_type = go_type
        self.nil = nil and not self


class GoStruct:
    """Base of Go struct types: ``GO_NAME`` and ``GO_FIELDS`` declare the Go shape.

    Field values live in attributes named like the Go fields; a field left out of the
    constructor holds its Go zero value (None for nil pointers, slices, maps, interfaces).
    """

    GO_NAME: ClassVar[str] = ""
    GO_FIELDS: ClassVar[tuple[Field, ...]] = ()
    go_type: ClassVar[GoType]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.go_type = GoType(cls.GO_NAME, Kind.STRUCT, struct=cls)

    def __init__(self, **values: Any) -> None:
        names = {f.name for f in self.GO_FIELDS}
        unknown = set(values) - names
        if unknown:
            raise TypeError(f"{type(self).__name__} has no fields {sorted(unknown)}")
        for f in self.GO_FIELDS:
            setattr(self, f.name, values.get(f.name, _stored_zero(f.type)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.GO_FIELDS)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, f.name) == getattr(other, f.name) for f in self.GO_FIELDS
        )

    __hash__ = None  # type: ignore[assignment]  # unhashable, as Go structs with slices are; object's hash would disagree with __eq__


def _stored_zero(t: GoType) -> Any:
    """The zero value as stored in a struct field (None for every nillable kind)."""
    if t.kind in (Kind.SLICE, Kind.MAP, Kind.PTR, Kind.INTERFACE, Kind.FUNC):
        return None
    return _scalar_zero(t)


def _scalar_zero(t: GoType) -> Any:
    if t.kind == Kind.BOOL:
        return False
    if t.kind == Kind.INT:
        return 0
    if t.kind == Kind.UINT:
        return Uint8(0)
    if t.kind == Kind.FLOAT:
        return 0.0
    if t.kind == Kind.COMPLEX:
        return 0j
    if t.kind == Kind.STRING:
        return ""
    if t.kind == Kind.STRUCT and t.struct is not None:
        return t.struct()
    raise TypeError(f"no zero value for {t}")


def zero_of(t: GoType) -> Any:
    """Go's ``reflect.Zero(t)`` as an interpreter value."""
    if t.kind == Kind.INTERFACE:
        return Iface(None, t)
    named = _NAMED.get(t.name)
    if named is not None:
        return named(nil=True)
    if t.kind == Kind.SLICE:
        return GoSlice((), t, nil=True)
    if t.kind == Kind.MAP:
        return GoMap((), t, nil=True)
    if t.kind == Kind.PTR:
        return Ptr(None, t)
    return _scalar_zero(t)


def as_value(stored: Any, declared: GoType) -> Any:
    """An interpreter value for ``stored`` held in a slot of type ``declared``."""
    if declared.kind == Kind.INTERFACE:
        return Iface(stored, declared)
    if stored is None:
        return zero_of(declared)
    if declared.kind == Kind.PTR and not isinstance(stored, Ptr):
        return Ptr(stored, declared)
    if declared.kind in (Kind.SLICE, Kind.MAP) and type(stored) in (list, tuple, dict):
        named = _NAMED.get(declared.name)
        if named is not None:
            return named(stored)
        return GoSlice(stored, declared) if declared.kind == Kind.SLICE else GoMap(stored, declared)
    return stored


_dynamic_structs: dict[type, GoType] = {}


def _is_dataclass_instance(v: Any) -> bool:
    return dataclasses.is_dataclass(v) and not isinstance(v, type)


def _is_pydantic(v: Any) -> bool:
    return hasattr(type(v), "model_fields") and hasattr(v, "model_dump")


def struct_fields(v: Any) -> list[tuple[str, GoType]]:
    """The (name, declared type) of each field of a struct-kinded value, in order."""
    if isinstance(v, GoStruct):
        return [(f.name, f.type) for f in v.GO_FIELDS]
    if _is_dataclass_instance(v):
        return [(f.name, ANY) for f in dataclasses.fields(v)]
    if _is_pydantic(v):
        return [(name, ANY) for name in type(v).model_fields]
    return []


def type_of(v: Any) -> GoType:
    """The dynamic Go type of an interpreter value (``Iface`` answers its static type)."""
    if isinstance(v, Iface):
        return v.type
    go_type = getattr(v, "go_type", None)
    if isinstance(go_type, GoType):
        return go_type
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int):
        return INT
    if isinstance(v, float):
        return FLOAT64
    if isinstance(v, complex):
        return COMPLEX128
    if isinstance(v, str):
        return STRING
    if isinstance(v, (bytes, bytearray)):
        return BYTES
    if isinstance(v, (list, tuple)):
        return SLICE_ANY
    if isinstance(v, dict):
        return MAP_ANY
    if callable(v) and not isinstance(v, type):
        return GoType("func(...)", Kind.FUNC)
    cls = type(v)
    if cls not in _dynamic_structs:
        _dynamic_structs[cls] = GoType(f"main.{cls.__name__}", Kind.STRUCT)
    return _dynamic_structs[cls]


def kind_of(v: Any) -> Kind:
    """The reflect.Kind of an interpreter value."""
    if v is INVALID:
        return Kind.INVALID
    return type_of(v).kind


def find_method(v: Any, name: str) -> Any:
    """A bound Go method ``name`` of a concrete value, or None.

    Ollama's types spell methods ``go_<Name>``; dataclasses and pydantic models expose
    their own (non-field) callables by name.
    """
    if not name or isinstance(v, (Iface, Invalid)):
        return None
    if isinstance(v, Ptr):
        return None if v.target is None else find_method(v.target, name)
    method = getattr(v, f"go_{name}", None)
    if callable(method):
        return method
    if (_is_dataclass_instance(v) or _is_pydantic(v)) and name not in dict(struct_fields(v)) and not name.startswith("_"):
        attr = getattr(v, name, None)
        if callable(attr):
            return attr
    return None
