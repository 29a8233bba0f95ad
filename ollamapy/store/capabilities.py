"""What a model can do, from its config, GGUF header and template.

``completion``/``embedding``/``vision``/``audio`` come from the GGUF (and a vision
projector); ``tools``, ``insert`` and ``thinking`` from the template the model is
rendered with: its Go TEMPLATE (uses ``.Tools``; uses ``.Suffix``; thinking tags
inferable around ``.Thinking``) or, for a model without one, its GGUF chat template
(mentions ``tools``/``tool_call``; renders a known pair of reasoning tags). A built-in
parser named by the config (``harmony``, ``qwen3-coder``, …) adds what it parses, with or
without a template that says so: Ollama drives those models by the parser, not the
template. The list is in the order Ollama builds it, which ``/api/show`` reports.

The inputs are described by :class:`CapabilitySource` rather than the store's ``Model``,
so this module does not depend on the one that calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ollamapy.errors import TemplateError
from ollamapy.prompt.parsers import PARSERS
from ollamapy.prompt.render import PromptTemplate
from ollamapy.prompt.thinking import chat_template_thinking_tags, infer_thinking_tags
from ollamapy.store.gguf import GGUFInfo

__all__ = [
    "CapabilitySource",
    "chat_template_capabilities",
    "model_capabilities",
    "parser_capabilities",
    "template_capabilities",
]


class CapabilitySource(Protocol):
    """What capabilities are computed from: a stored model's config blob, GGUF header,
    Go template and projectors (``ollamapy.store.model.Model`` has these fields)."""

    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def gguf(self) -> GGUFInfo | None: ...
    @property
    def template(self) -> str | None: ...
    @property
    def projector_paths(self) -> Sequence[Path]: ...


def template_capabilities(template_text: str | None) -> list[str]:
    """Capabilities a Go template implies; an unparsable template implies none."""
    if not template_text:
        return []
    try:
        template = PromptTemplate.parse(template_text)
    except TemplateError:
        return []
    caps = []
    if "tools" in template.vars:
        caps.append("tools")
    if "suffix" in template.vars:
        caps.append("insert")
    if infer_thinking_tags(template.template) is not None:
        caps.append("thinking")
    return caps


def chat_template_capabilities(chat_template: str | None) -> list[str]:
    """Capabilities a GGUF (Jinja) chat template implies, by what its text mentions."""
    if not chat_template:
        return []
    caps = []
    if "tools" in chat_template or "tool_call" in chat_template:
        caps.append("tools")
    if chat_template_thinking_tags(chat_template) is not None:
        caps.append("thinking")
    return caps


def parser_capabilities(parser: str | None) -> list[str]:
    """Capabilities a built-in parser implies: ``tools`` (every built-in parser extracts
    tool calls) and ``thinking`` when it splits thinking from content; none for an
    unknown or absent parser name."""
    cls = PARSERS.get(parser or "")
    if cls is None:
        return []
    return ["tools", "thinking"] if cls.thinking_support else ["tools"]


def model_capabilities(model: CapabilitySource) -> list[str]:
    """The capabilities ``/api/show`` lists and requests are checked against."""
    caps: list[str] = []

    def add(found: list[str]) -> None:
        caps.extend(c for c in found if c not in caps)

    add([str(c) for c in model.config.get("capabilities") or []])
    gguf = model.gguf
    if gguf is not None:
        if not model.template:
            add(chat_template_capabilities(gguf.chat_template))
        add(gguf.capabilities())
        if gguf.arch_kv("audio.block_count") is not None:
            add(["audio"])
    if model.projector_paths:
        add(["vision"])
    parser = parser_capabilities(model.config.get("parser"))
    template = template_capabilities(model.template)
    # Ollama asks "template uses .Tools or the parser parses tools", then the same for
    # thinking after insert: tools stays first and thinking last, whichever implied them.
    if "tools" in parser and "tools" not in template:
        template.insert(0, "tools")
    add(template)
    if "thinking" in parser or model.config.get("model_family") in ("gptoss", "gpt-oss"):
        add(["thinking"])
    return caps
