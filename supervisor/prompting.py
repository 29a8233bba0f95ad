"""Prompt rendering and output parsing for one request, wired to a model and its runner.

The library (``ollamapy.prompt.render``, ``ollamapy.prompt.thinking``, ``ollamapy.prompt.tool_parser``,
the built-in ``ollamapy.prompt.renderers`` and ``ollamapy.prompt.parsers``) is pure; this
module feeds it what a request and a loaded model provide: the model's template, layers and
config, its GGUF special tokens, and a token counter backed by the runner's tokenizer.

A model whose config names a built-in ``renderer`` is rendered by it instead of its
template; one whose config names a built-in ``parser`` (or a gpt-oss model with a harmony
template, which Ollama parses with ``harmony`` unasked) has its output split by that
parser, which is initialised at render time because it may rename the tools the prompt
shows. Otherwise thinking tags and the tool-call tag come from the model's Go template,
or from its GGUF Jinja template when it has no Go template.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ollamapy.api.tools import Tool
from ollamapy.api.types import ChatRequest, GenerateRequest, Message
from ollamapy.errors import InvalidRequest, TemplateError
from ollamapy.gotemplate import Template
from ollamapy.prompt import render as prompt_lib
from ollamapy.prompt.parsers import Parser, parser_for
from ollamapy.prompt.renderers import Renderer, renderer_for
from ollamapy.prompt.thinking import ThinkingParser, chat_template_thinking_tags, infer_thinking_tags
from ollamapy.prompt.tool_parser import ToolCallParser, chat_template_tool_tag, tool_call_tag
from ollamapy.store.model import Model
from ollamapy.supervisor.scheduler import LoadedRunner

__all__ = ["OutputParser", "RenderedPrompt", "render_chat", "render_generate"]

log = logging.getLogger("ollamapy.server")


_HARMONY_FAMILIES = ("gptoss", "gpt-oss")


@dataclass(frozen=True)
class RenderedPrompt:
    """A request's prompt and what parsing its output needs."""

    text: str
    images: tuple[str, ...] = ()
    """Base64 data of the images the prompt's ``[img-N]`` markers refer to, in N order."""
    parser: Parser | None = None
    """The model's built-in parser, initialised for this request."""
    thinking_end: tuple[str, ...] = ()
    """With thinking on: texts that end the thinking section, after which a ``format``
    grammar applies (the runner's ``format_after``)."""
    thinking_tags: tuple[str, str] | None = None
    """With thinking on and no built-in parser: the template's (open, close) tags."""
    tools: list[Tool] | None = None
    """The request's tools, validated once, as the tool-call parser needs them."""

    @property
    def image_count(self) -> int:
        return len(self.images)


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
    handle = runner.handle
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
    tokens = await runner.handle.tokenize(text, add_special=True)
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


def _builtin_parser(model: Model) -> Parser | None:
    """The model's built-in parser: its config's ``parser``, else ``harmony`` for a gpt-oss
    model whose template writes harmony's tags (as Ollama decides)."""
    name = model.config.get("parser") or ""
    template = model.template or ""
    if not name and model.config.get("model_family", "") in _HARMONY_FAMILIES and "<|start|>" in template and "<|end|>" in template:
        name = "harmony"
    parser = parser_for(name)
    if parser is None and name:
        log.debug("model %s: unknown parser %r, parsing by its template", model.short_name, name)
    return parser


def _builtin_renderer(model: Model) -> Renderer | None:
    name = model.config.get("renderer") or ""
    renderer = renderer_for(name)
    if renderer is None and name:
        log.debug("model %s: unknown renderer %r, rendering its template", model.short_name, name)
    return renderer


def _thinking_tags(model: Model) -> tuple[str, str] | None:
    """The model's thinking tags: from its Go template, else its GGUF Jinja template."""
    template = _parsed_template(model)
    tags = infer_thinking_tags(template) if template else None
    if tags is None and model.gguf is not None:
        tags = chat_template_thinking_tags(model.gguf.chat_template)
    return tags


RenderFn = Callable[[list[Tool] | None], prompt_lib.RenderResult]
"""Renders a request's prompt showing these tools (the built-in parser may rename them)."""


def _by_renderer(model: Model, renderer: Renderer, messages: list[Message], think: Any) -> RenderFn:
    """Rendering by the model's built-in renderer; a leading BOS it writes is dropped
    (the runner's tokenizer adds it)."""
    bos, _ = _special_tokens(model)

    def render(tools: list[Tool] | None) -> prompt_lib.RenderResult:
        text = renderer.render(messages, tools or [], think)
        if bos and text.startswith(bos):
            text = text[len(bos) :]
        return prompt_lib.RenderResult(text, tuple(i for m in messages for i in m.images or ()))

    return render


async def _render_with(model: Model, last: Message | None, tools: list[Tool] | None, think: Any, render: RenderFn) -> RenderedPrompt:
    """Render in a worker thread, with the built-in parser (if any) initialised first."""
    parser = _builtin_parser(model)
    shown = tools
    if parser is not None:
        renamed = parser.init(tools or [], last, think)
        shown = renamed if tools is not None else None
    result = await asyncio.to_thread(render, shown)
    log.debug("rendered prompt model=%s prompt=%r", model.short_name, result.prompt)
    if not think:
        return RenderedPrompt(result.prompt, result.images, parser, tools=tools)
    if parser is not None:
        return RenderedPrompt(result.prompt, result.images, parser, tuple(parser.thinking_end()), tools=tools)
    tags = _thinking_tags(model)
    return RenderedPrompt(result.prompt, result.images, None, (tags[1],) if tags else (), tags, tools)


