"""The parse tree of a Go template and the parser that builds it.

Ported from Go's ``text/template/parse`` (parse.go, node.go): the same grammar, the same
three-token lookahead (so errors name the same line), the same node types and the same
``String()`` forms, which execution errors quote. The node classes are public so code
can inspect a template — list the fields it uses, find the text inside
``{{ if .ToolCalls }}``, the tags around ``{{ .Thinking }}`` — as Ollama does.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from ollamapy.golang import NumError, go_bytes, parse_int, parse_uint
from ollamapy.golang import quote as go_quote
from ollamapy.golang.strconv import underscore_ok

from .lexer import Item, ItemType, Lexer

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
    "ParseError",
    "PipeNode",
    "RangeNode",
    "StringNode",
    "TemplateNode",
    "TextNode",
    "Tree",
    "VariableNode",
    "WithNode",
    "location",
    "parse",
    "unquote",
    "unquote_char",
    "walk",
    "walk_ancestors",
]


class ParseError(Exception):
    """A template that does not parse: Go's message and the line it names."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


# --- nodes --------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A parse-tree node; ``pos`` is its offset in the template text."""

    pos: int

    def __str__(self) -> str:  # pragma: no cover - every node overrides it
        raise NotImplementedError

    def children(self) -> list[Node]:
        """The nodes directly below this one, in source order."""
        return []


@dataclass(eq=False)
class ListNode(Node):
    """A sequence of nodes."""

    nodes: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)

    def children(self) -> list[Node]:
        return list(self.nodes)


@dataclass(eq=False)
class TextNode(Node):
    """Plain text between actions."""

    text: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(eq=False)
class VariableNode(Node):
    """``$x`` or ``$x.Field.Chain``; ``ident[0]`` is the variable with its ``$``."""

    ident: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass(eq=False)
class CommandNode(Node):
    """One command of a pipeline: a function, field or value and its arguments."""

    args: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        parts = []
        for arg in self.args:
            parts.append(f"({arg})" if isinstance(arg, PipeNode) else str(arg))
        return " ".join(parts)

    def children(self) -> list[Node]:
        return list(self.args)


@dataclass(eq=False)
class PipeNode(Node):
    """A pipeline, with the variables it declares (``:=``) or assigns (``=``)."""

    line: int = 0
    is_assign: bool = False
    decl: list[VariableNode] = field(default_factory=list)
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)

    def children(self) -> list[Node]:
        return [*self.decl, *self.cmds]


@dataclass(eq=False)
class ActionNode(Node):
    """``{{ pipeline }}``: evaluates and prints (unless it declares variables)."""

    line: int = 0
    pipe: PipeNode = field(default_factory=lambda: PipeNode(0))

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"

    def children(self) -> list[Node]:
        return [self.pipe]


@dataclass(eq=False)
class IdentifierNode(Node):
    """A function name."""

    ident: str = ""

    def __str__(self) -> str:
        return self.ident


@dataclass(eq=False)
class DotNode(Node):
    """``.``, the cursor."""

    def __str__(self) -> str:
        return "."


@dataclass(eq=False)
class NilNode(Node):
    """The untyped ``nil``."""

    def __str__(self) -> str:
        return "nil"


@dataclass(eq=False)
class FieldNode(Node):
    """``.Field`` or ``.Field.Chain`` (names without their dots)."""

    ident: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


@dataclass(eq=False)
class ChainNode(Node):
    """A term followed by field accesses: ``(pipeline).Field``."""

    node: Node = field(default_factory=lambda: DotNode(0))
    field: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        base = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return base + "".join("." + f for f in self.field)

    def children(self) -> list[Node]:
        return [self.node]


@dataclass(eq=False)
class BoolNode(Node):
    """``true`` or ``false``."""

    true: bool = False

    def __str__(self) -> str:
        return "true" if self.true else "false"


