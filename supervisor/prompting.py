"""Prompt rendering and output parsing for one request, wired to a model and its runner.

The library (``ollamapy.prompt.render``, ``ollamapy.prompt.thinking``, ``ollamapy.prompt.tool_parser``) is pure;
this module feeds it what a request and a loaded model provide: the model's template and
layers, its GGUF special tokens, and a token counter backed by the runner's tokenizer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ollamapy.api.tools import Tool
from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.errors import InvalidRequest, TemplateError
from ollamapy.gotemplate import Template
from ollamapy.prompt import render as prompt_lib
from ollamapy.prompt.thinking import ThinkingParser, chat_template_thinking_tags, infer_thinking_tags
from ollamapy.prompt.tool_parser import ToolCallParser, tool_call_tag
from ollamapy.store.model import Model
from ollamapy.supervisor.scheduler import LoadedRunner

__all__ = ["OutputParser", "RenderedPrompt", "render_chat", "render_generate"]

log = logging.getLogger("ollamapy.server")


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    image_count: int = 0


def _think_value(think: bool | None, level: str | None) -> Any:
    return level if level else think


def _special_tokens(model: Model) -> tuple[str, str]:
    """BOS/EOS token texts for GGUF Jinja templates."""
    info = model.gguf
    if info is None:
        return "", ""
    tokens = info.kv.get("tokenizer.ggml.tokens") or []

    def token(key: str) -> str:
        idx = info.kv.get(key)
        return tokens[idx] if isinstance(idx, int) and 0 <= idx < len(tokens) else ""

    return token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")


def _token_counter(runner: LoadedRunner | None, loop: asyncio.AbstractEventLoop) -> Callable[[str], int] | None:
    """Counts tokens through the runner from a worker thread.

    A text of ``b`` UTF-8 bytes has at most ``b + 2`` tokens (every token covers at least
    one byte, plus BOS/EOS), so short prompts are known to fit without a runner round trip.
    """
    if runner is None:
        return None
    handle: Any = runner.handle
    num_ctx = runner.options.num_ctx or 0

    def count(text: str) -> int:
        bound = len(text.encode()) + 2
        if bound <= num_ctx:
            return bound
        return len(asyncio.run_coroutine_threadsafe(handle.tokenize(text, add_special=True), loop).result())

    return count


async def _check_fits(runner: LoadedRunner | None, text: str, truncate: bool | None) -> None:
    """``truncate: false`` refuses a prompt that does not fit instead of dropping messages."""
    if truncate is not False or runner is None:
        return
    num_ctx = runner.options.num_ctx or 0
    if len(text.encode()) + 2 <= num_ctx:
        return
    tokens = await runner.handle.tokenize(text, add_special=True)  # type: ignore[attr-defined]
    if len(tokens) >= num_ctx:
        raise InvalidRequest(prompt_lib.PROMPT_TOO_LONG)


def _common(model: Model, runner: LoadedRunner | None, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    bos, eos = _special_tokens(model)
    return {
        "gguf_chat_template": model.gguf.chat_template if model.gguf else None,
        "bos_token": bos,
        "eos_token": eos,
        "tokenize": _token_counter(runner, loop),
        "num_ctx": runner.options.num_ctx if runner else None,
        "image_tokens": prompt_lib.IMAGE_TOKENS if model.projector_paths else 0,
    }


async def render_generate(model: Model, req: GenerateRequest, *, think: bool | None, think_level: str | None, runner: LoadedRunner | None) -> RenderedPrompt:
    """The prompt for ``/api/generate`` (``raw`` sends the prompt as it is)."""
    if req.raw:
        return _rendered(model, req.prompt, len(req.images or []))
    context_text = None
    if req.context is not None and runner is not None:
        context_text = await runner.handle.detokenize(req.context)  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    result = await asyncio.to_thread(
        prompt_lib.render_generate,
        model.template,
        prompt=req.prompt,
        system=req.system or None,
        suffix=req.suffix or None,
        images=req.images or [],
        model_system=model.system,
        model_messages=model.messages,
        context_text=context_text,
        request_template=req.template or None,
        think=_think_value(think, think_level),
        truncate=req.truncate is not False,
        **_common(model, runner, loop),
    )
    await _check_fits(runner, result.prompt, req.truncate)
    return _rendered(model, result.prompt, result.image_count)


def _rendered(model: Model, text: str, image_count: int) -> RenderedPrompt:
    """The result, logged in full at debug level (``OLLAMA_DEBUG=1``)."""
    log.debug("rendered prompt model=%s prompt=%r", model.short_name, text)
    return RenderedPrompt(text, image_count)


def _tools(req: ChatRequest) -> list[Tool]:
    return [Tool.model_validate(t) for t in req.tools or []]


async def render_chat(model: Model, req: ChatRequest, *, think: bool | None, think_level: str | None, runner: LoadedRunner | None) -> RenderedPrompt:
    """The prompt for ``/api/chat``: model SYSTEM/MESSAGE layers merged in front."""
    messages = prompt_lib.merge_chat_messages(
        req.messages,
        model_system=model.system,
        model_messages=model.messages,
        model_family=model.config.get("model_family", ""),
        model_name=model.name.model,
    )
    loop = asyncio.get_running_loop()
    result = await asyncio.to_thread(
        prompt_lib.render_chat,
        model.template,
        messages,
        tools=_tools(req),
        think=_think_value(think, think_level),
        truncate=req.truncate is not False,
        **_common(model, runner, loop),
    )
    await _check_fits(runner, result.prompt, req.truncate)
    return _rendered(model, result.prompt, result.image_count)


def _parsed_template(model: Model) -> Template | None:
    return _parse_template(model.template) if model.template else None


@lru_cache(maxsize=32)
def _parse_template(text: str) -> Template | None:
    """Parsed once per template text (trees are never modified), not on every request."""
    try:
        return Template.parse(text)
    except TemplateError:
        return None


class OutputParser:
    """Routes generated text to thinking, content and tool calls, streaming."""

    def __init__(self, thinking: ThinkingParser | None, tools: ToolCallParser | None) -> None:
        self.thinking = thinking
        self.tools = tools

    @staticmethod
    def _thinking_parser(model: Model, rendered: RenderedPrompt, think: bool | None) -> ThinkingParser | None:
        if not think:
            return None
        template = _parsed_template(model)
        tags = infer_thinking_tags(template) if template else None
        if tags is None and model.gguf is not None:
            tags = chat_template_thinking_tags(model.gguf.chat_template)
        return ThinkingParser.for_prompt(tags[0], tags[1], rendered.text) if tags else None

    @classmethod
    def for_generate(cls, model: Model, rendered: RenderedPrompt, *, think: bool | None) -> OutputParser:
        return cls(cls._thinking_parser(model, rendered, think), None)

    @classmethod
    def for_chat(cls, model: Model, rendered: RenderedPrompt, *, think: bool | None, tools: list[dict[str, Any]] | None) -> OutputParser:
        tool_parser = None
        if tools:
            template = _parsed_template(model)
            tag = tool_call_tag(template) if template else "{"
            tool_parser = ToolCallParser([Tool.model_validate(t) for t in tools], tag)
        return cls(cls._thinking_parser(model, rendered, think), tool_parser)

    def add(self, text: str, *, final: bool) -> tuple[str, str, list[dict[str, Any]]]:
        """Feed generated text; return (thinking, content, tool calls) ready to send."""
        thinking, content = self.thinking.add(text) if self.thinking else ("", text)
        calls: list[dict[str, Any]] = []
        if self.tools is not None:
            found, content = self.tools.add(content)
            if final:
                content += self.tools.flush()
            calls = [call.model_dump(exclude_none=True) for call in found]
        return thinking, content, calls