async def render_generate(model: Model, req: GenerateRequest, *, think: bool | None, think_level: str | None, runner: LoadedRunner | None) -> RenderedPrompt:
    """The prompt for ``/api/generate`` (``raw`` sends the prompt as it is)."""
    if req.raw:
        images = tuple(req.images or ())
        # a raw prompt places image N where it writes [img-N]; the others go in front
        missing = "".join(tag for tag in (f"[img-{i}]" for i in range(len(images))) if tag not in req.prompt)
        return _rendered(model, missing + req.prompt, images)
    think_value = _think_value(think, think_level)
    renderer = _builtin_renderer(model)
    if renderer is not None and not req.suffix and not req.template and req.context is None:
        messages = prompt_lib.generate_messages(
            req.prompt, system=req.system or None, images=req.images or [], model_system=model.system, model_messages=model.messages
        )
        return await _render_with(model, None, None, think_value, _by_renderer(model, renderer, messages, think_value))
    context_text = None
    if req.context is not None and runner is not None:
        context_text = await runner.handle.detokenize(req.context)
    loop = asyncio.get_running_loop()

    def by_template(_: list[Tool] | None) -> prompt_lib.RenderResult:
        return prompt_lib.render_generate(
            model.template,
            prompt=req.prompt,
            system=req.system or None,
            suffix=req.suffix or None,
            images=req.images or [],
            model_system=model.system,
            model_messages=model.messages,
            context_text=context_text,
            request_template=req.template or None,
            think=think_value,
            truncate=req.truncate is not False,
            **_common(model, runner, loop),
        )

    rendered = await _render_with(model, None, None, think_value, by_template)
    await _check_fits(runner, rendered.text, req.truncate)
    return rendered


def _rendered(model: Model, text: str, images: tuple[str, ...]) -> RenderedPrompt:
    """The result, logged in full at debug level (``OLLAMA_DEBUG=1``)."""
    log.debug("rendered prompt model=%s prompt=%r", model.short_name, text)
    return RenderedPrompt(text, images)


def _tools(req: ChatRequest) -> list[Tool] | None:
    """The request's tools; None without any (the template's ``.Tools`` is then nil)."""
    return [Tool.model_validate(t) for t in req.tools] if req.tools else None


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
    think_value = _think_value(think, think_level)

    def by_template(tools: list[Tool] | None) -> prompt_lib.RenderResult:
        return prompt_lib.render_chat(
            model.template,
            messages,
            tools=tools,
            think=think_value,
            truncate=req.truncate is not False,
            **_common(model, runner, loop),
        )

    renderer = _builtin_renderer(model)
    render = _by_renderer(model, renderer, messages, think_value) if renderer is not None else by_template
    rendered = await _render_with(model, messages[-1] if messages else None, _tools(req), think_value, render)
    await _check_fits(runner, rendered.text, req.truncate)
    return rendered


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
    """Routes generated text to thinking, content and tool calls, streaming: through the
    model's built-in parser when it has one, else the template-derived thinking and
    tool-call parsers."""

    def __init__(self, thinking: ThinkingParser | None, tools: ToolCallParser | None, builtin: Parser | None = None) -> None:
        self.thinking = thinking
        self.tools = tools
        self.builtin = builtin

    @staticmethod
    def _thinking_parser(rendered: RenderedPrompt) -> ThinkingParser | None:
        tags = rendered.thinking_tags
        return ThinkingParser.for_prompt(tags[0], tags[1], rendered.text) if tags else None

    @classmethod
    def for_generate(cls, rendered: RenderedPrompt) -> OutputParser:
        if rendered.parser is not None:
            return cls(None, None, rendered.parser)
        return cls(cls._thinking_parser(rendered), None)

    @classmethod
    def for_chat(cls, model: Model, rendered: RenderedPrompt) -> OutputParser:
        if rendered.parser is not None:
            return cls(None, None, rendered.parser)
        tool_parser = None
        if rendered.tools:
            template = _parsed_template(model)
            if template is not None:
                tag = tool_call_tag(template)
            else:
                tag = chat_template_tool_tag(model.gguf.chat_template if model.gguf else None)
            tool_parser = ToolCallParser(rendered.tools, tag)
        return cls(cls._thinking_parser(rendered), tool_parser)

    def add(self, text: str, *, final: bool) -> tuple[str, str, list[dict[str, Any]]]:
        """Feed generated text; return (thinking, content, tool calls) ready to send."""
        if self.builtin is not None:
            parsed = self.builtin.add(text, final)
            return parsed.thinking, parsed.content, [call.model_dump(exclude_none=True) for call in parsed.calls]
        thinking, content = self.thinking.add(text) if self.thinking else ("", text)
        calls: list[dict[str, Any]] = []
        if self.tools is not None:
            found, content = self.tools.add(content)
            if final:
                content += self.tools.flush()
            calls = [call.model_dump(exclude_none=True) for call in found]
        return thinking, content, calls
