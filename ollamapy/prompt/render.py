"""Prompt assembly: messages and a model's template in, the text the model reads out.

This is Ollama's ``template.Template.Execute`` plus ``server/prompt.go`` (``chatPrompt``)
and the prompt-building parts of the generate/chat handlers:

* :class:`PromptTemplate` parses a Modelfile TEMPLATE as Ollama does (``{{ .Response }}``
  appended when the template uses neither ``.Messages`` nor ``.Response``) and executes
  it in one of three modes: prompt + suffix (fill-in-the-middle), messages (the template
  ranges over ``.Messages``; system messages joined, consecutive same-role messages
  merged) or legacy (prompt-only templates rendered once per turn, the last turn cut
  right after ``{{ .Response }}`` so the prompt ends where generation starts);
* :func:`render_chat` adds what ``chatPrompt`` adds: images become ``[img-N]`` tags, and
  with a tokenizer and a context size the oldest non-system messages are dropped until
  the prompt fits, always keeping system messages and the last message (and never
  separating tool results from the assistant turn that asked for them). Models without a
  TEMPLATE render their GGUF Jinja chat template instead (:mod:`ollamapy.prompt.jinja_template`);
* :func:`merge_chat_messages` and :func:`generate_messages` put the model's SYSTEM and
  MESSAGE layers in front of a request's messages as the handlers do;
* :func:`fit_prompt_tokens` is the runner-side check of the rendered prompt against the
  context (context shift or the "prompt is longer" error).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.errors import InvalidRequest, OllamapyError, TemplateError
from ollamapy.gotemplate import (
    ActionNode,
    BranchNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    Template,
    TemplateNode,
    template_messages,
    template_tools,
)
from ollamapy.prompt.jinja_template import render_chat_messages
from ollamapy.prompt.thinking import ThinkingParser

__all__ = [
    "DEFAULT_TEMPLATE",
    "IMAGE_TOKENS",
    "PROMPT_TOO_LONG",
    "PromptTemplate",
    "RenderResult",
    "collate",
    "fit_prompt_tokens",
    "generate_messages",
    "merge_chat_messages",
    "render_chat",
    "render_generate",
]

DEFAULT_TEMPLATE = "{{ .Prompt }}"
"""The template of a model that has none (and no GGUF chat template)."""

IMAGE_TOKENS = 768
"""Tokens an image is counted as when fitting a prompt (a CLIP image's embeddings)."""

PROMPT_TOO_LONG = (
    "the prompt is longer than the context length currently available to the model; "
    "shorten the prompt, adjust the context length in settings, or use a model with a longer context length"
)

ThinkValue = bool | str | None
Tokenize = Callable[[str], int]
"""Counts the tokens of a text (the runner's tokenizer)."""


@dataclass(frozen=True)
class RenderResult:
    """A rendered prompt and the images it refers to by ``[img-N]``, in N order."""

    prompt: str
    images: tuple[str, ...] = ()
    """Base64 image data of the messages that were kept."""
    truncated: bool = False
    """Old messages were dropped to fit the context."""

    @property
    def image_count(self) -> int:
        return len(self.images)


# --- the template ---------------------------------------------------------------------


def _cut_after_response(root: ListNode) -> ListNode:
    """A copy of ``root`` with every node after the first ``.Response`` field removed.

    Ollama's ``deleteNode`` walk: lists, branch bodies (not their conditions), actions
    and pipelines are searched in source order; a pipeline left without arguments
    disappears with its action. (Where Ollama would panic, on an ``else`` after the
    cut, the else body is emptied.)
    """
    cut = False

    def deleted(node: Node) -> bool:
        nonlocal cut
        if isinstance(node, FieldNode) and "Response" in node.ident:
            cut = True
            return False
        return cut

    def walk(node: Node) -> Node | None:
        if deleted(node):
            return None
        if isinstance(node, ListNode):
            node.nodes = [
                kept for child in node.nodes if (kept := walk(child)) is not None
            ]
        elif isinstance(node, BranchNode):
            node.list = walk_list(node.list)
            if node.else_list is not None:
                node.else_list = walk_list(node.else_list)
        elif isinstance(node, ActionNode):
            pipe = walk(node.pipe)
            if not isinstance(pipe, PipeNode):
                return None
            node.pipe = pipe
        elif isinstance(node, PipeNode):
            for cmd in node.cmds:
                args = [kept for arg in cmd.args if (kept := walk(arg)) is not None]
                if not args:
                    return None
                cmd.args = args
            if not node.cmds:
                return None
        return node

    def walk_list(node: ListNode) -> ListNode:
        kept = walk(node)
        return kept if isinstance(kept, ListNode) else ListNode(node.pos)

    return walk_list(copy.deepcopy(root))


def _think_values(think: ThinkValue) -> dict[str, Any]:
    """``.Think``, ``.ThinkLevel`` and ``.IsThinkSet`` from a request's ``think``."""
    if isinstance(think, str):
        return {"Think": True, "ThinkLevel": think, "IsThinkSet": True}
    return {
        "Think": bool(think),
        "ThinkLevel": "medium" if think else "",
        "IsThinkSet": think is not None,
    }


def collate(messages: Iterable[Message]) -> tuple[str, list[Message]]:
    """All system messages joined by a blank line, and the messages with consecutive
    same-role messages merged the same way (tool results stay separate). Copies."""
    system: list[str] = []
    collated: list[Message] = []
    for msg in messages:
        if msg.role == "system":
            system.append(msg.content)
        if collated and collated[-1].role == msg.role and msg.role != "tool":
            collated[-1].content += "\n\n" + msg.content
        else:
            collated.append(msg.model_copy(deep=True))
    return "\n\n".join(system), collated


class PromptTemplate:
    """A Modelfile TEMPLATE, parsed and executed as Ollama's ``template.Template``."""

    def __init__(self, text: str) -> None:
        self.text = text
        parsed = Template.parse(text)
        if any(isinstance(n, TemplateNode) and n.pipe is None for n in parsed.walk()):
            # Ollama's Vars() refuses {{ template "name" }} without a pipeline
            raise TemplateError("undefined template specified")
        names = {name.lower() for name in parsed.identifiers()}
        if "messages" not in names and "response" not in names:
            # Ollama appends a {{ .Response }} node; text appended to the source
            # parses to exactly that node at the end of the root list.
            parsed = Template.parse(text + "{{ .Response }}")
            names.add("response")
        self.template = parsed
        self.vars = sorted(names)
        """Lower-cased field and variable names the template uses (Ollama's ``Vars()``)."""

    @staticmethod
    def parse(text: str) -> PromptTemplate:
        """Parse (cached); raises ``TemplateError`` when the text is not a Go template."""
        return _parse_cached(text)

    @property
    def uses_messages(self) -> bool:
        return "messages" in self.vars

    def execute(
        self,
        messages: Sequence[Message] = (),
        *,
        tools: Sequence[Tool] | None = None,
        prompt: str = "",
        suffix: str = "",
        think: ThinkValue = None,
    ) -> str:
        """Render as ``template.Execute`` does for these values (see the module doc).

        ``tools`` None is Go's nil list (``.Tools`` prints ``null``), what Ollama passes
        for a request without tools.
        """
        thinking = _think_values(think)
        if prompt and suffix:
            return self.template.execute(
                {"Prompt": prompt, "Suffix": suffix, "Response": "", **thinking}
            )
        system, collated = collate(messages)
        if self.uses_messages:
            return self.template.execute(
                {
                    "System": system,
                    "Messages": template_messages(collated),
                    "Tools": template_tools(tools),
                    "Response": "",
                    **thinking,
                }
            )
        return self._execute_legacy(collated, thinking)

    def _execute_legacy(self, messages: list[Message], thinking: dict[str, Any]) -> str:
        """One render per turn; the last turn runs the tree cut after ``.Response``.

        (Ollama runs that last tree in a fresh template without its functions and
        ``define``s, so ``json`` there fails; here it keeps them.)
        """
        out: list[str] = []
        turn = {"System": "", "Prompt": "", "Response": ""}

        def flush() -> None:
            out.append(self.template.execute({**turn, **thinking}))
            turn.update(System="", Prompt="", Response="")

        for msg in messages:
            if msg.role == "system":
                if turn["Prompt"] or turn["Response"]:
                    flush()
                turn["System"] = msg.content
            elif msg.role == "user":
                if turn["Response"]:
                    flush()
                turn["Prompt"] = msg.content
            elif msg.role == "assistant":
                turn["Response"] = msg.content
        last = self.template.with_root(_cut_after_response(self.template.root))
        out.append(last.execute({**turn, **thinking}))
        return "".join(out)


@lru_cache(maxsize=32)
def _parse_cached(text: str) -> PromptTemplate:
    return PromptTemplate(text)


# --- chat -----------------------------------------------------------------------------


def _tool_block_start(messages: Sequence[Message], i: int) -> int:
    """Where a run of tool results starting at ``i`` begins, including the assistant
    turn that called the tools, so truncation never orphans a tool result."""
    if i <= 0 or i >= len(messages) or messages[i].role != "tool":
        return i
    start = i
    while start > 0 and messages[start - 1].role == "tool":
        start -= 1
    caller = start - 1
    if (
        caller >= 0
        and messages[caller].role == "assistant"
        and messages[caller].tool_calls
    ):
        return caller
    return i


def _tag_images(messages: list[Message]) -> list[str]:
    """Replace ``[img]`` (else prefix) with ``[img-N]`` per image, numbering across the
    messages; returns the images in N order."""
    images: list[str] = []
    for msg in messages:
        prefix = ""
        content = msg.content
        for image in msg.images or ():
            tag = f"[img-{len(images)}]"
            images.append(image)
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        msg.content = prefix + content
    return images


def _template_failure(err: TemplateError) -> OllamapyError:
    """A template that fails while building a prompt is a server error (500) in Ollama."""
    return OllamapyError(str(err))


def render_chat(
    template_text: str | None,
    messages: Sequence[Message],
    *,
    tools: Sequence[Tool] | None = None,
    think: ThinkValue = None,
    gguf_chat_template: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
    tokenize: Tokenize | None = None,
    num_ctx: int | None = None,
    truncate: bool = True,
    image_tokens: int = IMAGE_TOKENS,
) -> RenderResult:
    """The prompt for a chat turn (Ollama's ``chatPrompt``).

    ``template_text`` is the model's TEMPLATE; without one the GGUF chat template
    renders (``bos_token``/``eos_token`` are its special tokens), without either
    ``{{ .Prompt }}``. With ``truncate``, ``tokenize`` and ``num_ctx`` the oldest
    non-system messages are dropped until the prompt fits (each image counting
    ``image_tokens``; pass 0 for a model without a vision projector). Messages are not
    modified. A template that does not parse or execute raises ``OllamapyError`` (500),
    as Ollama answers.
    """
    try:
        return _render_chat(
            template_text,
            messages,
            tools=tools,
            think=think,
            gguf_chat_template=gguf_chat_template,
            bos_token=bos_token,
            eos_token=eos_token,
            tokenize=tokenize,
            num_ctx=num_ctx,
            truncate=truncate,
            image_tokens=image_tokens,
        )
    except TemplateError as err:
        raise _template_failure(err) from err


def _render_chat(
    template_text: str | None,
    messages: Sequence[Message],
    *,
    tools: Sequence[Tool] | None,
    think: ThinkValue,
    gguf_chat_template: str | None,
    bos_token: str,
    eos_token: str,
    tokenize: Tokenize | None,
    num_ctx: int | None,
    truncate: bool,
    image_tokens: int,
) -> RenderResult:
    msgs = [m.model_copy(deep=True) for m in messages]

    def render(selected: list[Message]) -> str:
        if template_text is None and gguf_chat_template:
            return render_chat_messages(
                gguf_chat_template,
                selected,
                tools=tools,
                think=think,
                bos_token=bos_token,
                eos_token=eos_token,
            )
        tmpl = PromptTemplate.parse(
            template_text if template_text is not None else DEFAULT_TEMPLATE
        )
        return tmpl.execute(selected, tools=tools, think=think)

    system: list[Message] = []
    start = 0
    if truncate and tokenize is not None and num_ctx is not None:
        for i in range(len(msgs)):
            start = _tool_block_start(msgs, i)
            system = [m for m in msgs[:start] if m.role == "system"]
            kept = msgs[start:]
            count = tokenize(render(system + kept)) + image_tokens * sum(
                len(m.images or ()) for m in kept
            )
            if count <= num_ctx:
                break
    kept = msgs[start:]
    images = _tag_images(kept)
    return RenderResult(
        prompt=render(system + kept), images=tuple(images), truncated=start > 0
    )


def merge_chat_messages(
    request_messages: Sequence[Message],
    *,
    model_system: str | None = None,
    model_messages: Sequence[Message] = (),
    model_family: str = "",
    model_name: str = "",
) -> list[Message]:
    """A chat request's messages behind the model's MESSAGE layer, and its SYSTEM in
    front unless the request starts with a system message.

    For ``qwen3``-family and ``deepseek-r1`` models, ``<think>…</think>`` is stripped
    from assistant turns before the last user message, as Ollama does.
    """
    msgs = [m.model_copy(deep=True) for m in (*model_messages, *request_messages)]
    if request_messages and request_messages[0].role != "system" and model_system:
        msgs.insert(0, Message(role="system", content=model_system))
    if model_family == "qwen3" or model_name == "deepseek-r1":
        last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=-1)
        for msg in msgs[:last_user]:
            if msg.role == "assistant":
                msg.content = ThinkingParser("<think>", "</think>").add(msg.content)[1]
    return msgs


