"""GGUF chat templates (``tokenizer.chat_template``, Jinja2) rendered as llama.cpp renders them.

A model imported from a bare GGUF has no Go TEMPLATE; Ollama then lets llama.cpp apply
the GGUF's own Jinja template. ollamapy renders it here, in jinja2's immutable sandbox
(the template comes from a downloaded file), with the environment Hugging Face and
llama.cpp give these templates: ``messages``, ``tools``, ``add_generation_prompt``,
``bos_token``, ``eos_token``, ``raise_exception``, ``strftime_now``, a ``tojson`` that
keeps non-ASCII text, ``trim_blocks``/``lstrip_blocks`` and loop controls.

As llama.cpp does, a leading BOS the template writes is dropped when the tokenizer adds
one anyway, and a final assistant message is a prefill: the conversation before it is
rendered with the generation prompt and the assistant's text is appended, so the model
continues it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.errors import TemplateError

__all__ = ["jinja_messages", "render_chat_messages", "render_chat_template"]


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """Hugging Face's ``tojson``: plain ``json.dumps`` (jinja2's escapes ``<>&'``)."""
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
    )


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    try:
        return _environment().from_string(source)
    except jinja2.exceptions.TemplateError as exc:
        raise TemplateError(f"chat template error: {exc}") from exc


def render_chat_template(
    chat_template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render ``chat_template`` on OpenAI-shaped message dicts (``tools`` None when empty).

    ``extra`` adds template variables (``enable_thinking``, ``reasoning_effort``).
    A syntax error or a ``raise_exception`` in the template raises ``TemplateError``.
    """
    template = _compile(chat_template)
    context: dict[str, Any] = dict(extra or {})
    context.update(
        messages=[dict(m) for m in messages],
        tools=[dict(t) for t in tools] if tools else None,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    )
    try:
        return template.render(context)
    except jinja2.exceptions.TemplateError as exc:
        raise TemplateError(f"chat template error: {exc}") from exc


def jinja_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """API messages in the shape chat templates expect (OpenAI's, as llama.cpp passes).

    Tool calls become ``{"id", "type": "function", "function": {"name", "arguments"}}``
    with the arguments as an object, a tool result's ``tool_name`` becomes ``name``, and
    thinking becomes ``reasoning_content``.
    """
    out: list[dict[str, Any]] = []
    for msg in messages:
        item: dict[str, Any] = {"role": msg.role, "content": msg.content}
        if msg.thinking:
            item["reasoning_content"] = msg.thinking
        if msg.tool_calls:
            item["tool_calls"] = [
                {
                    **({"id": call.id} if call.id else {}),
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": call.function.arguments,
                    },
                }
                for call in msg.tool_calls
            ]
        if msg.tool_name:
            item["name"] = msg.tool_name
        if msg.tool_call_id:
            item["tool_call_id"] = msg.tool_call_id
        out.append(item)
    return out


def render_chat_messages(
    chat_template: str,
    messages: Sequence[Message],
    *,
    tools: Sequence[Tool] | None = None,
    think: bool | str | None = None,
    bos_token: str = "",
    eos_token: str = "",
    add_bos: bool = True,
) -> str:
    """The prompt llama.cpp would build from ``messages`` with this chat template.

    ``think`` (the request's value) becomes ``enable_thinking`` (and a level string also
    ``reasoning_effort``) when set. ``add_bos``: the tokenizer adds BOS itself, so a BOS
    the template writes first is dropped.
    """
    extra: dict[str, Any] = {}
    if think is not None:
        extra["enable_thinking"] = bool(think)
        if isinstance(think, str):
            extra["reasoning_effort"] = think
    wire_tools = [t.to_wire() for t in tools] if tools else None
    prefill = (
        messages[-1].content if messages and messages[-1].role == "assistant" else None
    )
    history = messages[:-1] if prefill is not None else messages
    prompt = render_chat_template(
        chat_template,
        jinja_messages(history),
        tools=wire_tools,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
        extra=extra,
    )
    if add_bos and bos_token and prompt.startswith(bos_token):
        prompt = prompt[len(bos_token) :]
    return prompt + (prefill or "")
