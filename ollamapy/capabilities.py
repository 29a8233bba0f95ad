"""What a model can do, from its GGUF header and its template (spec §9.4).

``completion``/``embedding``/``vision`` come from the GGUF; ``tools``, ``insert`` and
``thinking`` from what the Go template references. The list order follows Ollama's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollamapy.errors import TemplateError
from ollamapy.gotemplate import Template

if TYPE_CHECKING:
    from ollamapy.model import Model

__all__ = ["model_capabilities", "template_capabilities"]

_ORDER = ["completion", "tools", "insert", "vision", "audio", "embedding", "thinking"]


def template_capabilities(template_text: str | None) -> set[str]:
    """Capabilities a Go template implies; an unparsable template implies none."""
    if not template_text:
        return set()
    try:
        template = Template.parse(template_text)
    except TemplateError:
        return set()
    caps: set[str] = set()
    if template.uses("Tools"):
        caps.add("tools")
    if template.uses("Suffix"):
        caps.add("insert")
    if template.uses("Thinking") or template.uses("Think"):
        caps.add("thinking")
    return caps


def model_capabilities(model: Model) -> list[str]:
    caps: set[str] = set()
    if model.gguf is not None:
        caps.update(model.gguf.capabilities())
    if model.projector_paths:
        caps.add("vision")
    caps.update(model.config.get("capabilities") or [])
    if "embedding" not in caps or "completion" in caps:
        caps |= template_capabilities(model.template)
    ordered = [c for c in _ORDER if c in caps]
    return ordered + sorted(caps - set(_ORDER))
