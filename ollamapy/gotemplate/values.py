"""The Ollama types a template sees, and builders for them from API-shaped data.

Ollama does not hand templates its API structs directly: it converts messages, tool
calls and tools into template-facing types (``template.templateMessage``,
``templateToolCall``, ``templateArgs``, ``templateTools``, ``templateProperties``, and
``api.ToolProperty`` with its ``PropertyType``). Some print as JSON through a
``String()`` method — the tool list, tool-call arguments, property maps — so
``{{ .Function.Arguments }}`` renders ``{"city":"Paris"}``, while still allowing field
access and ``range``. This module defines those types on the Go model of
:mod:`.gotypes` and :func:`template_messages` / :func:`template_tools` to build them.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from .gojson import marshal
from .gotypes import (
    ANY,
    INT,
    SLICE_ANY,
    STRING,
    STRINGS,
    UINT8,
    Field,
    GoMap,
    GoSlice,
    GoStruct,
    GoType,
    Kind,
    Ptr,
    map_of,
    ptr_to,
    slice_of,
)

__all__ = [
    "ImageData",
    "PropertyType",
    "TemplateArgs",
    "TemplateMessage",
    "TemplateProperties",
    "TemplateTool",
    "TemplateToolCall",
    "TemplateToolCallFunction",
    "TemplateToolFunction",
    "TemplateToolFunctionParameters",
    "TemplateTools",
    "ToolPropertiesMap",
    "ToolProperty",
    "json_value",
    "template_messages",
    "template_tools",
    "typescript_type",
]


def json_value(v: Any) -> Any:
    """``v`` as Go's ``encoding/json`` decodes it into ``any``: every number a float64."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, Mapping):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    return v


class ImageData(bytes):
    """``api.ImageData``: raw image bytes (base64 in JSON)."""

    go_type: ClassVar[GoType] = GoType("api.ImageData", Kind.SLICE, elem=UINT8)


IMAGES = slice_of(ImageData.go_type)


class PropertyType(GoSlice):
    """``api.PropertyType``: a JSON-schema type, one name or several."""

    GO_TYPE: ClassVar[GoType] = GoType("api.PropertyType", Kind.SLICE, elem=STRING)

    def __init__(self, items: Iterable[str] = (), *, nil: bool = False) -> None:
        super().__init__(items, self.GO_TYPE, nil=nil)

    def go_String(self) -> str:
        """One name as itself, several as Go prints a ``[]string``."""
        if not self:
            return ""
        if len(self) == 1:
            return str(self[0])
        return "[" + " ".join(self) + "]"

    def marshal_json(self) -> str:
        """A single type marshals as a string, several as an array."""
        return marshal(self[0] if len(self) == 1 else GoSlice(self, STRINGS, nil=self.nil))


class ToolPropertiesMap(GoStruct):
    """``api.ToolPropertiesMap`` (held by pointer): properties in insertion order.

    Go keeps them in an unexported field, so templates cannot reach them by name; the
    map marshals as a JSON object in insertion order.
    """

    GO_NAME = "api.ToolPropertiesMap"

    def __init__(self, items: Mapping[str, ToolProperty] | None = None) -> None:
        super().__init__()
        self.items: dict[str, ToolProperty] = dict(items or {})

    def go_Len(self) -> int:
        """The number of properties."""
        return len(self.items)

    def marshal_json(self) -> str:
        """The properties as a JSON object in insertion order."""
        return "{" + ",".join(marshal(k) + ":" + marshal(v) for k, v in self.items.items()) + "}"

    def __repr__(self) -> str:
        return f"ToolPropertiesMap({self.items!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToolPropertiesMap) and other.items == self.items


class ToolProperty(GoStruct):
    """``api.ToolProperty``: one JSON-schema property of a tool parameter."""

    GO_NAME = "api.ToolProperty"
    AnyOf: list[ToolProperty] | None
    Type: PropertyType | None

    def go_ToTypeScriptType(self) -> str:
        """The property's TypeScript type, as Ollama's ``toTypeScriptType`` prints it."""
        if self.AnyOf:
            return " | ".join(p.go_ToTypeScriptType() for p in self.AnyOf)
        if not self.Type:
            return "any"
        return " | ".join(_TS_TYPES.get(t, "any") for t in self.Type)


_TS_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}

