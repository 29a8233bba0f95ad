"""Tool-call parsing of model output (as Ollama's tools package parses it)."""

from __future__ import annotations

import re

import pytest

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message, ToolCall
from ollamapy.gotemplate import Template
from ollamapy.prompt.render import PromptTemplate, render_chat
from ollamapy.prompt.tool_parser import (
    ToolCallParser,
    chat_template_tool_tag,
    parse_tool_calls,
    tool_call_id,
    tool_call_tag,
)


def _tool(name: str, *props: str) -> Tool:
    return Tool.model_validate(
        {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {
                    "type": "object",
                    "properties": {p: {"type": "string"} for p in props},
                },
            },
        }
    )


TOOLS = [
    _tool("get_temperature", "format", "city"),
    _tool("get_conditions", "location"),
    _tool("say_hello"),
    _tool("say_hello_world"),
    _tool("get_address", "location"),
    _tool("add", "a", "b"),
]

QWEN = "<tool_call>"
DEEPSEEK = "<|tool▁calls▁begin|>"
MISTRAL = "[TOOL_CALLS]"
JSON = "{"
LIST = "["


def _run(tag: str, inputs: list[str]) -> tuple[list[ToolCall], str]:
    parser = ToolCallParser(TOOLS, tag)
    calls: list[ToolCall] = []
    content = ""
    for text in inputs:
        new_calls, new_content = parser.add(text)
        calls += new_calls
        content += new_content
    return calls, content


def _calls(calls: list[ToolCall]) -> list[tuple[int, str, dict]]:
    return [(c.function.index, c.function.name, c.function.arguments) for c in calls]