@dataclass(eq=False)
class NumberNode(Node):
    """A numeric constant, stored under every type that can represent it (as Go does)."""

    text: str = ""
    is_int: bool = False
    is_uint: bool = False
    is_float: bool = False
    is_complex: bool = False
    int64: int = 0
    uint64: int = 0
    float64: float = 0.0
    complex128: complex = 0j

    def __str__(self) -> str:
        return self.text


@dataclass(eq=False)
class StringNode(Node):
    """A string constant: ``quoted`` as written, ``text`` unquoted."""

    quoted: str = ""
    text: str = ""

    def __str__(self) -> str:
        return self.quoted


@dataclass(eq=False)
class _EndNode(Node):
    def __str__(self) -> str:
        return "{{end}}"


@dataclass(eq=False)
class _ElseNode(Node):
    line: int = 0

    def __str__(self) -> str:
        return "{{else}}"


@dataclass(eq=False)
class BranchNode(Node):
    """What ``if``, ``range`` and ``with`` share: a pipeline, a body and an else body."""

    line: int = 0
    pipe: PipeNode = field(default_factory=lambda: PipeNode(0))
    list: ListNode = field(default_factory=lambda: ListNode(0))
    else_list: ListNode | None = None

    keyword = ""

    def __str__(self) -> str:
        s = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"

    def children(self) -> builtins.list[Node]:
        out: builtins.list[Node] = [self.pipe, self.list]
        if self.else_list is not None:
            out.append(self.else_list)
        return out


@dataclass(eq=False)
class IfNode(BranchNode):
    """``{{if}} … {{else}} … {{end}}`` (``else if`` nests an IfNode in the else list)."""

    keyword = "if"


@dataclass(eq=False)
class RangeNode(BranchNode):
    """``{{range}} … {{else}} … {{end}}``."""

    keyword = "range"


@dataclass(eq=False)
class WithNode(BranchNode):
    """``{{with}} … {{else}} … {{end}}`` (``else with`` nests a WithNode)."""

    keyword = "with"


@dataclass(eq=False)
class BreakNode(Node):
    """``{{break}}``."""

    line: int = 0

    def __str__(self) -> str:
        return "{{break}}"


@dataclass(eq=False)
class ContinueNode(Node):
    """``{{continue}}``."""

    line: int = 0

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(eq=False)
class TemplateNode(Node):
    """``{{template "name" pipeline}}`` (also what ``{{block}}`` leaves in place)."""

    line: int = 0
    name: str = ""
    pipe: PipeNode | None = None

    def __str__(self) -> str:
        s = "{{template " + go_quote(self.name)
        if self.pipe is not None:
            s += " " + str(self.pipe)
        return s + "}}"

    def children(self) -> list[Node]:
        return [self.pipe] if self.pipe is not None else []


def walk(node: Node) -> Iterator[Node]:
    """Every node of a subtree, depth first in source order, ``node`` itself first."""
    yield node
    for child in node.children():
        yield from walk(child)


def walk_ancestors(node: Node, ancestors: tuple[Node, ...] = ()) -> Iterator[tuple[Node, tuple[Node, ...]]]:
    """Like :func:`walk`, with each node the chain of nodes above it (outermost first)."""
    yield node, ancestors
    inner = (*ancestors, node)
    for child in node.children():
        yield from walk_ancestors(child, inner)


@dataclass(eq=False)
class Tree:
    """One named template: its root list and the text it was parsed from."""

    name: str
    parse_name: str
    root: ListNode
    text: str


def location(text: str, parse_name: str, pos: int) -> str:
    """Go's ``name:line:col`` of a node (the column counts UTF-8 bytes)."""
    before = text[:pos]
    newline = before.rfind("\n")
    col = len(go_bytes(before)) if newline < 0 else len(go_bytes(before[newline + 1 :]))
    return f"{parse_name}:{1 + before.count(chr(10))}:{col}"


# --- strconv.Unquote and number parsing ----------------------------------------------


