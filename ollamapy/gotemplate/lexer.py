"""The scanner of Go's text/template, token for token.

Ported from Go's ``text/template/parse/lex.go`` so that what counts as a token, where
trim markers cut text and which error a malformed action reports are exactly Go's. The
parser pulls one :class:`Item` at a time; there is no goroutine and no channel.
Positions are code-point offsets into the template text (the parser converts them to
Go's byte columns only when it formats an error).
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from ollamapy.golang import is_print as is_go_print
from ollamapy.golang import quote as go_quote

__all__ = ["Item", "ItemType", "Lexer", "is_alphanumeric", "is_space", "quote_rune_u"]


class ItemType(enum.IntEnum):
    """Token kinds, in Go's order: every value above KEYWORD is a keyword."""

    ERROR = 0
    BOOL = enum.auto()
    CHAR = enum.auto()
    CHAR_CONSTANT = enum.auto()
    COMMENT = enum.auto()
    COMPLEX = enum.auto()
    ASSIGN = enum.auto()
    DECLARE = enum.auto()
    EOF = enum.auto()
    FIELD = enum.auto()
    IDENTIFIER = enum.auto()
    LEFT_DELIM = enum.auto()
    LEFT_PAREN = enum.auto()
    NUMBER = enum.auto()
    PIPE = enum.auto()
    RAW_STRING = enum.auto()
    RIGHT_DELIM = enum.auto()
    RIGHT_PAREN = enum.auto()
    SPACE = enum.auto()
    STRING = enum.auto()
    TEXT = enum.auto()
    VARIABLE = enum.auto()
    KEYWORD = enum.auto()
    BLOCK = enum.auto()
    BREAK = enum.auto()
    CONTINUE = enum.auto()
    DOT = enum.auto()
    DEFINE = enum.auto()
    ELSE = enum.auto()
    END = enum.auto()
    IF = enum.auto()
    NIL = enum.auto()
    RANGE = enum.auto()
    TEMPLATE = enum.auto()
    WITH = enum.auto()


KEYWORDS: dict[str, ItemType] = {
    ".": ItemType.DOT,
    "block": ItemType.BLOCK,
    "break": ItemType.BREAK,
    "continue": ItemType.CONTINUE,
    "define": ItemType.DEFINE,
    "else": ItemType.ELSE,
    "end": ItemType.END,
    "if": ItemType.IF,
    "range": ItemType.RANGE,
    "nil": ItemType.NIL,
    "template": ItemType.TEMPLATE,
    "with": ItemType.WITH,
}

LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"
LEFT_COMMENT = "/*"
RIGHT_COMMENT = "*/"
SPACE_CHARS = " \t\r\n"
TRIM_MARKER_LEN = 2  # the marker plus the space before or after it
EOF = ""  # what next() returns at the end of input


@dataclass(frozen=True)
class Item:
    """One token: its kind, start offset, text and the line it starts on."""

    typ: ItemType
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        """The token as Go's parser quotes it in "unexpected …" errors."""
        if self.typ == ItemType.EOF:
            return "EOF"
        if self.typ == ItemType.ERROR:
            return self.val
        if self.typ > ItemType.KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def is_space(r: str) -> bool:
    """Go's template space: space, tab, carriage return or newline."""
    return r != EOF and r in SPACE_CHARS


def is_alphanumeric(r: str) -> bool:
    """A letter, a decimal digit or an underscore, by Unicode category as Go decides."""
    if r == EOF:
        return False
    if r == "_":
        return True
    cat = unicodedata.category(r)
    return cat.startswith("L") or cat == "Nd"


def quote_rune_u(r: str) -> str:
    """Go's ``%#U`` of a rune: ``U+0021 '!'`` (the quoted form only when printable)."""
    code = f"U+{ord(r):04X}"
    return f"{code} '{r}'" if is_go_print(r) else code


def _has_left_trim_marker(s: str) -> bool:
    return len(s) >= 2 and s[0] == "-" and is_space(s[1])