ToolProperty.GO_FIELDS = (
    Field("AnyOf", slice_of(ToolProperty.go_type), "anyOf", True),
    Field("Type", PropertyType.GO_TYPE, "type", True),
    Field("Items", ANY, "items", True),
    Field("Description", STRING, "description", True),
    Field("Enum", SLICE_ANY, "enum", True),
    Field("Properties", ptr_to(ToolPropertiesMap.go_type), "properties", True),
    Field("Required", STRINGS, "required", True),
)


class _JSONStringer(GoMap):
    """A named map type whose ``String()`` is its JSON (``{}`` when nil)."""

    GO_TYPE: ClassVar[GoType]

    def __init__(self, items: Any = (), *, nil: bool = False) -> None:
        super().__init__(items, self.GO_TYPE, nil=nil)

    def go_String(self) -> str:
        """The map as compact JSON with sorted keys, ``{}`` for a nil map."""
        return "{}" if self.nil else marshal(self)


class TemplateArgs(_JSONStringer):
    """``template.templateArgs``: tool-call arguments that print as JSON."""

    GO_TYPE = map_of(STRING, ANY, "template.templateArgs")


class TemplateProperties(_JSONStringer):
    """``template.templateProperties``: a tool's parameter properties, printing as JSON."""

    GO_TYPE = map_of(STRING, ToolProperty.go_type, "template.templateProperties")


class TemplateToolCallFunction(GoStruct):
    """``template.templateToolCallFunction``."""

    GO_NAME = "template.templateToolCallFunction"
    GO_FIELDS = (Field("Index", INT), Field("Name", STRING), Field("Arguments", TemplateArgs.GO_TYPE))


class TemplateToolCall(GoStruct):
    """``template.templateToolCall``."""

    GO_NAME = "template.templateToolCall"
    GO_FIELDS = (Field("ID", STRING), Field("Function", TemplateToolCallFunction.go_type))


class TemplateMessage(GoStruct):
    """``template.templateMessage``: one (collated) chat message as templates see it."""

    GO_NAME = "template.templateMessage"
    GO_FIELDS = (
        Field("Role", STRING),
        Field("Content", STRING),
        Field("Thinking", STRING),
        Field("Images", IMAGES),
        Field("ToolCalls", slice_of(TemplateToolCall.go_type)),
        Field("ToolName", STRING),
        Field("ToolCallID", STRING),
    )


MESSAGES = slice_of(ptr_to(TemplateMessage.go_type))


class TemplateToolFunctionParameters(GoStruct):
    """``template.templateToolFunctionParameters``."""

    GO_NAME = "template.templateToolFunctionParameters"
    GO_FIELDS = (
        Field("Type", STRING, "type"),
        Field("Defs", ANY, "$defs", True),
        Field("Items", ANY, "items", True),
        Field("Required", STRINGS, "required", True),
        Field("Properties", TemplateProperties.GO_TYPE, "properties"),
    )


class TemplateToolFunction(GoStruct):
    """``template.templateToolFunction``."""

    GO_NAME = "template.templateToolFunction"
    GO_FIELDS = (
        Field("Name", STRING, "name"),
        Field("Description", STRING, "description"),
        Field("Parameters", TemplateToolFunctionParameters.go_type, "parameters"),
    )


class TemplateTool(GoStruct):
    """``template.templateTool``: one tool, printing as its JSON as ``api.Tool`` does."""

    GO_NAME = "template.templateTool"
    GO_FIELDS = (
        Field("Type", STRING, "type"),
        Field("Items", ANY, "items", True),
        Field("Function", TemplateToolFunction.go_type, "function"),
    )

    def go_String(self) -> str:
        """The tool as compact JSON (``{{ range .Tools }}{{ . }}{{ end }}``)."""
        return marshal(self)


class TemplateTools(GoSlice):
    """``template.templateTools``: the tool list, printing as JSON (``null`` when nil)."""

    GO_TYPE: ClassVar[GoType] = slice_of(TemplateTool.go_type, "template.templateTools")

    def __init__(self, items: Iterable[TemplateTool] = (), *, nil: bool = False) -> None:
        super().__init__(items, self.GO_TYPE, nil=nil)

    def go_String(self) -> str:
        """The tools as compact JSON."""
        return marshal(self)


# --- building them from API-shaped data ---------------------------------------------


