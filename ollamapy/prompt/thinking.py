"""Thinking traces out of model text, as Ollama's ``thinking`` package splits them.

A thinking model writes its reasoning between two tags (``<think>`` … ``</think>``) before
the answer. The tags come from the model's template (:func:`infer_thinking_tags`, which
reads the text around ``{{ .Thinking }}`` inside ``range .Messages``) or, for a GGUF chat
template, from the known pairs it contains (:func:`chat_template_thinking_tags`).
:class:`ThinkingParser` is fed generated text piece by piece and routes it to thinking or
content, holding back partial tags and eating the whitespace after each tag.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ollamapy.gotemplate import (
    ActionNode,
    BranchNode,
    CommandNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    RangeNode,
    Template,
    TemplateNode,
    TextNode,
)

__all__ = [
    "GO_SPACE",
    "ThinkingParser",
    "ThinkingState",
    "chat_template_thinking_tags",
    "infer_thinking_tags",
]

# Go's unicode.IsSpace, which strings.TrimSpace and TrimLeftFunc use (Python's
# str.strip() would also strip the \x1c-\x1f separators, which Go keeps).
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# Opening/closing pairs a GGUF chat template can render reasoning between; a template
# counts only if it carries both halves (or splits prior content at the closing one).
_CHAT_TEMPLATE_TAGS = (
    ("<think>", "</think>"),
    ("<|channel>", "<channel|>"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
    ("<seed:think>", "</seed:think>"),
)


class ThinkingState(enum.Enum):
    LOOKING_FOR_OPENING = "LookingForOpening"
    """Nothing but whitespace seen yet."""
    THINKING_STARTED_EATING_WHITESPACE = "ThinkingStartedEatingWhitespace"
    """The opening tag seen, only whitespace after it."""
    THINKING = "Thinking"
    THINKING_DONE_EATING_WHITESPACE = "ThinkingDoneEatingWhitespace"
    """The closing tag seen, only whitespace after it."""
    THINKING_DONE = "ThinkingDone"


class ThinkingParser:
    """Streaming thinking/content splitter for one generation.

    Output that does not start (after whitespace) with the opening tag is all content.
    """

    def __init__(self, opening_tag: str, closing_tag: str) -> None:
        self.opening_tag = opening_tag
        self.closing_tag = closing_tag
        self.state = ThinkingState.LOOKING_FOR_OPENING
        self._acc = ""

    @classmethod
    def for_prompt(
        cls, opening_tag: str, closing_tag: str, prompt: str
    ) -> ThinkingParser:
        """A parser for output that follows ``prompt``: already thinking if the prompt
        ends with the opening tag (templates that open the thinking block themselves)."""
        parser = cls(opening_tag, closing_tag)
        if prompt.strip(GO_SPACE).endswith(opening_tag):
            parser.add(opening_tag)
        return parser

    def add(self, text: str) -> tuple[str, str]:
        """Feed generated text; return ``(thinking, content)`` that can be sent now."""
        self._acc += text
        thinking: list[str] = []
        content: list[str] = []
        more = True
        while more:
            t, c, more = self._eat()
            thinking.append(t)
            content.append(c)
        return "".join(thinking), "".join(content)

    def _eat(self) -> tuple[str, str, bool]:
        """One step of the state machine: ``(thinking, content, keep going)``."""
        state = self.state
        if state is ThinkingState.LOOKING_FOR_OPENING:
            trimmed = self._acc.lstrip(GO_SPACE)
            if trimmed.startswith(self.opening_tag):
                after = trimmed[len(self.opening_tag) :].lstrip(GO_SPACE)
                self._acc = after
                self.state = (
                    ThinkingState.THINKING
                    if after
                    else ThinkingState.THINKING_STARTED_EATING_WHITESPACE
                )
                return "", "", True
            if self.opening_tag.startswith(trimmed):
                return "", "", False  # a partial opening tag, or only whitespace
            self.state = ThinkingState.THINKING_DONE
            untrimmed, self._acc = self._acc, ""
            return "", untrimmed, False
        if state is ThinkingState.THINKING_STARTED_EATING_WHITESPACE:
            trimmed, self._acc = self._acc.lstrip(GO_SPACE), ""
            if not trimmed:
                return "", "", False
            self.state = ThinkingState.THINKING
            self._acc = trimmed
            return "", "", True
        if state is ThinkingState.THINKING:
            acc = self._acc
            if self.closing_tag in acc:
                thinking, remaining = acc.split(self.closing_tag, 1)
                remaining = remaining.lstrip(GO_SPACE)
                self._acc = ""
                self.state = (
                    ThinkingState.THINKING_DONE
                    if remaining
                    else ThinkingState.THINKING_DONE_EATING_WHITESPACE
                )
                return thinking, remaining, False
            n = _overlap(acc, self.closing_tag)
            if n:
                # a possible start of the closing tag: hold it until disambiguated
                self._acc = acc[-n:]
                return acc[:-n], "", False
            self._acc = ""
            return acc, "", False
        if state is ThinkingState.THINKING_DONE_EATING_WHITESPACE:
            trimmed, self._acc = self._acc.lstrip(GO_SPACE), ""
            if trimmed:
                self.state = ThinkingState.THINKING_DONE
            return "", trimmed, False
        acc, self._acc = self._acc, ""
        return "", acc, False


def _overlap(s: str, delim: str) -> int:
    """Length of the longest suffix of ``s`` that is a prefix of ``delim``."""
    for n in range(min(len(delim), len(s)), 0, -1):
        if s.endswith(delim[:n]):
            return n
    return 0


def chat_template_thinking_tags(chat_template: str | None) -> tuple[str, str] | None:
    """The reasoning tags a GGUF (jinja) chat template renders, if any.

    Literal: both halves must appear in the template, or the template splits earlier
    content at the closing tag (Qwen/DeepSeek templates strip prior reasoning that way).
    """
    if not chat_template:
        return None
    for open_, close in _CHAT_TEMPLATE_TAGS:
        if open_ in chat_template and close in chat_template:
            return open_, close
    for open_, close in _CHAT_TEMPLATE_TAGS:
        if (
            f"content.split('{close}')" in chat_template
            or f'content.split("{close}")' in chat_template
        ):
            return open_, close
    return None


def _visit(
    node: Node | None, enter: Callable[[Node, list[Node]], None], ancestors: list[Node]
) -> None:
    """Go's ``templateVisit`` order: lists, branches (condition, body, else), actions,
    template calls, pipelines and commands; ``ancestors`` ends with ``node``."""
    if node is None:
        return
    ancestors.append(node)
    enter(node, ancestors)
    children: list[Node | None] = []
    if isinstance(node, ListNode):
        children = list(node.nodes)
    elif isinstance(node, BranchNode):
        children = [node.pipe, node.list, node.else_list]
    elif isinstance(node, (ActionNode, TemplateNode)):
        children = [node.pipe]
    elif isinstance(node, PipeNode):
        children = list(node.cmds)
    elif isinstance(node, CommandNode):
        children = list(node.args)
    for child in children:
        _visit(child, enter, ancestors)
    ancestors.pop()


def _range_over_messages(node: RangeNode) -> bool:
    found: list[bool] = []

    def enter(n: Node, _: list[Node]) -> None:
        if isinstance(n, FieldNode) and n.ident and n.ident[0] == "Messages":
            found.append(True)

    _visit(node.pipe, enter, [])
    return bool(found)


def infer_thinking_tags(template: Template) -> tuple[str, str] | None:
    """The thinking tags of a parsed Go template, by Ollama's ``InferTags`` heuristic.

    For every ``.Thinking`` field whose nearest enclosing ``range`` ranges over
    ``.Messages``, the first and last nodes of its nearest enclosing list, when they are
    text, give the opening and closing tags (trimmed); later fields overwrite earlier
    ones. None unless both tags end up non-empty.
    """
    tags = ["", ""]

    def enter(node: Node, ancestors: list[Node]) -> None:
        if not (
            isinstance(node, FieldNode) and node.ident and node.ident[0] == "Thinking"
        ):
            return
        nearest_range = next(
            (a for a in reversed(ancestors) if isinstance(a, RangeNode)), None
        )
        if nearest_range is None or not _range_over_messages(nearest_range):
            return
        body = next(a for a in reversed(ancestors) if isinstance(a, ListNode))
        first, last = body.nodes[0], body.nodes[-1]
        if isinstance(first, TextNode):
            tags[0] = first.text.strip(GO_SPACE)
        if isinstance(last, TextNode):
            tags[1] = last.text.strip(GO_SPACE)

    _visit(template.root, enter, [])
    return (tags[0], tags[1]) if tags[0] and tags[1] else None