CASES = [
    (
        "no tool calls",
        QWEN,
        ["Hello, how can I help you today?"],
        "Hello, how can I help you today?",
        [],
    ),
    ("empty input", QWEN, [""], "", []),
    (
        "tool call",
        QWEN,
        [
            '<tool_call>{"name": "get_conditions", "arguments": {"location": "San Francisco"}}</tool_call>'
        ],
        "",
        [(0, "get_conditions", {"location": "San Francisco"})],
    ),
    (
        "empty args",
        QWEN,
        ['<tool_call>{"name": "get_conditions", "arguments": {}}</tool_call>'],
        "",
        [(0, "get_conditions", {})],
    ),
    (
        "text before tool call",
        QWEN,
        [
            'Let me check the weather. <tool_call>{"name": "get_temperature", "arguments": {"city": "New York"}}</tool_call>'
        ],
        "Let me check the weather. ",
        [(0, "get_temperature", {"city": "New York"})],
    ),
    (
        "tool name mentioned in text only",
        QWEN,
        ["Let me say hello to the user. I'll use the say_hello tool. "],
        "Let me say hello to the user. I'll use the say_hello tool. ",
        [],
    ),
    (
        "two tool calls in a list",
        MISTRAL,
        [
            (
                '[TOOL_CALLS] [{"name": "get_temperature", "arguments": {"city": "London", "format": "fahrenheit"}}, '
                '{"name": "get_conditions", "arguments": {"location": "Tokyo"}}][/TOOL_CALLS]'
            )
        ],
        "",
        [
            (0, "get_temperature", {"city": "London", "format": "fahrenheit"}),
            (1, "get_conditions", {"location": "Tokyo"}),
        ],
    ),
    (
        "two tagged calls after text",
        QWEN,
        [
            (
                "Okay, let's call both tools! "
                '<tool_call>{"name": "get_temperature", "arguments": {"city": "London", "format": "fahrenheit"}}</tool_call>'
                '<tool_call>{"name": "get_conditions", "arguments": {"location": "Tokyo"}}</tool_call>'
            )
        ],
        "Okay, let's call both tools! ",
        [
            (0, "get_temperature", {"city": "London", "format": "fahrenheit"}),
            (1, "get_conditions", {"location": "Tokyo"}),
        ],
    ),
    (
        "empty args followed by args",
        QWEN,
        [
            (
                'Let me say hello and check the weather. <tool_call>{"name": "say_hello", "arguments": {}}</tool_call>'
                '<tool_call>{"name": "get_temperature", "arguments": {"city": "London", "format": "fahrenheit"}}</tool_call>'
            )
        ],
        "Let me say hello and check the weather. ",
        [
            (0, "say_hello", {}),
            (1, "get_temperature", {"city": "London", "format": "fahrenheit"}),
        ],
    ),
    (
        "deepseek format",
        DEEPSEEK,
        [
            (
                "<think>Wait, I need to call a tool</think><|tool▁calls▁begin|><|tool▁call▁begin|>function<|tool▁sep|>"
                'get_temperature\n```json\n{"city": "Tokyo"}\n```<|tool▁call▁end|><|tool▁calls▁end|><|end▁of▁sentence|>'
            )
        ],
        "<think>Wait, I need to call a tool</think>",
        [(0, "get_temperature", {"city": "Tokyo"})],
    ),
    (
        "deepseek format, token by token",
        DEEPSEEK,
        [
            "<think>Wait",
            ", I need",
            " to call",
            " a tool</think><|too",
            "l▁calls▁begin",
            "|>",
            "<|tool▁call▁begin|>function<|tool▁sep|>get_temperature\n",
            "```json\n",
            '{"city": "Tokyo"}\n',
            "```",
            "<|tool▁c",
            "all▁end|>",
            "<|tool▁calls▁end|>",
            "<|end▁of▁sentence|>",
        ],
        "<think>Wait, I need to call a tool</think>",
        [(0, "get_temperature", {"city": "Tokyo"})],
    ),
    (
        "plain json, streamed",
        JSON,
        [
            "{",
            '"name": "get_temperature",',
            '"arguments": {',
            '"city": "Tokyo"',
            "}",
            "}",
        ],
        "",
        [(0, "get_temperature", {"city": "Tokyo"})],
    ),
    (
        "json that may become a call is held",
        JSON,
        ["{", '"name": "get_temperature",', '"arguments": {'],
        "",
        [],
    ),
    (
        "json naming no tool is content",
        JSON,
        [
            "{",
            '"name": "search", ',
            '"arguments": {',
            '"query": "What is the capital of Canada?"',
            "}",
            "}",
        ],
        '{"name": "search", "arguments": {"query": "What is the capital of Canada?"}}',
        [],
    ),
    (
        "json object then a call: only leading json counts",
        JSON,
        [
            '{"name": "jeff"}',
            '{"name": "get_conditions", "arguments": {"location": "San Francisco"}}',
        ],
        '{"name": "jeff"}{"name": "get_conditions", "arguments": {"location": "San Francisco"}}',
        [],
    ),
    (
        "json object then a call, split",
        JSON,
        [
            '{"name": "jeff"} {',
            '"name": "get_conditions", "arguments": {"location": "San Francisco"}}',
        ],
        '{"name": "jeff"} {"name": "get_conditions", "arguments": {"location": "San Francisco"}}',
        [],
    ),
    (
        "code is content",
        JSON,
        ['for { fmt.Println("hello") }'],
        'for { fmt.Println("hello") }',
        [],
    ),
    (
        "list of calls, streamed",
        LIST,
        [
            "[",
            "{",
            '"name": "get_temperature", ',
            '"arguments": {',
            '"city": "London"',
            "}",
            "},",
            "{",
            '"name": "get_conditions", ',
            '"arguments": {',
            '"location": "Tokyo"',
            "}",
            "}]",
        ],
        "",
        [
            (0, "get_temperature", {"city": "London"}),
            (1, "get_conditions", {"location": "Tokyo"}),
        ],
    ),
    (
        "list without its closing bracket",
        LIST,
        [
            "[{",
            '"name": "get_conditions", ',
            '"arguments": {',
            '"location": "Tokyo"',
            "}",
            "}",
        ],
        "",
        [(0, "get_conditions", {"location": "Tokyo"})],
    ),
    (
        "list naming no tool is held",
        LIST,
        [
            "[",
            "{",
            '"name": "search", ',
            '"arguments": {',
            '"query": "What is the capital of Canada?"',
            "}",
            "}",
        ],
        "",
        [],
    ),
    (
        "list with trailing brackets",
        LIST,
        [
            "[",
            "{",
            '"name": "get_conditions", ',
            '"arguments": {',
            '"location": "Tokyo"',
            "}",
            "}",
            "]",
            "]",
        ],
        "",
        [(0, "get_conditions", {"location": "Tokyo"})],
    ),
    (
        "bracketed text is content",
        LIST,
        ["[special", " del", "ivery]"],
        "[special delivery]",
        [],
    ),
    (
        "longer tool name arriving in pieces",
        QWEN,
        ["<tool_call>", "{", '"name": "say_hello', '_world",', '"arguments": {}}', "}"],
        "",
        [(0, "say_hello_world", {})],
    ),
    (
        "colliding names, two calls",
        QWEN,
        [
            "<tool_call>",
            "{",
            '"name": "say_hello',
            '_world",',
            '"arguments": {}}',
            "</tool_call>",
            "<tool_call>",
            "{",
            '"name": "say_hello',
            '",',
            '"arguments": {}}',
            "</tool_call>",
        ],
        "",
        [(0, "say_hello_world", {}), (1, "say_hello", {})],
    ),
    ("partial name at the end waits", QWEN, ['<tool_call>{"name": "say_hello'], "", []),
    (
        "colliding names in one piece",
        QWEN,
        [
            (
                '<tool_call>{"name": "say_hello", "arguments": {}}</tool_call>'
                '<tool_call>{"name": "say_hello_world", "arguments": {}}'
            )
        ],
        "",
        [(0, "say_hello", {}), (1, "say_hello_world", {})],
    ),
    (
        "shorter colliding name",
        QWEN,
        ['<tool_call>{"name": "say_hello", "arguments": {}}</tool_call>'],
        "",
        [(0, "say_hello", {})],
    ),
    (
        "name containing another name",
        JSON,
        [
            "{",
            '"name": "get_address",',
            '"arguments": {',
            '"location": "London"',
            "}",
            "}",
        ],
        "",
        [(0, "get_address", {"location": "London"})],
    ),
    (
        "arguments before the name",
        QWEN,
        ['<tool_call>{"arguments": {"a": "5", "b": "10"}, "name": "add"}</tool_call>'],
        "",
        [(0, "add", {"a": "5", "b": "10"})],
    ),
    (
        "parameters instead of arguments",
        JSON,
        ['{"name": "get_temperature", "parameters": {"city": "Paris"}}'],
        "",
        [(0, "get_temperature", {"city": "Paris"})],
    ),
    (
        "arguments as a JSON string",
        QWEN,
        [
            '<tool_call>{"name": "get_temperature", "arguments": "{\\"city\\": \\"Oslo\\"}"}</tool_call>'
        ],
        "",
        [(0, "get_temperature", {"city": "Oslo"})],
    ),
    (
        "object keyed by the tool name",
        QWEN,
        ['<tool_call>{"get_conditions": {"location": "Rome"}}</tool_call>'],
        "",
        [(0, "get_conditions", {"location": "Rome"})],
    ),
    (
        "wrapped calls found recursively",
        JSON,
        [
            '{"tool_calls": [{"name": "get_conditions", "arguments": {"location": "Lima"}}]}'
        ],
        "",
        [(0, "get_conditions", {"location": "Lima"})],
    ),
    (
        "tag split across pieces with text before",
        QWEN,
        ["Sure. <tool", '_call>{"name": "say_hello", "arguments": {}}</tool_call>'],
        "Sure. ",
        [(0, "say_hello", {})],
    ),
    (
        "partial tag that turns out to be text",
        QWEN,
        ["a < b", " and <tool_c fakeout"],
        "a < b and <tool_c fakeout",
        [],
    ),
]


