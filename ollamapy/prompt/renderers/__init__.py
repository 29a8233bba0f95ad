"""Ollama's built-in prompt renderers, by the name a model config's ``renderer`` gives.

Each family has its module; :data:`RENDERERS` maps Ollama's renderer names to the
classes and :func:`renderer_for` makes one.
"""

from __future__ import annotations

from .base import Renderer
from .deepseek3 import DeepSeek31Renderer
from .harmony import HarmonyRenderer
from .qwen3coder import Qwen3CoderRenderer
from .qwen3vl import Qwen3VLInstructRenderer, Qwen3VLThinkingRenderer

__all__ = ["RENDERERS", "Renderer", "renderer_for"]

RENDERERS: dict[str, type[Renderer]] = {
    "harmony": HarmonyRenderer,
    "qwen3-coder": Qwen3CoderRenderer,
    "qwen3-vl-instruct": Qwen3VLInstructRenderer,
    "qwen3-vl-thinking": Qwen3VLThinkingRenderer,
    "deepseek3.1": DeepSeek31Renderer,
}


def renderer_for(name: str | None) -> Renderer | None:
    """A renderer for ``name``; None for no name or one ollamapy does not know."""
    cls = RENDERERS.get(name or "")
    return cls() if cls is not None else None