def _has_right_trim_marker(s: str) -> bool:
    return len(s) >= 2 and is_space(s[0]) and s[1] == "-"


def _right_trim_length(s: str) -> int:
    return len(s) - len(s.rstrip(SPACE_CHARS))


def _left_trim_length(s: str) -> int:
    return len(s) - len(s.lstrip(SPACE_CHARS))


StateFn = Callable[["Lexer"], Optional["StateFn"]]


class Lexer:
    """Scans template text into :class:`Item`s on demand (``next_item``)."""

    def __init__(self, text: str, *, break_ok: bool = True, continue_ok: bool = True) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.at_eof = False
        self.paren_depth = 0
        self.line = 1
        self.start_line = 1
        self.item = Item(ItemType.EOF, 0, "EOF", 1)
        self.inside_action = False
        self.break_ok = break_ok
        self.continue_ok = continue_ok

    # --- rune-level helpers -------------------------------------------------------

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.at_eof = True
            return EOF
        r = self.input[self.pos]
        self.pos += 1
        if r == "\n":
            self.line += 1
        return r

    def peek(self) -> str:
        r = self.next()
        self.backup()
        return r

    def backup(self) -> None:
        if not self.at_eof and self.pos > 0:
            self.pos -= 1
            if self.input[self.pos] == "\n":
                self.line -= 1

    def this_item(self, typ: ItemType) -> Item:
        item = Item(typ, self.start, self.input[self.start : self.pos], self.start_line)
        self.start = self.pos
        self.start_line = self.line
        return item

    def emit(self, typ: ItemType) -> StateFn | None:
        """Hand the pending text to the parser as a token; this scan step ends."""
        self.item = self.this_item(typ)
        return None

    def emit_item(self, item: Item) -> StateFn | None:
        """Hand ``item`` to the parser; this scan step ends."""
        self.item = item
        return None

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def accept(self, valid: str) -> bool:
        r = self.next()
        if r != EOF and r in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            r = self.next()
            if r == EOF or r not in valid:
                break
        self.backup()

    def errorf(self, message: str) -> StateFn | None:
        """Hand an error token to the parser and empty the input so scanning stops."""
        self.item = Item(ItemType.ERROR, self.start, message, self.start_line)
        self.start = 0
        self.pos = 0
        self.input = ""
        return None

    def next_item(self) -> Item:
        """Scan and return the next token."""
        self.item = Item(ItemType.EOF, self.pos, "EOF", self.start_line)
        state: StateFn | None = lex_inside_action if self.inside_action else lex_text
        while state is not None:
            state = state(self)
        return self.item

    def at_right_delim(self) -> tuple[bool, bool]:
        """Whether a right delimiter (possibly trim-marked) starts here, and if trimmed."""
        rest = self.input[self.pos :]
        if _has_right_trim_marker(rest) and rest[TRIM_MARKER_LEN:].startswith(RIGHT_DELIM):
            return True, True
        if rest.startswith(RIGHT_DELIM):
            return True, False
        return False, False

    def at_terminator(self) -> bool:
        r = self.peek()
        if is_space(r):
            return True
        if r in (EOF, ".", ",", "|", ":", ")", "("):
            return True
        return self.input.startswith(RIGHT_DELIM, self.pos)

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if is_alphanumeric(self.peek()):
            self.next()
            return False
        return True


# --- state functions ---------------------------------------------------------------


def lex_text(lx: Lexer) -> StateFn | None:
    x = lx.input.find(LEFT_DELIM, lx.pos)
    if x >= 0:
        if x > lx.pos:
            lx.pos = x
            trim_length = 0
            delim_end = lx.pos + len(LEFT_DELIM)
            if _has_left_trim_marker(lx.input[delim_end : delim_end + 2]):
                trim_length = _right_trim_length(lx.input[lx.start : lx.pos])
            lx.pos -= trim_length
            lx.line += lx.input.count("\n", lx.start, lx.pos)
            item = lx.this_item(ItemType.TEXT)
            lx.pos += trim_length
            lx.ignore()
            if item.val:
                return lx.emit_item(item)
        return lex_left_delim
    lx.pos = len(lx.input)
    if lx.pos > lx.start:
        lx.line += lx.input.count("\n", lx.start, lx.pos)
        return lx.emit(ItemType.TEXT)
    return lx.emit(ItemType.EOF)