@pytest.mark.parametrize(
    ("tag", "inputs", "content", "calls"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_streaming_parser(
    tag: str, inputs: list[str], content: str, calls: list
) -> None:
    got_calls, got_content = _run(tag, inputs)
    assert got_content == content
    assert _calls(got_calls) == calls


def test_partial_tag_is_held_back_until_disambiguated() -> None:
    parser = ToolCallParser(TOOLS, QWEN)
    assert parser.add("Hello <tool_") == ([], "Hello ")
    assert parser.add("box> world") == ([], "<tool_box> world")


def test_text_after_a_call_is_not_content() -> None:
    calls, content = _run(
        QWEN,
        ['<tool_call>{"name": "say_hello", "arguments": {}}</tool_call>', " trailing"],
    )
    assert [c.function.name for c in calls] == ["say_hello"]
    assert content == ""


def test_ids_and_indexes() -> None:
    calls, _ = _run(
        QWEN,
        [
            (
                '<tool_call>{"name": "say_hello", "arguments": {}}</tool_call>'
                '<tool_call>{"name": "add", "arguments": {"a": "1", "b": "2"}}</tool_call>'
            )
        ],
    )
    assert [c.function.index for c in calls] == [0, 1]
    assert all(re.fullmatch(r"call_[a-z0-9]{8}", c.id or "") for c in calls)
    assert calls[0].id != calls[1].id
    assert re.fullmatch(r"call_[a-z0-9]{8}", tool_call_id())


def test_argument_order_is_kept() -> None:
    calls, _ = _run(
        QWEN, ['<tool_call>{"name": "add", "arguments": {"b": "2", "a": "1"}}']
    )
    assert list(calls[0].function.arguments) == ["b", "a"]


def test_after_json_content_everything_passes_through() -> None:
    parser = ToolCallParser(TOOLS, JSON)
    assert parser.add("Hi ") == ([], "Hi ")
    assert parser.add('{"name": "say_hello", "arguments": {}}') == (
        [],
        '{"name": "say_hello", "arguments": {}}',
    )


@pytest.mark.parametrize(
    ("tag", "output", "content", "names"),
    [
        (QWEN, "The weather is nice.", "The weather is nice.", []),
        (
            QWEN,
            '<tool_call>{"name": "say_hello", "arguments": {}}</tool_call>',
            "",
            ["say_hello"],
        ),
        (QWEN, '<tool_call> [{"options": "foo"}] </tool_call> ', "", []),
        (JSON, '{"hello": "world"}', '{"hello": "world"}', []),
        (JSON, '{ fmt.Println("hello")', '{ fmt.Println("hello")', []),
        (LIST, '[{"name": "get_temperature"}]', '[{"name": "get_temperature"}]', []),
        (JSON, '{"name": "get_conditions"}', '{"name": "get_conditions"}', []),
        (
            JSON,
            '{"name": "get_conditions", "arguments": {"location": "Oslo"}} ok.',
            "",
            ["get_conditions"],
        ),
        # the output ends with "s", which may be the start of "say_hello": Ollama waits,
        # and the closed JSON object is then handed back as content
        (
            JSON,
            '{"name": "get_conditions", "arguments": {"location": "Oslo"}} thanks',
            '{"name": "get_conditions", "arguments": {"location": "Oslo"}} thanks',
            [],
        ),
    ],
)
def test_non_streaming(tag: str, output: str, content: str, names: list[str]) -> None:
    calls, got = parse_tool_calls(output, TOOLS, tag)
    assert got == content
    assert [c.function.name for c in calls] == names


def test_flush_returns_held_json_only_without_calls() -> None:
    parser = ToolCallParser(TOOLS, JSON)
    assert parser.add('{"name": "search"') == ([], "")
    assert parser.flush() == '{"name": "search"'
    tagged = ToolCallParser(TOOLS, QWEN)
    assert tagged.add('<tool_call>{"name": "nothing"') == ([], "")
    assert tagged.flush() == ""


def test_tool_names_can_be_given_as_strings() -> None:
    calls, content = parse_tool_calls(
        '<tool_call>{"name": "f", "arguments": {"x": 1}}', ["f"], QWEN
    )
    assert (content, _calls(calls)) == ("", [(0, "f", {"x": 1})])


@pytest.mark.parametrize(
    ("tool", "text", "args"),
    [
        ("format", '{"format": "fahrenheit"}}', {"format": "fahrenheit"}),
        ("location", '{format: fahrenheit, location: "San Francisco"}', None),
        (
            "get_temperature",
            'get_temperature[args]{"format": "f", "location": "SF"}[end]',
            {"format": "f", "location": "SF"},
        ),
        (
            "get_temperature",
            '{"function": {"name": "get_temperature", "arguments": {"city": "SF"}}}',
            {"city": "SF"},
        ),
        (
            "get_temperature",
            'get_temperature({"location": "San Francisco, CA"})',
            {"location": "San Francisco, CA"},
        ),
        (
            "process_code",
            '{"name": "process_code", "arguments": {"code": "if (x > 0) { return true; }"}}',
            {"code": "if (x > 0) { return true; }"},
        ),
        (
            "send",
            '{"name": "send", "arguments": {"payload": "{\\"nested\\": {\\"key\\": \\"value\\"}}"}}',
            {"payload": '{"nested": {"key": "value"}}'},
        ),
        (
            "search",
            '{"name": "search", "arguments": {"pattern": "regex: }"}}',
            {"pattern": "regex: }"},
        ),
        (
            "test",
            '{"name": "test", "arguments": {"text": "Unicode: \\u007B and \\u007D"}}',
            {"text": "Unicode: { and }"},
        ),
        ("batch", '{"name": "batch", "arguments": ["item1", "item2"]}', None),
        (
            "path",
            '{"name": "path", "arguments": {"dir": "C:\\\\Program Files\\\\{App}\\\\"}}',
            {"dir": "C:\\Program Files\\{App}\\"},
        ),
        ("test", '{"name": "test", "arguments": {"data": "some {"', None),
        (
            "t",
            '{"name": "t", "arguments": {"items": ["{", "}", {"key": "value"}]}}',
            {"items": ["{", "}", {"key": "value"}]},
        ),
        ("t", '{"name": "t", "arguments": {"x": NaN}}', None),
    ],
)
def test_argument_discovery(tool: str, text: str, args: dict | None) -> None:
    """The first balanced, valid JSON object holds the arguments; braces in strings don't count."""
    calls, content = parse_tool_calls(QWEN + text, [tool], QWEN)
    assert content == ""
    assert [c.function.arguments for c in calls] == ([args] if args is not None else [])


TAG_CASES = {
    "empty": ("", "{"),
    "no tool-call block": ("{{ range .Messages }}{{ .Content }}{{ end }}", "{"),
    "no tag": ("{{if .ToolCalls}}{{end}}", "{"),
    "no tag with range": (
        "{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}{{end}}",
        "{",
    ),
    "json code block": ("{{if .ToolCalls}}```json\n{{end}}", "```json"),
    "square brackets": (
        "{{if .ToolCalls}}[{{range .ToolCalls}}{{ . }}{{end}}]{{end}}",
        "[",
    ),
    "square brackets with whitespace": (
        "{{if .ToolCalls}}\n [ {{range .ToolCalls}}{{ . }}{{end}}]{{end}}",
        "[",
    ),
    "trailing ]": ("{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "{"),
    "whitespace only": (
        "{{if .ToolCalls}} {{range .ToolCalls}}{{ . }}{{end}}{{end}}",
        "{",
    ),
    "whitespace only in range": (
        "{{if .ToolCalls}}{{range .ToolCalls}}\n{{ . }}\n{{end}}{{end}}",
        "{",
    ),
    "json objects": (
        (
            '{{if .ToolCalls}}{{range .ToolCalls}}{"name": "{{ .Function.Name }}", '
            '"arguments": {{ .Function.Arguments }}}{{end}}{{end}}'
        ),
        "{",
    ),
    "before and after range": (
        (
            "{{if .ToolCalls}}<|tool▁calls▁begin|>{{range .ToolCalls}}<|tool▁call▁begin|>function\n"
            "{{end}}<|tool▁calls▁end|>{{end}}"
        ),
        "<|tool▁calls▁begin|>",
    ),
    "inside range": (
        "{{if .ToolCalls}}{{range .ToolCalls}}<tool_call>{{.}}</tool_call>{{end}}{{end}}",
        "<tool_call>",
    ),
    "cut at the brace": (
        '{{if .ToolCalls}}{{range .ToolCalls}}<tool_call>{"name": "{{ .Function.Name }}"}<tool_call>{{end}}{{end}}',
        "<tool_call>",
    ),
    "first of several texts": (
        "{{if .ToolCalls}}First text{{if .Something}}inner{{end}}Second text{{end}}",
        "First text",
    ),
    "nested if without tool calls": (
        "{{if .Something}}{{if .OtherThing}}text{{end}}{{end}}",
        "{",
    ),
    "action tag": ("{{if .ToolCalls}}Action: ```json{{end}}", "Action: ```json"),
    "functools": ("{{if .ToolCalls}}functools[{{end}}", "functools["),
    "mistral": ("{{if .ToolCalls}}[TOOL_CALLS] [{{end}}", "[TOOL_CALLS] ["),
    "block nested in messages": (
        (
            '{{ range .Messages }}{{ if eq .Role "assistant" }}{{ if .Content }}{{ .Content }}'
            "{{ else if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}{{ .Function.Name }}{{ end }}"
            "</tool_call>{{ end }}{{ end }}{{ end }}"
        ),
        "<tool_call>",
    ),
    "condition with more arguments": (
        "{{ if and $.X .ToolCalls }} [TOOL_CALLS]{{ end }}",
        "[TOOL_CALLS]",
    ),
}


@pytest.mark.parametrize(("template", "tag"), TAG_CASES.values(), ids=TAG_CASES.keys())
def test_tool_call_tag(template: str, tag: str) -> None:
    assert tool_call_tag(Template.parse(template)) == tag


QWEN25_TEMPLATE = """{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>
{{- else if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

COMMAND_R_TOOL_CALLS = (
    '{{- range .Messages }}{{- if eq .Role "assistant" }}<|CHATBOT_TOKEN|>\n{{- if .Content }}{{ .Content }}\n'
    "{{- else if .ToolCalls }}\nAction: ```json\n[\n{{- range .ToolCalls }}\n    {\n"
    '        "tool_name": "{{ .Function.Name }}",\n        "parameters": {{ .Function.Arguments }}\n'
    "    }\n{{- end }}\n]```\n{{ continue }}\n{{ end }}{{ end }}{{ end }}"
)
XLAM_TOOL_CALLS = (
    '{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}### Instruction:\n{{ .Content }}\n'
    '{{- else if .ToolCalls }}### Response:\n{"tool_calls": [{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", '
    '"arguments": {{ .Function.Arguments }}}{{ end }}]}\n<|EOT|>\n{{ end }}{{- end }}### Response:'
)


@pytest.mark.parametrize(
    ("template", "tag"),
    [
        (QWEN25_TEMPLATE, "<tool_call>"),
        (COMMAND_R_TOOL_CALLS, "Action: ```json\n["),
        (XLAM_TOOL_CALLS, "### Response:"),
    ],
    ids=["qwen2.5", "command-r-plus", "xlam"],
)
def test_tags_of_model_templates(template: str, tag: str) -> None:
    assert tool_call_tag(Template.parse(template)) == tag


def test_tool_round_trip_through_a_template() -> None:
    """Tools and an earlier call render into the prompt (qwen2.5's template, as Ollama
    renders it today); the model's answer parses back with the template's tag."""

    weather = _tool("get_weather", "city")
    messages = [
        Message(role="user", content="Weather in Oslo?"),
        Message.model_validate(
            {
                "role": "assistant",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
                ],
            }
        ),
        Message(role="tool", content="-3C", tool_name="get_weather"),
        Message(role="user", content="And Rome?"),
    ]
    prompt = render_chat(QWEN25_TEMPLATE, messages, tools=[weather]).prompt
    assert prompt == (
        "<|im_start|>system\n\n# Tools\n\n<tools>\n"
        # Ollama's template-side tool function has no String(): Go prints the struct
        '{"type": "function", "function": {get_weather  {object <nil> <nil> [] {"city":{"type":"string"}}}}}\n'
        "</tools><|im_end|>\n"
        "<|im_start|>user\nWeather in Oslo?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city":"Oslo"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n-3C\n</tool_response><|im_end|>\n"
        "<|im_start|>user\nAnd Rome?<|im_end|>\n<|im_start|>assistant\n"
    )
    tag = tool_call_tag(PromptTemplate.parse(QWEN25_TEMPLATE).template)
    parser = ToolCallParser([weather], tag)
    pieces = [
        "<tool",
        "_call>\n",
        '{"name": "get_weather", ',
        '"arguments": {"city": "Rome"}}\n',
        "</tool_call>",
    ]
    calls = [call for piece in pieces for call in parser.add(piece)[0]]
    assert _calls(calls) == [(0, "get_weather", {"city": "Rome"})]


@pytest.mark.parametrize(
    ("chat_template", "tag"),
    [
        (None, "{"),
        ("{{ messages }}", "{"),
        (
            "{% for t in tools %}{{ t | tojson }}{% endfor %}<tool_call>\n{{ c }}\n</tool_call>",
            "<tool_call>",
        ),
        ("{{ '[TOOL_CALLS]' + calls | tojson }}", "[TOOL_CALLS]"),
        ("<|python_tag|>{{ x }}", "<|python_tag|>"),
    ],
)
def test_chat_template_tool_tag(chat_template: str | None, tag: str) -> None:
    assert chat_template_tool_tag(chat_template) == tag
