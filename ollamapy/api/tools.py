"""Tool definitions as clients send them in ``/api/chat`` (``tools``), as pydantic models.

Ollama's ``api.Tool`` and friends: a function tool with a JSON-schema parameter object.
Property maps keep the order the client sent (Ollama's ``ToolPropertiesMap`` is ordered),
and a property ``type`` is one JSON-schema type name or a list of them. The template side
(``.Tools`` printing as JSON) is built from these by ``ollamapy.gotemplate``; the jinja2
side takes :meth:`Tool.to_wire`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ollamapy.api.types import ApiModel

__all__ = ["Tool", "ToolFunction", "ToolFunctionParameters", "ToolProperty"]


class ToolProperty(ApiModel):
    """One JSON-schema property of a tool's parameters (nested properties allowed)."""

    any_of: list[ToolProperty] | None = Field(None, alias="anyOf")
    type: str | list[str] | None = None
    """A JSON-schema type name, or several."""
    items: Any = None
    description: str | None = None
    enum: list[Any] | None = None
    properties: dict[str, ToolProperty] | None = None
    required: list[str] | None = None


class ToolFunctionParameters(ApiModel):
    type: str = ""
    defs: Any = Field(None, alias="$defs")
    items: Any = None
    required: list[str] | None = None
    properties: dict[str, ToolProperty] | None = None
    """Ordered as the client sent them."""


class ToolFunction(ApiModel):
    name: str = ""
    description: str | None = None
    parameters: ToolFunctionParameters = Field(
        default_factory=lambda: ToolFunctionParameters.model_validate({})
    )


class Tool(ApiModel):
    """``{"type": "function", "function": {...}}``."""

    type: str = ""
    items: Any = None
    function: ToolFunction = Field(default_factory=ToolFunction)

    def to_wire(self) -> dict[str, Any]:
        """The tool as JSON, with the schema's own key names (``$defs``, ``anyOf``)."""
        return self.model_dump(by_alias=True, exclude_none=True)