# --- generate -------------------------------------------------------------------------


def generate_messages(
    prompt: str,
    *,
    system: str | None = None,
    images: Sequence[str] = (),
    model_system: str | None = None,
    model_messages: Sequence[Message] = (),
    has_context: bool = False,
) -> list[Message]:
    """The messages ``/api/generate`` renders: the request's system (else the model's),
    the model's MESSAGEs unless the request carries ``context``, the prompt as a user
    message holding the images."""
    msgs: list[Message] = []
    if system or model_system:
        msgs.append(Message(role="system", content=system or model_system or ""))
    if not has_context:
        msgs += [m.model_copy(deep=True) for m in model_messages]
    msgs.append(Message(role="user", content=prompt, images=list(images) or None))
    return msgs


def render_generate(
    template_text: str | None,
    *,
    prompt: str,
    system: str | None = None,
    suffix: str | None = None,
    images: Sequence[str] = (),
    model_system: str | None = None,
    model_messages: Sequence[Message] = (),
    context_text: str | None = None,
    request_template: str | None = None,
    think: ThinkValue = None,
    gguf_chat_template: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
    tokenize: Tokenize | None = None,
    num_ctx: int | None = None,
    truncate: bool = True,
    image_tokens: int = IMAGE_TOKENS,
) -> RenderResult:
    """The prompt ``/api/generate`` sends when not ``raw``.

    ``context_text`` is the request's ``context`` detokenized (None when the request has
    no ``context``; ``""`` for an empty list): it prefixes the prompt and keeps the
    model's MESSAGEs out. With a ``suffix`` or a request ``template`` the template is
    executed directly (no ``[img-N]`` tags, no truncation); otherwise the messages go
    through :func:`render_chat`. Template failures raise ``OllamapyError`` (500).
    """
    prefix = context_text or ""
    msgs = generate_messages(
        prompt,
        system=system,
        images=images,
        model_system=model_system,
        model_messages=model_messages,
        has_context=context_text is not None,
    )
    if suffix or request_template:
        try:
            tmpl = PromptTemplate.parse(
                request_template or template_text or DEFAULT_TEMPLATE
            )
            if suffix:
                text = tmpl.execute(prompt=prompt, suffix=suffix, think=think)
            else:
                text = tmpl.execute(msgs, think=think)
        except TemplateError as err:
            raise _template_failure(err) from err
        return RenderResult(prompt=prefix + text, images=tuple(images))
    result = render_chat(
        template_text,
        msgs,
        tools=None,
        think=think,
        gguf_chat_template=gguf_chat_template,
        bos_token=bos_token,
        eos_token=eos_token,
        tokenize=tokenize,
        num_ctx=num_ctx,
        truncate=truncate,
        image_tokens=image_tokens,
    )
    return RenderResult(
        prompt=prefix + result.prompt, images=result.images, truncated=result.truncated
    )