class _SyntaxError(Exception):
    """strconv.ErrSyntax."""


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def unquote_char(s: str, quote: str) -> tuple[int, bool, str]:
    """``strconv.UnquoteChar``: (value, multibyte, tail); raises on bad syntax."""
    if not s:
        raise _SyntaxError
    c = s[0]
    if c == quote and quote in "'\"":
        raise _SyntaxError
    if ord(c) >= 0x80:
        return ord(c), True, s[1:]
    if c != "\\":
        return ord(c), False, s[1:]
    if len(s) <= 1:
        raise _SyntaxError
    c = s[1]
    s = s[2:]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], False, s
    if c in "xuU":
        n = {"x": 2, "u": 4, "U": 8}[c]
        if len(s) < n or any(ch not in "0123456789abcdefABCDEF" for ch in s[:n]):
            raise _SyntaxError
        v = int(s[:n], 16)
        if c == "x":
            return v, False, s[n:]
        if v > 0x10FFFF or 0xD800 <= v < 0xE000:
            raise _SyntaxError
        return v, True, s[n:]
    if "0" <= c <= "7":
        if len(s) < 2 or any(ch not in "01234567" for ch in s[:2]):
            raise _SyntaxError
        v = int(c + s[:2], 8)
        if v > 255:
            raise _SyntaxError
        return v, False, s[2:]
    if c in "'\"":
        if c != quote:
            raise _SyntaxError
        return ord(c), False, s
    raise _SyntaxError


def unquote(s: str) -> str:
    """``strconv.Unquote`` of a Go string literal; raises ValueError("invalid syntax")."""
    try:
        return _unquote(s)
    except _SyntaxError:
        raise ValueError("invalid syntax") from None


def _unquote(s: str) -> str:
    if len(s) < 2:
        raise _SyntaxError
    quote = s[0]
    if quote == "`":
        if s[-1] != "`" or "`" in s[1:-1]:
            raise _SyntaxError
        return s[1:-1].replace("\r", "")
    if quote not in "\"'" or s[-1] != quote:
        raise _SyntaxError
    body = s[1:-1]
    out = bytearray()
    while body:
        if body[0] == "\n":
            raise _SyntaxError
        value, multibyte, body = unquote_char(body, quote)
        if value < 0x80 or not multibyte:
            if value < 0x100 and not multibyte:
                out.append(value)
            else:
                out += chr(value).encode("utf-8", "surrogatepass")
        else:
            out += chr(value).encode("utf-8", "surrogatepass")
        if quote == "'" and body:
            raise _SyntaxError
    return out.decode("utf-8", "surrogateescape")


def _parse_uint(s: str) -> int | None:
    """``strconv.ParseUint(s, 0, 64)``; None on any error."""
    try:
        return parse_uint(s, 0)
    except NumError:
        return None


