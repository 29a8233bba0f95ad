"""Thinking tags and the streaming thinking/content splitter (Ollama's thinking package)."""

from __future__ import annotations

import pytest

from ollamapy.gotemplate import Template
from ollamapy.prompt.thinking import (
    ThinkingParser,
    ThinkingState,
    chat_template_thinking_tags,
    infer_thinking_tags,
)

S = ThinkingState


def _parser() -> ThinkingParser:
    return ThinkingParser("<think>", "</think>")


@pytest.mark.parametrize(
    ("text", "thinking", "content"),
    [
        ("<think> internal </think> world", "internal ", "world"),
        ("<think>a</think><think>b</think>c", "a", "<think>b</think>c"),
        ("no think", "", "no think"),
    ],
)
def test_whole_output_splits_at_the_first_closing_tag(
    text: str, thinking: str, content: str
) -> None:
    assert _parser().add(text) == (thinking, content)


STREAMS = {
    "content without a thinking tag": [
        ("  abc", "", "  abc", S.THINKING_DONE),
        ("def", "", "def", S.THINKING_DONE),
    ],
    "content before a thinking tag disables it": [
        (
            "  abc <think>def</think> ghi",
            "",
            "  abc <think>def</think> ghi",
            S.THINKING_DONE,
        ),
    ],
    "opening tag built up partially": [
        ("  <th", "", "", S.LOOKING_FOR_OPENING),
        ("in", "", "", S.LOOKING_FOR_OPENING),
        ("k>a", "a", "", S.THINKING),
    ],
    "partial closing tag": [
        ("<think>abc</th", "abc", "", S.THINKING),
        ("ink>def", "", "def", S.THINKING_DONE),
    ],
    "partial closing tag fakeout": [
        ("<think>abc</th", "abc", "", S.THINKING),
        ("ing>def", "</thing>def", "", S.THINKING),
        ("ghi</thi", "ghi", "", S.THINKING),
        ("nk>jkl", "", "jkl", S.THINKING_DONE),
    ],
    "whitespace after the closing tag is eaten": [
        ("  <think>abc</think>\n\ndef", "abc", "def", S.THINKING_DONE),
    ],
    "whitespace after the closing tag, incrementally": [
        ("  <think>abc</think>", "abc", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("\n\ndef", "", "def", S.THINKING_DONE),
    ],
    "whitespace inside content is kept": [
        ("  <think>abc</think>\n\ndef ", "abc", "def ", S.THINKING_DONE),
        (" ghi", "", " ghi", S.THINKING_DONE),
    ],
    "token by token": [
        ("<think>", "", "", S.THINKING_STARTED_EATING_WHITESPACE),
        ("\n", "", "", S.THINKING_STARTED_EATING_WHITESPACE),
        ("</think>", "", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("\n\n", "", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("Hi", "", "Hi", S.THINKING_DONE),
        (" there", "", " there", S.THINKING_DONE),
    ],
    "leading thinking whitespace": [
        ("  <think>   \t ", "", "", S.THINKING_STARTED_EATING_WHITESPACE),
        ("  these are some ", "these are some ", "", S.THINKING),
        ("thoughts </think>  ", "thoughts ", "", S.THINKING_DONE_EATING_WHITESPACE),
        ("  more content", "", "more content", S.THINKING_DONE),
    ],
}


@pytest.mark.parametrize("steps", STREAMS.values(), ids=STREAMS.keys())
def test_streaming_split(steps: list[tuple[str, str, str, ThinkingState]]) -> None:
    parser = _parser()
    for text, thinking, content, state in steps:
        assert parser.add(text) == (thinking, content)
        assert parser.state is state


def test_go_whitespace_rules_keep_ascii_separators() -> None:
    # Go's unicode.IsSpace does not count \x1c-\x1f; Python's str.strip would.
    assert _parser().add("\x1c<think>x</think>y") == ("", "\x1c<think>x</think>y")
    assert _parser().add("\u3000<think>x</think>\xa0y") == ("x", "y")


def test_prompt_ending_with_the_opening_tag_starts_in_thinking() -> None:
    parser = ThinkingParser.for_prompt(
        "<think>", "</think>", "<|im_start|>assistant\n<think>\n"
    )
    assert parser.state is S.THINKING_STARTED_EATING_WHITESPACE
    assert parser.add("Let me see.</think>The answer") == ("Let me see.", "The answer")


def test_prompt_without_the_opening_tag_looks_for_it() -> None:
    parser = ThinkingParser.for_prompt("<think>", "</think>", "<|im_start|>assistant\n")
    assert parser.state is S.LOOKING_FOR_OPENING
    assert parser.add("Hello") == ("", "Hello")


def test_other_tag_pairs() -> None:
    parser = ThinkingParser("<|START_THINKING|>", "<|END_THINKING|>")
    out = [
        parser.add(t)
        for t in ["<|START_", "THINKING|>plan", "<|END_THI", "NKING|> done"]
    ]
    assert out == [("", ""), ("plan", ""), ("", ""), ("", "done")]


@pytest.mark.parametrize(
    ("template", "tags"),
    [
        (
            "{% if m.reasoning %}<think>{{ m.reasoning }}</think>{% endif %}",
            ("<think>", "</think>"),
        ),
        (
            "{{ '<|START_THINKING|>' }}x{{ '<|END_THINKING|>' }}",
            ("<|START_THINKING|>", "<|END_THINKING|>"),
        ),
        ("<seed:think>{{ t }}</seed:think>", ("<seed:think>", "</seed:think>")),
        ("<|channel>thought\n{{ t }}<channel|>", ("<|channel>", "<channel|>")),
        (
            "{% set content = message.content.split('</think>')[-1] %}",
            ("<think>", "</think>"),
        ),
        ('{% set c = content.split("</think>")[-1] %}', ("<think>", "</think>")),
        ("only an opening <think> tag", None),
        ("{{ messages }}", None),
        ("", None),
        (None, None),
    ],
)
def test_chat_template_thinking_tags(
    template: str | None, tags: tuple[str, str] | None
) -> None:
    assert chat_template_thinking_tags(template) == tags


QWEN3_TEMPLATE = """
{{- if or .System .Tools .Thinking }}<|im_start|>system
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
{{- end }}
{{- if .Thinking }}
/think
{{- else }}
/no_think
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if and $last .Thinking }}
<think>{{ .Thinking }}</think>
{{ end }}
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
"""

INFER_CASES = {
    "basic": (
        """
            {{ if .Thinking}}
                /think
            {{ end }}
            {{- range $i, $_ := .Messages }}
                {{- $last := eq (len (slice $.Messages $i)) 1 -}}
                {{ if and $last .Thinking }}
                    <think>{{ .Thinking }}</think>
                {{ end }}
            {{ end }}
        """,
        ("<think>", "</think>"),
    ),
    "nearest range is not over messages": (
        """
            {{- range $i, $_ := .Messages }}
                {{- range $j, $_ := .NotMessages }}
                    {{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}
                {{ end }}
            {{ end }}
        """,
        None,
    ),
    "whitespace is trimmed": (
        """
            {{- range $i, $_ := .Messages }}
                {{ if .Thinking }}
                    Some text before   {{ .Thinking }}    Some text after
                {{ end }}
            {{ end }}
        """,
        ("Some text before", "Some text after"),
    ),
    "qwen3": (QWEN3_TEMPLATE, ("<think>", "</think>")),
    "thinking outside any range": (
        "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}",
        None,
    ),
    "no thinking": ("{{ range .Messages }}{{ .Content }}{{ end }}", None),
}


@pytest.mark.parametrize(
    ("template", "tags"), INFER_CASES.values(), ids=INFER_CASES.keys()
)
def test_infer_thinking_tags(template: str, tags: tuple[str, str] | None) -> None:
    assert infer_thinking_tags(Template.parse(template)) == tags