def lex_left_delim(lx: Lexer) -> StateFn | None:
    lx.pos += len(LEFT_DELIM)
    trim_space = _has_left_trim_marker(lx.input[lx.pos : lx.pos + 2])
    after_marker = TRIM_MARKER_LEN if trim_space else 0
    if lx.input.startswith(LEFT_COMMENT, lx.pos + after_marker):
        lx.pos += after_marker
        lx.ignore()
        return lex_comment
    item = lx.this_item(ItemType.LEFT_DELIM)
    lx.inside_action = True
    lx.pos += after_marker
    lx.ignore()
    lx.paren_depth = 0
    return lx.emit_item(item)


def lex_comment(lx: Lexer) -> StateFn | None:
    lx.pos += len(LEFT_COMMENT)
    x = lx.input.find(RIGHT_COMMENT, lx.pos)
    if x < 0:
        return lx.errorf("unclosed comment")
    lx.pos = x + len(RIGHT_COMMENT)
    delim, trim_space = lx.at_right_delim()
    if not delim:
        return lx.errorf("comment ends before closing delimiter")
    lx.line += lx.input.count("\n", lx.start, lx.pos)
    lx.this_item(ItemType.COMMENT)  # comments are not emitted (no ParseComments mode)
    if trim_space:
        lx.pos += TRIM_MARKER_LEN
    lx.pos += len(RIGHT_DELIM)
    if trim_space:
        lx.pos += _left_trim_length(lx.input[lx.pos :])
    lx.ignore()
    return lex_text


def lex_right_delim(lx: Lexer) -> StateFn | None:
    _, trim_space = lx.at_right_delim()
    if trim_space:
        lx.pos += TRIM_MARKER_LEN
        lx.ignore()
    lx.pos += len(RIGHT_DELIM)
    item = lx.this_item(ItemType.RIGHT_DELIM)
    if trim_space:
        lx.pos += _left_trim_length(lx.input[lx.pos :])
        lx.ignore()
    lx.inside_action = False
    return lx.emit_item(item)


def lex_inside_action(lx: Lexer) -> StateFn | None:
    delim, _ = lx.at_right_delim()
    if delim:
        if lx.paren_depth == 0:
            return lex_right_delim
        return lx.errorf("unclosed left paren")
    r = lx.next()
    if r == EOF:
        return lx.errorf("unclosed action")
    if is_space(r):
        lx.backup()
        return lex_space
    if r == "=":
        return lx.emit(ItemType.ASSIGN)
    if r == ":":
        if lx.next() != "=":
            return lx.errorf("expected :=")
        return lx.emit(ItemType.DECLARE)
    if r == "|":
        return lx.emit(ItemType.PIPE)
    if r == '"':
        return lex_quote
    if r == "`":
        return lex_raw_quote
    if r == "$":
        return lex_variable
    if r == "'":
        return lex_char
    if r == ".":
        if lx.pos < len(lx.input):
            c = lx.input[lx.pos]
            if c < "0" or c > "9":
                return lex_field
        lx.backup()
        return lex_number
    if r in "+-" or "0" <= r <= "9":
        lx.backup()
        return lex_number
    if is_alphanumeric(r):
        lx.backup()
        return lex_identifier
    if r == "(":
        lx.paren_depth += 1
        return lx.emit(ItemType.LEFT_PAREN)
    if r == ")":
        lx.paren_depth -= 1
        if lx.paren_depth < 0:
            return lx.errorf("unexpected right paren")
        return lx.emit(ItemType.RIGHT_PAREN)
    if " " <= r <= "~":
        return lx.emit(ItemType.CHAR)
    return lx.errorf(f"unrecognized character in action: {quote_rune_u(r)}")