def _parse_int(s: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)``; None on any error."""
    try:
        return parse_int(s, 0)
    except NumError:
        return None


_DEC_FLOAT = re.compile(r"[+-]?(?:[0-9_]+(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][+-]?[0-9][0-9_]*)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?|\.[0-9a-fA-F_]+)[pP][+-]?[0-9][0-9_]*")


def _parse_float(s: str) -> float | None:
    """``strconv.ParseFloat(s, 64)`` for Go number syntax; None on error or overflow."""
    if _HEX_FLOAT.fullmatch(s):
        if "_" in s and not underscore_ok(s):
            return None
        mant, _, exp = s.replace("_", "").lower().partition("p")
        try:
            f = float.fromhex(mant + "p" + exp)
        except (ValueError, OverflowError):
            return None
    elif _DEC_FLOAT.fullmatch(s) and any(c.isdigit() for c in s.split("e")[0].split("E")[0]):
        if "_" in s and not underscore_ok(s):
            return None
        f = float(s.replace("_", ""))
    else:
        return None
    if f in (float("inf"), float("-inf")):
        return None
    return f


def _new_number(pos: int, text: str, typ: ItemType) -> NumberNode:
    """Go's ``newNumber``; raises ValueError with Go's message."""
    n = NumberNode(pos, text=text)
    if typ == ItemType.CHAR_CONSTANT:
        try:
            value, _, tail = unquote_char(text[1:], text[0])
        except _SyntaxError:
            raise ValueError("invalid syntax") from None
        if tail != "'":
            raise ValueError(f"malformed character constant: {text}")
        n.int64 = n.uint64 = value
        n.float64 = float(value)
        n.is_int = n.is_uint = n.is_float = True
        return n
    if typ == ItemType.COMPLEX:
        m = re.fullmatch(r"([+-]?[^+-]+(?:[eEpP][+-][^+-]*)?)([+-][^+-]+(?:[eEpP][+-][^+-]*)?)i", text)
        re_part = _parse_float(m.group(1)) if m else None
        im_part = _parse_float(m.group(2)) if m else None
        if re_part is None or im_part is None:
            raise ValueError("expected integer")
        n.is_complex = True
        n.complex128 = complex(re_part, im_part)
        _simplify_complex(n)
        return n
    if text.endswith("i"):
        f = _parse_float(text[:-1])
        if f is not None:
            n.is_complex = True
            n.complex128 = complex(0, f)
            _simplify_complex(n)
            return n
    u = _parse_uint(text)
    if u is not None:
        n.is_uint = True
        n.uint64 = u
    i = _parse_int(text)
    if i is not None:
        n.is_int = True
        n.int64 = i
        if i == 0:
            n.is_uint = True
            n.uint64 = u or 0
    if n.is_int:
        n.is_float = True
        n.float64 = float(n.int64)
    elif n.is_uint:
        n.is_float = True
        n.float64 = float(n.uint64)
    else:
        f = _parse_float(text)
        if f is not None:
            if not any(c in text for c in ".eEpP"):
                raise ValueError(f"integer overflow: {go_quote(text)}")
            n.is_float = True
            n.float64 = f
            if f == int(f) and -(1 << 63) <= int(f) < 1 << 63:
                n.is_int = True
                n.int64 = int(f)
            if f == int(f) and 0 <= int(f) < 1 << 64:
                n.is_uint = True
                n.uint64 = int(f)
    if not (n.is_int or n.is_uint or n.is_float):
        raise ValueError(f"illegal number syntax: {go_quote(text)}")
    return n


def _simplify_complex(n: NumberNode) -> None:
    n.is_float = n.complex128.imag == 0
    if n.is_float:
        f = n.complex128.real
        n.float64 = f
        n.is_int = f == int(f) and -(1 << 63) <= int(f) < 1 << 63
        if n.is_int:
            n.int64 = int(f)
        n.is_uint = f == int(f) and 0 <= int(f) < 1 << 64
        if n.is_uint:
            n.uint64 = int(f)


# --- the parser -----------------------------------------------------------------------


_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def is_empty_tree(n: Node | None) -> bool:
    """Go's ``IsEmptyTree``: nothing but space and comments."""
    if n is None:
        return True
    if isinstance(n, ListNode):
        return all(is_empty_tree(x) for x in n.nodes)
    if isinstance(n, TextNode):
        return n.text.strip(_GO_SPACE) == ""
    return False