# --- the runner-side fit ----------------------------------------------------------------


def fit_prompt_tokens(
    tokens: Sequence[int],
    *,
    num_ctx: int,
    num_keep: int = 4,
    truncate: bool = True,
    shift: bool = True,
    adds_bos: bool = True,
    has_images: bool = False,
) -> list[int]:
    """The prompt tokens a completion runs on, as Ollama's runner fits them to ``num_ctx``.

    A prompt of fewer than ``num_ctx`` tokens runs as it is. A longer one, with
    ``truncate`` (and no images): without context ``shift`` it is refused with
    :data:`PROMPT_TOO_LONG`; with it, the first ``num_keep`` tokens (+1 for BOS) are kept
    and the middle is discarded so half the remaining window is free. Without
    ``truncate`` (or with images) it is refused as llama-server refuses it.
    """
    n = len(tokens)
    if n < num_ctx or num_ctx <= 1:
        return list(tokens)
    if not truncate or has_images:
        error = {
            "code": 400,
            "message": f"request ({n} tokens) exceeds the available context size ({num_ctx} tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": n,
            "n_ctx": num_ctx,
        }
        raise InvalidRequest(json.dumps({"error": error}, separators=(",", ":")))
    if not shift:
        raise InvalidRequest(PROMPT_TOO_LONG)
    keep = n if num_keep < 0 else num_keep
    if adds_bos:
        keep += 1
    keep = min(keep, num_ctx - 1)
    limit = num_ctx - max((num_ctx - keep) // 2, 1)
    discard = n - limit
    return [*tokens[:keep], *tokens[keep + discard :]]