def _mapping(obj: Any) -> Mapping[str, Any]:
    """An API object as its JSON-shaped mapping (dicts pass through)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return obj
    if hasattr(obj, "model_dump"):
        return dict(obj.model_dump(by_alias=True, exclude_none=True))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"expected a mapping, got {type(obj).__name__}")


def _image(img: Any) -> ImageData:
    if isinstance(img, (bytes, bytearray)):
        return ImageData(img)
    return ImageData(base64.b64decode(str(img)))


def _arguments(args: Any) -> TemplateArgs:
    if args is None:
        return TemplateArgs(nil=True)
    return TemplateArgs({str(k): json_value(v) for k, v in _mapping(args).items()})


def _tool_call(call: Any) -> TemplateToolCall:
    c = _mapping(call)
    fn = _mapping(c.get("function"))
    return TemplateToolCall(
        ID=c.get("id") or "",
        Function=TemplateToolCallFunction(
            Index=int(fn.get("index") or 0),
            Name=fn.get("name") or "",
            Arguments=_arguments(fn.get("arguments")),
        ),
    )


def _message(msg: Any) -> Ptr:
    m = _mapping(msg)
    images = m.get("images")
    calls = m.get("tool_calls")
    message = TemplateMessage(
        Role=m.get("role") or "",
        Content=m.get("content") or "",
        Thinking=m.get("thinking") or "",
        Images=GoSlice([_image(i) for i in images], IMAGES) if images else None,
        ToolCalls=GoSlice([_tool_call(c) for c in calls], slice_of(TemplateToolCall.go_type)) if calls else None,
        ToolName=m.get("tool_name") or "",
        ToolCallID=m.get("tool_call_id") or "",
    )
    return Ptr(message, ptr_to(TemplateMessage.go_type))


def template_messages(messages: Iterable[Any] | None) -> GoSlice:
    """Messages (API dicts or models) as the ``[]*template.templateMessage`` Ollama renders.

    None gives Go's nil slice. Tool-call arguments become :class:`TemplateArgs` with
    every number a float64, as Ollama decodes them.
    """
    if messages is None:
        return GoSlice((), MESSAGES, nil=True)
    return GoSlice([_message(m) for m in messages], MESSAGES)


def _property(prop: Any) -> ToolProperty:
    p = _mapping(prop)
    any_of = p.get("anyOf", p.get("any_of"))
    typ = p.get("type")
    enum_ = p.get("enum")
    props = p.get("properties")
    required = p.get("required")
    return ToolProperty(
        AnyOf=GoSlice([_property(x) for x in any_of], slice_of(ToolProperty.go_type)) if any_of else None,
        Type=PropertyType([typ] if isinstance(typ, str) else typ) if typ is not None else None,
        Items=json_value(p.get("items")),
        Description=p.get("description") or "",
        Enum=[json_value(x) for x in enum_] if enum_ else None,
        Properties=ToolPropertiesMap({k: _property(v) for k, v in _mapping(props).items()}) if props is not None else None,
        Required=GoSlice(required, STRINGS) if required else None,
    )


def _tool(tool: Any) -> TemplateTool:
    t = _mapping(tool)
    fn = _mapping(t.get("function"))
    params = _mapping(fn.get("parameters"))
    props = params.get("properties")
    required = params.get("required")
    return TemplateTool(
        Type=t.get("type") or "",
        Items=json_value(t.get("items")),
        Function=TemplateToolFunction(
            Name=fn.get("name") or "",
            Description=fn.get("description") or "",
            Parameters=TemplateToolFunctionParameters(
                Type=params.get("type") or "",
                Defs=json_value(params.get("$defs", params.get("defs"))),
                Items=json_value(params.get("items")),
                Required=GoSlice(required, STRINGS) if required else None,
                Properties=(
                    TemplateProperties({k: _property(v) for k, v in _mapping(props).items()})
                    if props is not None
                    else TemplateProperties(nil=True)
                ),
            ),
        ),
    )


def template_tools(tools: Iterable[Any] | None) -> TemplateTools:
    """Tools (API dicts or models) as the ``template.templateTools`` Ollama renders.

    None gives the nil list, which prints as ``null``; property maps print with sorted
    keys at the top level and in insertion order below, as Ollama's do.
    """
    if tools is None:
        return TemplateTools(nil=True)
    return TemplateTools([_tool(t) for t in tools])


def typescript_type(prop: Any) -> str:
    """A tool property's (API dict or model) TypeScript type, as ``toTypeScriptType``
    prints it; built-in renderers that describe tools in TypeScript use it too."""
    return _property(prop).go_ToTypeScriptType()