class _Parser:
    """The state of parsing one template (and the ``define``s inside it)."""

    def __init__(self, name: str, text: str, funcs: frozenset[str], tree_set: dict[str, Tree]) -> None:
        self.name = name
        self.parse_name = name
        self.text = text
        self.funcs = funcs
        self.tree_set = tree_set
        self.lex = Lexer(text, break_ok="break" not in funcs, continue_ok="continue" not in funcs)
        self.token: list[Item] = [Item(ItemType.EOF, 0, "", 0)] * 3
        self.peek_count = 0
        self.vars = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.root: ListNode | None = None

    def sub(self, name: str) -> _Parser:
        """A parser for a ``define``/``block`` body sharing this one's lexer."""
        p = _Parser.__new__(_Parser)
        p.name = name
        p.parse_name = self.parse_name
        p.text = self.text
        p.funcs = self.funcs
        p.tree_set = self.tree_set
        p.lex = self.lex
        p.token = [Item(ItemType.EOF, 0, "", 0)] * 3  # a new tree has its own lookahead
        p.peek_count = 0
        p.vars = ["$"]
        p.action_line = 0
        p.range_depth = 0
        p.root = None
        return p

    # --- token stream --------------------------------------------------------------

    def next(self) -> Item:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            self.token[0] = self.lex.next_item()
        return self.token[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: Item) -> None:
        self.token[1] = t1
        self.peek_count = 2

    def backup3(self, t2: Item, t1: Item) -> None:
        self.token[1] = t1
        self.token[2] = t2
        self.peek_count = 3

    def peek(self) -> Item:
        if self.peek_count > 0:
            return self.token[self.peek_count - 1]
        self.peek_count = 1
        self.token[0] = self.lex.next_item()
        return self.token[0]

    def next_non_space(self) -> Item:
        while True:
            token = self.next()
            if token.typ != ItemType.SPACE:
                return token

    def peek_non_space(self) -> Item:
        token = self.next_non_space()
        self.backup()
        return token

    # --- errors ----------------------------------------------------------------------

    def errorf(self, message: str) -> None:
        line = self.token[0].line
        raise ParseError(f"template: {self.parse_name}:{line}: {message}", line)

    def expect(self, expected: ItemType, context: str) -> Item:
        token = self.next_non_space()
        if token.typ != expected:
            self.unexpected(token, context)
        return token

    def expect_one_of(self, e1: ItemType, e2: ItemType, context: str) -> Item:
        token = self.next_non_space()
        if token.typ not in (e1, e2):
            self.unexpected(token, context)
        return token

    def unexpected(self, token: Item, context: str) -> None:
        if token.typ == ItemType.ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != token.line:
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            self.errorf(f"{token}{extra}")
        self.errorf(f"unexpected {token} in {context}")

    # --- grammar -------------------------------------------------------------------

    def add(self) -> None:
        assert self.root is not None
        tree = self.tree_set.get(self.name)
        if tree is None or is_empty_tree(tree.root):
            self.tree_set[self.name] = Tree(self.name, self.parse_name, self.root, self.text)
            return
        if not is_empty_tree(self.root):
            self.errorf(f"template: multiple definition of template {go_quote(self.name)}")

    def parse(self) -> None:
        self.root = ListNode(self.peek().pos)
        while self.peek().typ != ItemType.EOF:
            if self.peek().typ == ItemType.LEFT_DELIM:
                delim = self.next()
                if self.next_non_space().typ == ItemType.DEFINE:
                    self.sub("definition").parse_definition()
                    continue
                self.backup2(delim)
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                self.errorf(f"unexpected {n}")
            self.root.nodes.append(n)

    def parse_definition(self) -> None:
        context = "define clause"
        name = self.expect_one_of(ItemType.STRING, ItemType.RAW_STRING, context)
        try:
            self.name = unquote(name.val)
        except ValueError as err:
            self.errorf(str(err))
        self.expect(ItemType.RIGHT_DELIM, context)
        self.root, end = self.item_list()
        if not isinstance(end, _EndNode):
            self.errorf(f"unexpected {end} in {context}")
        self.add()

    def item_list(self) -> tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != ItemType.EOF:
            n = self.text_or_action()
            if isinstance(n, (_EndNode, _ElseNode)):
                return lst, n
            lst.nodes.append(n)
        self.errorf("unexpected EOF")
        raise AssertionError("unreachable")

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.typ == ItemType.TEXT:
            return TextNode(token.pos, text=token.val)
        if token.typ == ItemType.LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        self.unexpected(token, "input")
        raise AssertionError("unreachable")

    def action(self) -> Node:
        token = self.next_non_space()
        t = token.typ
        if t == ItemType.BLOCK:
            return self.block_control()
        if t == ItemType.BREAK:
            return self.break_control(token.pos, token.line)
        if t == ItemType.CONTINUE:
            return self.continue_control(token.pos, token.line)
        if t == ItemType.ELSE:
            return self.else_control()
        if t == ItemType.END:
            return self.end_control()
        if t == ItemType.IF:
            return self.parse_control(IfNode, "if")
        if t == ItemType.RANGE:
            return self.parse_control(RangeNode, "range")
        if t == ItemType.TEMPLATE:
            return self.template_control()
        if t == ItemType.WITH:
            return self.parse_control(WithNode, "with")
        self.backup()
        token = self.peek()
        return ActionNode(token.pos, line=token.line, pipe=self.pipeline("command", ItemType.RIGHT_DELIM))

    def break_control(self, pos: int, line: int) -> Node:
        token = self.next_non_space()
        if token.typ != ItemType.RIGHT_DELIM:
            self.unexpected(token, "{{break}}")
        if self.range_depth == 0:
            self.errorf("{{break}} outside {{range}}")
        return BreakNode(pos, line=line)

    def continue_control(self, pos: int, line: int) -> Node:
        token = self.next_non_space()
        if token.typ != ItemType.RIGHT_DELIM:
            self.unexpected(token, "{{continue}}")
        if self.range_depth == 0:
            self.errorf("{{continue}} outside {{range}}")
        return ContinueNode(pos, line=line)

    def pipeline(self, context: str, end: ItemType) -> PipeNode:
        token = self.peek_non_space()
        pipe = PipeNode(token.pos, line=token.line)
        while True:  # declarations: loops only for a range's second variable
            v = self.peek_non_space()
            if v.typ != ItemType.VARIABLE:
                break
            self.next()
            token_after_variable = self.peek()
            nxt = self.peek_non_space()
            if nxt.typ in (ItemType.ASSIGN, ItemType.DECLARE):
                pipe.is_assign = nxt.typ == ItemType.ASSIGN
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, ident=v.val.split(".")))
                self.vars.append(v.val)
            elif nxt.typ == ItemType.CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, ident=v.val.split(".")))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (ItemType.VARIABLE, ItemType.RIGHT_DELIM, ItemType.RIGHT_PAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            elif token_after_variable.typ == ItemType.SPACE:
                self.backup3(v, token_after_variable)
            else:
                self.backup2(v)
            break
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in _OPERAND_START:
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(token, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, c in enumerate(pipe.cmds[1:]):
            if isinstance(c.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def parse_control(self, cls: type[BranchNode], context: str) -> BranchNode:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(context, ItemType.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if isinstance(nxt, _ElseNode):
                if context == "if" and self.peek().typ == ItemType.IF:
                    self.next()
                    else_list = ListNode(nxt.pos, nodes=[self.parse_control(IfNode, "if")])
                elif context == "with" and self.peek().typ == ItemType.WITH:
                    self.next()
                    else_list = ListNode(nxt.pos, nodes=[self.parse_control(WithNode, "with")])
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, _EndNode):
                        self.errorf(f"expected end; found {nxt}")
            return cls(pipe.pos, line=pipe.line, pipe=pipe, list=lst, else_list=else_list)
        finally:
            del self.vars[mark:]

    def end_control(self) -> Node:
        return _EndNode(self.expect(ItemType.RIGHT_DELIM, "end").pos)

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ in (ItemType.IF, ItemType.WITH):
            return _ElseNode(peek.pos, line=peek.line)
        token = self.expect(ItemType.RIGHT_DELIM, "else")
        return _ElseNode(token.pos, line=token.line)

    def block_control(self) -> Node:
        context = "block clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = self.pipeline(context, ItemType.RIGHT_DELIM)
        block = self.sub(name)
        block.root, end = block.item_list()
        if not isinstance(end, _EndNode):
            self.errorf(f"unexpected {end} in {context}")
        block.add()
        return TemplateNode(token.pos, line=token.line, name=name, pipe=pipe)

    def template_control(self) -> Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe: PipeNode | None = None
        if self.next_non_space().typ != ItemType.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, ItemType.RIGHT_DELIM)
        return TemplateNode(token.pos, line=token.line, name=name, pipe=pipe)

    def parse_template_name(self, token: Item, context: str) -> str:
        if token.typ in (ItemType.STRING, ItemType.RAW_STRING):
            try:
                return unquote(token.val)
            except ValueError as err:
                self.errorf(str(err))
        self.unexpected(token, context)
        raise AssertionError("unreachable")

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == ItemType.SPACE:
                continue
            if token.typ in (ItemType.RIGHT_DELIM, ItemType.RIGHT_PAREN):
                self.backup()
            elif token.typ != ItemType.PIPE:
                self.unexpected(token, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == ItemType.FIELD:
            chain = ChainNode(self.peek().pos, node=node)
            while self.peek().typ == ItemType.FIELD:
                chain.field.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(chain.pos, ident=[*node.ident, *chain.field])
            if isinstance(node, VariableNode):
                return VariableNode(chain.pos, ident=[*node.ident, *chain.field])
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                self.errorf(f"unexpected . after term {go_quote(str(node))}")
            return chain
        return node

    def term(self) -> Node | None:
        token = self.next_non_space()
        t = token.typ
        if t == ItemType.IDENTIFIER:
            if token.val not in self.funcs:
                self.errorf(f"function {go_quote(token.val)} not defined")
            return IdentifierNode(token.pos, ident=token.val)
        if t == ItemType.DOT:
            return DotNode(token.pos)
        if t == ItemType.NIL:
            return NilNode(token.pos)
        if t == ItemType.VARIABLE:
            return self.use_var(token.pos, token.val)
        if t == ItemType.FIELD:
            return FieldNode(token.pos, ident=token.val[1:].split("."))
        if t == ItemType.BOOL:
            return BoolNode(token.pos, true=token.val == "true")
        if t in (ItemType.CHAR_CONSTANT, ItemType.COMPLEX, ItemType.NUMBER):
            try:
                return _new_number(token.pos, token.val, t)
            except ValueError as err:
                self.errorf(str(err))
        if t == ItemType.LEFT_PAREN:
            return self.pipeline("parenthesized pipeline", ItemType.RIGHT_PAREN)
        if t in (ItemType.STRING, ItemType.RAW_STRING):
            try:
                return StringNode(token.pos, quoted=token.val, text=unquote(token.val))
            except ValueError as err:
                self.errorf(str(err))
        self.backup()
        return None

    def use_var(self, pos: int, name: str) -> Node:
        v = VariableNode(pos, ident=name.split("."))
        if v.ident[0] in self.vars:
            return v
        self.errorf(f"undefined variable {go_quote(v.ident[0])}")
        raise AssertionError("unreachable")


_OPERAND_START = frozenset(
    {
        ItemType.BOOL,
        ItemType.CHAR_CONSTANT,
        ItemType.COMPLEX,
        ItemType.DOT,
        ItemType.FIELD,
        ItemType.IDENTIFIER,
        ItemType.NUMBER,
        ItemType.NIL,
        ItemType.RAW_STRING,
        ItemType.STRING,
        ItemType.VARIABLE,
        ItemType.LEFT_PAREN,
    }
)


def parse(name: str, text: str, funcs: frozenset[str]) -> dict[str, Tree]:
    """Parse ``text`` into its named trees (the top one named ``name``); raises ParseError."""
    tree_set: dict[str, Tree] = {}
    p = _Parser(name, text, funcs, tree_set)
    p.parse()
    p.add()
    return tree_set

