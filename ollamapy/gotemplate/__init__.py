"""An interpreter for Go's text/template language, as Ollama's TEMPLATEs use it.

Models made for Ollama carry their prompt format as a Go template; ollamapy renders it
with this package, byte for byte as Go does, with Ollama's options (``missingkey=zero``)
and functions (``json``, ``currentDate``, ``yesterdayDate``, ``toTypeScriptType``).

    tmpl = Template.parse("{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}")
    tmpl.execute({"Messages": template_messages([{"role": "user", "content": "hi"}])})

Data is plain Python (dicts, lists, scalars, dataclasses, pydantic models) plus Go-typed
values (:mod:`.gotypes`); :func:`template_messages` and :func:`template_tools` build the
Ollama types templates see (:mod:`.values`). Parse and execution failures raise
:class:`ollamapy.errors.TemplateError` with Go's message and the line number.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import TemplateError
from .exec import ExecError, execute
from .funcs import BUILTINS, ollama_funcs
from .parse import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    ParseError,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    Tree,
    VariableNode,
    WithNode,
    parse,
    walk,
    walk_ancestors,
)
from .values import template_messages, template_tools

__all__ = [
    "ActionNode",
    "BoolNode",
    "BranchNode",
    "BreakNode",
    "ChainNode",
    "CommandNode",
    "ContinueNode",
    "DotNode",
    "FieldNode",
    "IdentifierNode",
    "IfNode",
    "ListNode",
    "NilNode",
    "Node",
    "NumberNode",
    "PipeNode",
    "RangeNode",
    "StringNode",
    "Template",
    "TemplateNode",
    "TextNode",
    "VariableNode",
    "WithNode",
    "template_messages",
    "template_tools",
    "walk",
    "walk_ancestors",
]

FUNC_NAMES = frozenset(BUILTINS) | frozenset(ollama_funcs(datetime.date.today))


class Template:
    """A parsed Go template: its node tree, the templates it defines, and ``execute``."""

    def __init__(self, trees: dict[str, Tree], name: str, text: str) -> None:
        self._trees = trees
        self.name = name
        self.text = text

    @classmethod
    def parse(cls, text: str, name: str = "") -> Template:
        """Parse ``text`` as Go's ``template.New(name).Funcs(ollama).Parse`` would.

        Raises TemplateError with Go's message, e.g. ``template: :3: unexpected "}" in
        operand``, and its line.
        """
        try:
            trees = parse(name, text, FUNC_NAMES)
        except ParseError as err:
            raise TemplateError(err.message, err.line) from None
        except RecursionError:  # Go allows deeper nesting than Python's stack does
            raise TemplateError(f"template: {name}: nesting too deep to parse") from None
        return cls(trees, name, text)

    @property
    def root(self) -> ListNode:
        """The top-level node list."""
        return self._trees[self.name].root

    def defined(self) -> dict[str, ListNode]:
        """Every named template (``define``/``block`` and the top one) by name."""
        return {name: tree.root for name, tree in self._trees.items()}

    def walk(self) -> Iterator[Node]:
        """Every node of the top template, then of the other defined ones, depth first."""
        for root in self._roots():
            yield from walk(root)

    def walk_ancestors(self) -> Iterator[tuple[Node, tuple[Node, ...]]]:
        """:meth:`walk` with each node's ancestors, e.g. to find the list around a field."""
        for root in self._roots():
            yield from walk_ancestors(root)

    def _roots(self) -> list[ListNode]:
        others = [self._trees[name].root for name in sorted(self._trees) if name != self.name]
        return [self.root, *others]

    def identifiers(self) -> set[str]:
        """The field and variable names the template uses, as Ollama's ``Vars`` lists them.

        Like Ollama's ``Identifiers`` this collects the names of field nodes
        (``.Messages`` → ``Messages``, ``.Function.Name`` → ``Function``, ``Name``) and
        variable nodes (``$``, ``$msg``, ``$.Tools`` → ``$``, ``Tools``) reachable through
        actions, branches and template calls, in every defined template; unlike Ollama's
        they keep their case.
        """
        names: set[str] = set()
        for tree in self._trees.values():
            for node in tree.root.nodes:
                names.update(_identifiers(node))
        return names

    def uses(self, field: str) -> bool:
        """Whether the template uses ``field`` (case-insensitively, as Ollama checks)."""
        wanted = field.lower()
        return any(name.lower() == wanted for name in self.identifiers())

    def with_root(self, root: ListNode) -> Template:
        """A copy executing ``root`` as its top template (the defined ones are shared)."""
        trees = dict(self._trees)
        old = trees[self.name]
        trees[self.name] = Tree(old.name, old.parse_name, root, old.text)
        return Template(trees, self.name, self.text)

    def execute(self, data: Any = None, *, today: Callable[[], datetime.date] | None = None) -> str:
        """Render the template on ``data``; raises TemplateError where Go's Execute fails.

        ``today`` is the clock of ``currentDate``/``yesterdayDate`` (local date by default).
        """
        funcs = ollama_funcs(today or datetime.date.today)
        try:
            return execute(self._trees, self.name, data, funcs)
        except ExecError as err:
            raise TemplateError(err.message, err.line) from None
        except RecursionError:  # structures nested deeper than Python's stack allows
            raise TemplateError(f"template: {self.name}: nesting too deep to execute") from None

    def __str__(self) -> str:
        return self.text


def _identifiers(node: Node) -> list[str]:
    """Ollama's ``Identifiers``: names of fields and variables in pipelines and bodies."""
    if isinstance(node, ListNode):
        return [name for n in node.nodes for name in _identifiers(n)]
    if isinstance(node, (TemplateNode, ActionNode)):
        return _identifiers(node.pipe) if node.pipe is not None else []
    if isinstance(node, BranchNode):
        names = _identifiers(node.pipe)
        for lst in (node.list, node.else_list):
            if lst is not None:
                names += _identifiers(lst)
        return names
    if isinstance(node, PipeNode):
        return [name for c in node.cmds for a in c.args for name in _identifiers(a)]
    if isinstance(node, (FieldNode, VariableNode)):
        return list(node.ident)
    return []
