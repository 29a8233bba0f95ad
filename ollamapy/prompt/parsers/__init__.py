"""Ollama's built-in output parsers, by the name a model config's ``parser`` gives.

Each family has its module; :data:`PARSERS` maps Ollama's parser names to the classes
and :func:`parser_for` makes a fresh one for a generation.
"""

from __future__ import annotations

from .base import Parsed, Parser
from .deepseek3 import DeepSeek3Parser
from .harmony import HarmonyParser
from .qwen3 import Qwen3Parser, Qwen3ThinkingParser
from .qwen3coder import Qwen3CoderParser

__all__ = ["PARSERS", "Parsed", "Parser", "parser_for"]

PARSERS: dict[str, type[Parser]] = {
    "harmony": HarmonyParser,
    "qwen3": Qwen3Parser,
    "qwen3-thinking": Qwen3ThinkingParser,
    "qwen3.5": Qwen3ThinkingParser,
    "qwen3-coder": Qwen3CoderParser,
    "qwen3-vl-instruct": Qwen3Parser,
    "qwen3-vl-thinking": Qwen3ThinkingParser,
    "deepseek3": DeepSeek3Parser,
}


def parser_for(name: str | None) -> Parser | None:
    """A new parser for ``name``; None for no name or one ollamapy does not know."""
    cls = PARSERS.get(name or "")
    return cls() if cls is not None else None