def lex_space(lx: Lexer) -> StateFn | None:
    num_spaces = 0
    while is_space(lx.peek()):
        lx.next()
        num_spaces += 1
    rest = lx.input[lx.pos - 1 :]
    if _has_right_trim_marker(rest) and rest[TRIM_MARKER_LEN:].startswith(RIGHT_DELIM):
        lx.backup()
        if num_spaces == 1:
            return lex_right_delim
    return lx.emit(ItemType.SPACE)


def lex_identifier(lx: Lexer) -> StateFn | None:
    while True:
        r = lx.next()
        if is_alphanumeric(r):
            continue
        lx.backup()
        word = lx.input[lx.start : lx.pos]
        if not lx.at_terminator():
            return lx.errorf(f"bad character {quote_rune_u(r)}")
        kw = KEYWORDS.get(word)
        if kw is not None and kw > ItemType.KEYWORD:
            if (kw == ItemType.BREAK and not lx.break_ok) or (kw == ItemType.CONTINUE and not lx.continue_ok):
                return lx.emit(ItemType.IDENTIFIER)
            return lx.emit(kw)
        if word[0] == ".":
            return lx.emit(ItemType.FIELD)
        if word in ("true", "false"):
            return lx.emit(ItemType.BOOL)
        return lx.emit(ItemType.IDENTIFIER)


def lex_field(lx: Lexer) -> StateFn | None:
    return _lex_field_or_variable(lx, ItemType.FIELD)


def lex_variable(lx: Lexer) -> StateFn | None:
    if lx.at_terminator():
        return lx.emit(ItemType.VARIABLE)
    return _lex_field_or_variable(lx, ItemType.VARIABLE)


def _lex_field_or_variable(lx: Lexer, typ: ItemType) -> StateFn | None:
    if lx.at_terminator():
        return lx.emit(ItemType.VARIABLE if typ == ItemType.VARIABLE else ItemType.DOT)
    while True:
        r = lx.next()
        if not is_alphanumeric(r):
            lx.backup()
            break
    if not lx.at_terminator():
        return lx.errorf(f"bad character {quote_rune_u(r)}")
    return lx.emit(typ)


def _lex_quoted(lx: Lexer, closing: str, typ: ItemType, message: str) -> StateFn | None:
    while True:
        r = lx.next()
        if r == "\\":
            r = lx.next()
            if r != EOF and r != "\n":
                continue
            return lx.errorf(message)
        if r == EOF or r == "\n":
            return lx.errorf(message)
        if r == closing:
            return lx.emit(typ)


def lex_char(lx: Lexer) -> StateFn | None:
    return _lex_quoted(lx, "'", ItemType.CHAR_CONSTANT, "unterminated character constant")


def lex_quote(lx: Lexer) -> StateFn | None:
    return _lex_quoted(lx, '"', ItemType.STRING, "unterminated quoted string")


def lex_raw_quote(lx: Lexer) -> StateFn | None:
    while True:
        r = lx.next()
        if r == EOF:
            return lx.errorf("unterminated raw quoted string")
        if r == "`":
            return lx.emit(ItemType.RAW_STRING)


def lex_number(lx: Lexer) -> StateFn | None:
    if not lx.scan_number():
        return lx.errorf(f"bad number syntax: {go_quote(lx.input[lx.start : lx.pos])}")
    sign = lx.peek()
    if sign in ("+", "-") and sign != EOF:
        if not lx.scan_number() or lx.input[lx.pos - 1] != "i":
            return lx.errorf(f"bad number syntax: {go_quote(lx.input[lx.start : lx.pos])}")
        return lx.emit(ItemType.COMPLEX)
    return lx.emit(ItemType.NUMBER)
