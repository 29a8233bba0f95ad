"""The Go template interpreter's public API, without a Go toolchain.

These pin what callers rely on: errors as TemplateError (HTTP 400) with Go's message and
the line, Go's printing of Ollama's data (tool lists, arguments and property maps as
JSON, ``<no value>`` for missing keys), the node tree and its walker, the identifiers a
template uses, and plain Python data (dataclasses, pydantic models). Byte-for-byte
agreement with Go over a large corpus is tested in test_gotemplate_go.py and
test_gotemplate_fuzz.py.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from ollamapy.errors import InvalidRequest, TemplateError
from ollamapy.gotemplate import (
    ActionNode,
    CommandNode,
    FieldNode,
    IfNode,
    ListNode,
    PipeNode,
    RangeNode,
    Template,
    TextNode,
    template_messages,
    template_tools,
)

TODAY = datetime.date(2025, 3, 1)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {
                "unit": {"type": "string", "enum": ["c", "f"]},
                "city": {"type": "string", "description": "The city"},
                "days": {"type": ["integer", "null"]},
            },
        },
    },
}


def render(text: str, data: Any = None) -> str:
    return Template.parse(text).execute(data, today=lambda: TODAY)


# --- errors --------------------------------------------------------------------------


def test_parse_error_carries_go_message_and_line() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("line1\nline2\n{{ if .X }}\n{{ .Y }")
    assert str(info.value) == 'template: :4: unexpected "}" in operand'
    assert info.value.line == 4
    assert isinstance(info.value, InvalidRequest) and info.value.status_code == 400


def test_parse_error_names_the_template() -> None:
    with pytest.raises(TemplateError, match=r'^template: chat:1: function "nope" not defined$'):
        Template.parse("{{ nope }}", name="chat")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ end }}", "template: :1: unexpected {{end}}"),
        ("{{ if .X }}", "template: :1: unexpected EOF"),
        ("{{ $x }}", 'template: :1: undefined variable "$x"'),
        ("{{ break }}", "template: :1: {{break}} outside {{range}}"),
        ("{{ 089 }}", 'template: :1: integer overflow: "089"'),
        ("{{/* open", "template: :1: unclosed comment"),
        ('{{ "a" | 1 }}', "template: :1: non executable command in pipeline stage 2"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse(text)
    assert str(info.value) == message


def test_execution_error_carries_location_and_line() -> None:
    tmpl = Template.parse("a\nb {{ .S }}\n  {{ len .N }}")
    with pytest.raises(TemplateError) as info:
        tmpl.execute({"S": "s", "N": 3})
    assert str(info.value) == 'template: :3:5: executing "" at <len .N>: error calling len: len of type int'
    assert info.value.line == 3


def test_field_of_missing_key_fails_as_in_go() -> None:
    # With missingkey=zero a missing key is a nil interface, and a field of it is an error.
    with pytest.raises(TemplateError, match=r"nil pointer evaluating interface \{\}\.X$"):
        render("{{ .Missing.X }}", {})


def test_runaway_recursion_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"exceeded maximum template depth \(100000\)"):
        render('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}', {})


# --- printing ------------------------------------------------------------------------


def test_missing_key_prints_no_value() -> None:
    assert render("[{{ .System }}][{{ .Nope }}]", {"System": "s"}) == "[s][<no value>]"


def test_go_printing_of_values() -> None:
    data = {"l": [1, "a", None, 2.5], "m": {"b": 1, "a": True}, "f": 1e6, "g": 1.5, "n": -3}
    assert render("{{ .l }} {{ .m }} {{ .f }} {{ .g }} {{ .n }} {{ 3.0 }}", data) == (
        "[1 a <nil> 2.5] map[a:true b:1] 1e+06 1.5 -3 3"
    )


def test_printf_verbs_widths_and_flags() -> None:
    out = render('{{ printf "%s|%5d|%-4d|%05.1f|%q|%x|%t|%v|%+d|%e" "s" 42 7 3.14159 "a\\"b" "hi" true 2.5 3 1234.5 }}')
    assert out == 's|   42|7   |003.1|"a\\"b"|6869|true|2.5|+3|1.234500e+03'


def test_printf_reports_bad_verbs_as_go_does() -> None:
    assert render('{{ printf "%d %d" "x" }}') == "%!d(string=x) %!d(MISSING)"


def test_print_and_println() -> None:
    assert render('{{ print "a" 1 2 "b" }}|{{ println 1 "x" }}') == "a1 2b|1 x\n"


def test_escapers() -> None:
    assert render('{{ html "<a&\'>" }} {{ js "it\'s <b>" }} {{ urlquery "a b&c" }}') == (
        "&lt;a&amp;&#39;&gt; it\\'s \\u003Cb\\u003E a+b%26c"
    )


def test_json_escapes_html_and_sorts_map_keys() -> None:
    assert render("{{ json . }}", {"b": "<x>&", "a": [1, 2.5, None, True]}) == (
        '{"a":[1,2.5,null,true],"b":"\\u003cx\\u003e\\u0026"}'
    )


def test_tools_arguments_and_properties_print_as_json() -> None:
    data = {
        "Tools": template_tools([WEATHER_TOOL]),
        "Messages": template_messages(
            [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"z": 1, "city": "Paris"}}}]}]
        ),
    }
    out = render(
        "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }} {{ .Function.Arguments }}{{ end }}{{ end }}\n"
        "{{ range .Tools }}{{ .Function.Parameters.Properties }}{{ end }}\n{{ .Tools }}",
        data,
    )
    assert out.splitlines() == [
        'get_weather {"city":"Paris","z":1}',
        (
            '{"city":{"type":"string","description":"The city"},"days":{"type":["integer","null"]},'
            '"unit":{"type":"string","enum":["c","f"]}}'
        ),
        (
            '[{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":'
            '{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"The city"},'
            '"days":{"type":["integer","null"]},"unit":{"type":"string","enum":["c","f"]}}}}}]'
        ),
    ]


def test_no_tools_print_as_null_and_are_false() -> None:
    out = render("{{ .Tools }}|{{ if .Tools }}tools{{ else }}none{{ end }}", {"Tools": template_tools(None)})
    assert out == "null|none"


def test_tool_call_arguments_are_float64_as_ollama_decodes_them() -> None:
    msgs = template_messages([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"n": 2}}}]}])
    out = render('{{ range .Messages }}{{ range .ToolCalls }}{{ printf "%T %v" .Function.Arguments.n .Function.Arguments.n }}{{ end }}{{ end }}', {"Messages": msgs})
    assert out == "float64 2"


def test_typescript_types_of_properties() -> None:
    out = render(
        "{{ range .Tools }}{{ range $k, $v := .Function.Parameters.Properties }}{{ $k }}: {{ toTypeScriptType $v }}; {{ end }}{{ end }}",
        {"Tools": template_tools([WEATHER_TOOL])},
    )
    assert out == "city: string; days: number | null; unit: string; "


def test_message_fields_and_images() -> None:
    msgs = template_messages(
        [{"role": "user", "content": "look", "images": ["aGk="]}, {"role": "tool", "content": "42", "tool_name": "f", "tool_call_id": "c1"}]
    )
    out = render("{{ range .Messages }}{{ .Role }}:{{ .Content }}:{{ .Images }}:{{ .ToolName }}:{{ .ToolCallID }};{{ end }}", {"Messages": msgs})
    assert out == "user:look:[[104 105]]::;tool:42:[]:f:c1;"


def test_date_functions_use_the_given_clock() -> None:
    assert render('{{ currentDate }} {{ yesterdayDate "fmt" }}') == "2025-03-01 2025-02-28"


# --- control structures --------------------------------------------------------------


def test_chatml_prompt() -> None:
    tmpl = Template.parse(
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    )
    msgs = template_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert tmpl.execute({"Messages": msgs}) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_range_forms_break_continue_and_else() -> None:
    out = render(
        "{{ range $i, $v := .l }}{{ if eq $v 2 }}{{ continue }}{{ end }}{{ if eq $v 4 }}{{ break }}{{ end }}{{ $i }}={{ $v }} {{ end }}"
        "|{{ range $k, $v := .m }}{{ $k }}{{ $v }}{{ end }}|{{ range 3 }}{{ . }}{{ end }}|{{ range .e }}x{{ else }}empty{{ end }}",
        {"l": [1, 2, 3, 4, 5], "m": {"b": 2, "a": 1}, "e": []},
    )
    assert out == "0=1 2=3 |a1b2|012|empty"


def test_if_with_chains_variables_and_templates() -> None:
    out = render(
        '{{ define "t" }}<{{ . }}>{{ end }}{{ $x := 1 }}{{ if .no }}a{{ else if .yes }}b{{ else }}c{{ end }}'
        '{{ with .nope }}x{{ else with .yes }}{{ . }}{{ end }}{{ $x = 2 }}{{ $x }}{{ template "t" .yes }}'
        '{{ block "b" 5 }}[{{ . }}]{{ end }}',
        {"no": False, "yes": "y"},
    )
    assert out == "by2<y>[5]"


def test_trim_markers_and_comments() -> None:
    assert render("a  {{- /* note */ -}}  b {{- 1 }} {{ 2 -}}\n c") == "ab1 2c"


def test_and_or_short_circuit_and_return_the_deciding_value() -> None:
    assert render("{{ and 1 0 .missing.x }}|{{ or 0 \"\" \"z\" }}|{{ or 0 false }}", {}) == "0|z|false"


# --- data ----------------------------------------------------------------------------


@dataclass
class Turn:
    Role: str
    content: str

    def Shout(self, text: str) -> str:
        return text.upper() + "!"


class Settings(BaseModel):
    Name: str
    tags: list[str] = []


def test_dataclasses_and_pydantic_models_are_structs() -> None:
    out = render(
        "{{ range .turns }}{{ .Role }}:{{ .content }}:{{ .Shout .Role }} {{ end }}{{ .s.Name }} {{ .s.tags }} {{ .s }} {{ json .s }}",
        {"turns": [Turn("user", "hi")], "s": Settings(Name="n", tags=["a"])},
    )
    assert out == 'user:hi:USER! n [a] {n [a]} {"Name":"n","tags":["a"]}'


def test_messages_accept_models_as_well_as_dicts() -> None:
    class Message(BaseModel):
        role: str
        content: str

    msgs = template_messages([Message(role="user", content="hey")])
    assert render("{{ range .Messages }}{{ .Role }}={{ .Content }}{{ end }}", {"Messages": msgs}) == "user=hey"


# --- the tree ------------------------------------------------------------------------

OLLAMA_LIKE = """{{- if .System }}{{ .System }}{{ end }}
{{- range $i, $m := .Messages }}
{{- if eq .Role "assistant" }}<think>{{ .Thinking }}</think>{{ .Content }}
{{- if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}"}{{ end }}</tool_call>{{ end }}
{{- else }}{{ .Content }}{{ end }}
{{- end }}{{ if $.Tools }}tools{{ end }}"""


def test_identifiers_and_uses() -> None:
    tmpl = Template.parse(OLLAMA_LIKE)
    ids = tmpl.identifiers()
    assert {"System", "Messages", "Role", "Thinking", "Content", "ToolCalls", "Function", "Name", "Tools", "$"} <= ids
    assert "Suffix" not in ids and "$i" not in ids  # declared but unused, as in Ollama
    assert tmpl.uses("tools") and tmpl.uses("ToolCalls") and not tmpl.uses("Suffix")


def test_identifiers_include_defined_templates() -> None:
    assert Template.parse('{{ define "x" }}{{ .Suffix }}{{ end }}{{ template "x" . }}').uses("Suffix")


def test_walk_finds_the_tool_call_block_and_thinking_tags() -> None:
    tmpl = Template.parse(OLLAMA_LIKE)
    tool_if = next(
        n for n in tmpl.walk() if isinstance(n, IfNode) and str(n.pipe) == ".ToolCalls"
    )
    first_text = next(n for n in tool_if.list.nodes if isinstance(n, TextNode))
    assert first_text.text.strip() == "<tool_call>"

    messages_range = next(n for n in tmpl.walk() if isinstance(n, RangeNode))
    nodes = [n for n in _flatten(messages_range.list)]
    i = next(i for i, n in enumerate(nodes) if isinstance(n, ActionNode) and str(n.pipe) == ".Thinking")
    assert isinstance(nodes[i - 1], TextNode) and nodes[i - 1].text == "<think>"
    assert isinstance(nodes[i + 1], TextNode) and nodes[i + 1].text.startswith("</think>")


def test_walk_ancestors_finds_the_list_around_thinking() -> None:
    # Ollama's thinking-tag inference: the nearest list holding {{ .Thinking }} inside a
    # range over .Messages starts and ends with the tags.
    tmpl = Template.parse("{{ range .Messages }}{{ if .Thinking }}<think>\n{{ .Thinking }}\n</think>\n{{ end }}{{ .Content }}{{ end }}")
    for node, ancestors in tmpl.walk_ancestors():
        if isinstance(node, FieldNode) and node.ident[0] == "Thinking":
            ranges = [a for a in ancestors if isinstance(a, RangeNode)]
            lists = [a for a in ancestors if isinstance(a, ListNode)]
            if ranges and str(ranges[-1].pipe) == ".Messages" and isinstance(lists[-1].nodes[0], TextNode):
                break
    else:
        pytest.fail("no .Thinking inside range .Messages")
    assert str(lists[-1].nodes[0]).strip() == "<think>"
    assert str(lists[-1].nodes[-1]).strip() == "</think>"


def _flatten(lst: ListNode) -> list[Any]:
    out: list[Any] = []
    for n in lst.nodes:
        if isinstance(n, IfNode):
            out += _flatten(n.list)
            if n.else_list is not None:
                out += _flatten(n.else_list)
        else:
            out.append(n)
    return out


def test_node_strings_are_gos() -> None:
    tmpl = Template.parse('{{ if and .A (eq .B "x") }}{{ $v := .C | printf "%d" }}{{ end }}')
    assert str(tmpl.root) == '{{if and .A (eq .B "x")}}{{$v := .C | printf "%d"}}{{end}}'


def test_with_root_executes_an_edited_tree() -> None:
    tmpl = Template.parse("{{ .Prompt }} ")
    response = ActionNode(0, pipe=PipeNode(0, cmds=[CommandNode(0, args=[FieldNode(0, ident=["Response"])])]))
    edited = tmpl.with_root(ListNode(0, nodes=[*tmpl.root.nodes, response]))
    assert edited.execute({"Prompt": "p", "Response": "r"}) == "p r"
    assert tmpl.execute({"Prompt": "p", "Response": "r"}) == "p "


def test_pathological_nesting_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="nesting too deep to parse"):
        Template.parse("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")
