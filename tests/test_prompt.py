"""Prompt assembly as Ollama's template.Execute and server/prompt.go build prompts."""

from __future__ import annotations

import base64
import json

import pytest

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.errors import InvalidRequest, OllamapyError, TemplateError
from ollamapy.prompt.render import (
    PROMPT_TOO_LONG,
    PromptTemplate,
    collate,
    fit_prompt_tokens,
    generate_messages,
    merge_chat_messages,
    render_chat,
    render_generate,
)
from ollamapy.store.default_model import GEMMA3_TEMPLATE
from tests.test_chat_template import GEMMA3_JINJA

S = "You are a helpful assistant."
U = "Hello, how are you?"
A = "I'm doing great. How can I help you today?"
U2 = "I'd like to show off how chat templating works!"

FIXTURES = {
    "user": [("user", U)],
    "user-assistant-user": [("user", U), ("assistant", A), ("user", U2)],
    "system-user-assistant-user": [
        ("system", S),
        ("user", U),
        ("assistant", A),
        ("user", U2),
    ],
}


def _msgs(pairs: list[tuple[str, str]]) -> list[Message]:
    return [Message(role=role, content=content) for role, content in pairs]


CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
CHATML_LEGACY = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
LLAMA3 = (
    "{{- if .Messages }}\n{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>\n"
    '{{- end }}\n{{- range .Messages }}{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
    "{{ .Content }}<|eot_id|>\n{{- end }}{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ else -}}\n"
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>\n{{- end -}}"
)
LLAMA3_LEGACY = LLAMA3.split("{{ else -}}\n", 1)[1].rsplit("\n{{- end -}}", 1)[0]
MISTRAL = (
    '{{- if .Messages }}\n{{- range $index, $_ := .Messages }}\n{{- if eq .Role "user" }}[INST] '
    "{{ if and $.System (eq (len (slice $.Messages $index)) 1) }}{{ $.System }}\n{{ end }}{{ .Content }}\n"
    '{{- else if eq .Role "assistant" }}[/INST] {{ .Content }}</s>\n{{- end }}\n{{- end }}[/INST]\n{{- else -}}\n'
    "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}[/INST] {{ .Response }}</s>\n{{- end -}}"
)
PHI3 = (
    "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}{{ if .Prompt }}<|user|>\n{{ .Prompt }}<|end|>\n"
    "{{ end }}<|assistant|>\n{{ .Response }}<|end|>"
)

GOLDEN = {
    (
        "chatml",
        "user",
    ): "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n",
    ("chatml", "user-assistant-user"): (
        "<|im_start|>user\nHello, how are you?<|im_end|>\n"
        "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
        "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n<|im_start|>assistant\n"
    ),
    ("chatml", "system-user-assistant-user"): (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello, how are you?<|im_end|>\n"
        "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
        "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n<|im_start|>assistant\n"
    ),
    ("llama3", "user"): (
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    ("llama3", "user-assistant-user"): (
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating works!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    ("llama3", "system-user-assistant-user"): (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating works!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    ("mistral", "user"): "[INST] Hello, how are you?[/INST]",
    ("mistral", "user-assistant-user"): (
        "[INST] Hello, how are you?[/INST] I'm doing great. How can I help you today?</s>"
        "[INST] I'd like to show off how chat templating works![/INST]"
    ),
    ("mistral", "system-user-assistant-user"): (
        "[INST] Hello, how are you?[/INST] I'm doing great. How can I help you today?</s>"
        "[INST] You are a helpful assistant.\nI'd like to show off how chat templating works![/INST]"
    ),
    ("phi3", "user"): "<|user|>\nHello, how are you?<|end|>\n<|assistant|>\n",
    ("phi3", "user-assistant-user"): (
        "<|user|>\nHello, how are you?<|end|>\n<|assistant|>\nI'm doing great. How can I help you today?<|end|>"
        "<|user|>\nI'd like to show off how chat templating works!<|end|>\n<|assistant|>\n"
    ),
    ("phi3", "system-user-assistant-user"): (
        "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello, how are you?<|end|>\n"
        "<|assistant|>\nI'm doing great. How can I help you today?<|end|>"
        "<|user|>\nI'd like to show off how chat templating works!<|end|>\n<|assistant|>\n"
    ),
    (
        "gemma3",
        "user",
    ): "<start_of_turn>user\nHello, how are you?<end_of_turn>\n<start_of_turn>model\n",
    ("gemma3", "user-assistant-user"): (
        "<start_of_turn>user\nHello, how are you?<end_of_turn>\n"
        "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
        "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n<start_of_turn>model\n"
    ),
    ("gemma3", "system-user-assistant-user"): (
        "<start_of_turn>user\nYou are a helpful assistant.\n\nHello, how are you?<end_of_turn>\n"
        "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
        "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n<start_of_turn>model\n"
    ),
}
TEMPLATES = {
    "chatml": CHATML,
    "llama3": LLAMA3,
    "mistral": MISTRAL,
    "phi3": PHI3,
    "gemma3": GEMMA3_TEMPLATE,
}


@pytest.mark.parametrize(("name", "fixture"), GOLDEN, ids=["/".join(k) for k in GOLDEN])
def test_golden(name: str, fixture: str) -> None:
    prompt = render_chat(TEMPLATES[name], _msgs(FIXTURES[fixture])).prompt
    assert prompt == GOLDEN[name, fixture]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_legacy_renders_as_messages(fixture: str) -> None:
    """A prompt-only template, rendered turn by turn, gives what its messages form gives."""
    legacy = PromptTemplate.parse(LLAMA3_LEGACY)
    assert not legacy.uses_messages
    msgs = _msgs(FIXTURES[fixture])
    assert (
        legacy.execute(msgs)
        == PromptTemplate.parse(LLAMA3).execute(msgs)
        == GOLDEN["llama3", fixture]
    )


def test_chatml_legacy_matches_golden() -> None:
    for fixture, pairs in FIXTURES.items():
        assert (
            PromptTemplate.parse(CHATML_LEGACY).execute(_msgs(pairs))
            == GOLDEN["chatml", fixture]
        )


def test_gemma3_default_template_matches_gemmas_own_chat_template() -> None:
    """The default model's Go TEMPLATE folds the system text into the first user turn as
    Gemma 3's Jinja template does (the tokenizer adds BOS)."""
    for pairs in FIXTURES.values():
        msgs = _msgs(pairs)
        jinja = render_chat(
            None, msgs, gguf_chat_template=GEMMA3_JINJA, bos_token="<bos>"
        ).prompt
        assert render_chat(GEMMA3_TEMPLATE, msgs).prompt == jinja


@pytest.mark.parametrize(
    "pairs",
    [[("system", S)], [("user", U), ("tool", "42")]],
    ids=["system-only", "tool-result-last"],
)
def test_gemma3_default_template_opens_the_model_turn(
    pairs: list[tuple[str, str]],
) -> None:
    assert render_chat(GEMMA3_TEMPLATE, _msgs(pairs)).prompt.endswith(
        "<start_of_turn>model\n"
    )


MISTRAL_CONVERSATION = [
    ("user", "Hello friend!"),
    ("assistant", "Hello human!"),
    ("user", "What is your name?"),
]


@pytest.mark.parametrize(
    ("template", "messages", "expected"),
    [
        (
            "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] ",
            MISTRAL_CONVERSATION,
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
        ),
        (
            "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] {{ .Response }}",
            MISTRAL_CONVERSATION,
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
        ),
        (
            (
                '[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n{{- if eq .Role "user" }}'
                '{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n{{- end }}'
            ),
            MISTRAL_CONVERSATION,
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
        ),
        (
            "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] ",
            [("system", "You are a helpful assistant!"), *MISTRAL_CONVERSATION],
            "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] ",
        ),
        (
            "[INST] {{ .Prompt }}[/INST] ",
            [*MISTRAL_CONVERSATION, ("assistant", "My name is Ollama and I")],
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I",
        ),
        (
            "[INST] {{ .Prompt }}[/INST] {{ .Response }}</s>",
            [*MISTRAL_CONVERSATION, ("assistant", "My name is Ollama and I")],
            "[INST] Hello friend![/INST] Hello human!</s>[INST] What is your name?[/INST] My name is Ollama and I",
        ),
        (
            (
                '{{- range $i, $m := .Messages }}\n{{- if eq .Role "user" }}[INST] {{ .Content }}[/INST] '
                '{{ else if eq .Role "assistant" }}{{ .Content }}{{ end }}\n{{- end }}'
            ),
            [*MISTRAL_CONVERSATION, ("assistant", "My name is Ollama and I")],
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I",
        ),
    ],
)
def test_execute_with_messages(
    template: str, messages: list[tuple[str, str]], expected: str
) -> None:
    assert PromptTemplate.parse(template).execute(_msgs(messages)) == expected


def test_legacy_cut_removes_everything_after_the_response_field() -> None:
    template = (
        "{{ if .Prompt }}U:{{ .Prompt }}\n{{ end }}A:{{ if .Response }}{{ .Response }}{{ end }}<end>"
        "{{ if .System }}never{{ end }}"
    )
    msgs = _msgs([("user", "one"), ("assistant", "two"), ("user", "three")])
    assert (
        PromptTemplate.parse(template).execute(msgs) == "U:one\nA:two<end>U:three\nA:"
    )


def test_template_without_messages_or_response_gets_the_response_appended() -> None:
    assert PromptTemplate.parse("{{ .Prompt }}").vars == ["prompt", "response"]
    assert (
        render_chat(None, _msgs(FIXTURES["user-assistant-user"])).prompt == U + A + U2
    )
    assert PromptTemplate.parse("{{ .System }} {{ .Prompt }}").vars == [
        "prompt",
        "response",
        "system",
    ]


@pytest.mark.parametrize(
    ("template", "names"),
    [
        (
            "{{ .System }} {{ .Prompt }} {{ .Response }}",
            ["prompt", "response", "system"],
        ),
        (
            "{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}",
            ["prompt", "response", "system", "tools"],
        ),
        (
            "{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}",
            ["content", "messages", "role"],
        ),
        ("{{ json .Messages }}", ["messages"]),
        (
            "{{ range $m := .Messages }}{{ $m.Content }}{{ end }}",
            ["$m", "content", "messages"],
        ),
    ],
)
def test_vars(template: str, names: list[str]) -> None:
    assert PromptTemplate.parse(template).vars == names


def test_suffix() -> None:
    template = PromptTemplate.parse(
        "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}"
    )
    assert template.execute(_msgs([("user", "hello")])) == "hello"
    assert (
        template.execute(prompt="def add(", suffix="return x")
        == "<PRE> def add( <SUF>return x <MID>"
    )


def test_template_errors() -> None:
    with pytest.raises(TemplateError):
        PromptTemplate.parse("{{ if .Messages }}")
    # failing while building a prompt is a server error, as in Ollama
    for render in (
        lambda: render_chat("{{ index .Messages 5 }}", _msgs([("user", "x")])),
        lambda: render_chat("{{ if }}", _msgs([("user", "x")])),
        lambda: render_generate(
            CHATML, prompt="x", request_template="{{ .Nope.Deeper }}"
        ),
        lambda: render_chat(
            None,
            _msgs([("user", "x")]),
            gguf_chat_template="{{ raise_exception('no') }}",
        ),
    ):
        with pytest.raises(OllamapyError) as err:
            render()
        assert err.value.status_code == 500
        assert not isinstance(err.value, TemplateError)
    with pytest.raises(
        OllamapyError, match="error calling index: index out of range: 5"
    ):
        render_chat("{{ index .Messages 5 }}", _msgs([("user", "x")]))


def test_collate() -> None:
    msgs = [
        Message(role="system", content="a"),
        Message(role="system", content="b"),
        Message(role="user", content="c"),
        Message(role="user", content="d"),
        Message(role="assistant", content="e"),
        Message(role="tool", content="f"),
        Message(role="tool", content="g"),
        Message(role="system", content="h"),
    ]
    system, collated = collate(msgs)
    assert system == "a\n\nb\n\nh"
    assert [(m.role, m.content) for m in collated] == [
        ("system", "a\n\nb"),
        ("user", "c\n\nd"),
        ("assistant", "e"),
        ("tool", "f"),
        ("tool", "g"),
        ("system", "h"),
    ]
    assert msgs[0].content == "a"  # the input is not modified


def test_messages_mode_values() -> None:
    template = (
        "{{ .System }}|{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}|{{ .Response }}|"
        "{{ .Think }}/{{ .ThinkLevel }}/{{ .IsThinkSet }}|{{ .Prompt }}"
    )
    msgs = _msgs([("system", "s1"), ("user", "u"), ("system", "s2")])
    assert (
        render_chat(template, msgs).prompt
        == "s1\n\ns2|system:s1;user:u;system:s2;||false//false|<no value>"
    )
    assert (
        render_chat(template, msgs, think=True).prompt.split("|")[3]
        == "true/medium/true"
    )
    assert (
        render_chat(template, msgs, think="high").prompt.split("|")[3]
        == "true/high/true"
    )
    assert (
        render_chat(template, msgs, think=False).prompt.split("|")[3] == "false//true"
    )


def test_tools_and_tool_calls_print_as_json() -> None:
    tool = Tool.model_validate(
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather <now>",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["c", "f"]},
                    },
                },
            },
        }
    )
    call = Message.model_validate(
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "function": {
                        "name": "get_weather",
                        "arguments": {"unit": "c", "city": "Oslo"},
                    }
                }
            ],
        }
    )
    template = (
        "{{ if .Tools }}{{ .Tools }}{{ end }}\n{{ range .Messages }}{{ range .ToolCalls }}"
        "{{ .Function.Name }}{{ .Function.Arguments }}{{ end }}{{ end }}"
    )
    prompt = render_chat(
        template, [Message(role="user", content="hi"), call], tools=[tool]
    ).prompt
    tools_json, calls = prompt.split("\n")
    assert tools_json == (
        '[{"type":"function","function":{"name":"get_weather","description":"Weather \\u003cnow\\u003e",'
        '"parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"},'
        '"unit":{"type":"string","enum":["c","f"]}}}}}]'
    )
    assert calls == 'get_weather{"city":"Oslo","unit":"c"}'
    assert render_chat(template, [Message(role="user", content="hi")]).prompt == "\n"


def test_image_tags() -> None:
    msgs = [
        Message(role="user", content="first", images=["aW1nMA=="]),
        Message(role="assistant", content="ok"),
        Message(
            role="user",
            content="compare [img] with [img]",
            images=["aW1nMQ==", "aW1nMg==", "aW1nMw=="],
        ),
    ]
    result = render_chat(CHATML, msgs)
    assert result.prompt == (
        "<|im_start|>user\n[img-0]first<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
        "<|im_start|>user\n[img-3]compare [img-1] with [img-2]<|im_end|>\n<|im_start|>assistant\n"
    )
    assert result.image_count == 4
    assert result.images == ("aW1nMA==", "aW1nMQ==", "aW1nMg==", "aW1nMw==")
    assert msgs[0].content == "first"


def _words(text: str) -> int:
    return len(text.split())


CONVERSATION = [
    Message(role="system", content="You are a helpful assistant."),
    Message(role="user", content="one two three four five"),
    Message(role="assistant", content="six seven eight nine ten"),
    Message(role="user", content="eleven twelve"),
]
PLAIN = "{{ range .Messages }}{{ .Content }} {{ end }}"


@pytest.mark.parametrize(
    ("num_ctx", "kept", "truncated"),
    [
        (
            100,
            [
                "You are a helpful assistant.",
                "one two three four five",
                "six seven eight nine ten",
                "eleven twelve",
            ],
            False,
        ),
        (
            17,
            [
                "You are a helpful assistant.",
                "one two three four five",
                "six seven eight nine ten",
                "eleven twelve",
            ],
            False,
        ),
        (
            16,
            [
                "You are a helpful assistant.",
                "six seven eight nine ten",
                "eleven twelve",
            ],
            True,
        ),
        (
            12,
            [
                "You are a helpful assistant.",
                "six seven eight nine ten",
                "eleven twelve",
            ],
            True,
        ),
        (11, ["You are a helpful assistant.", "eleven twelve"], True),
        (10, ["You are a helpful assistant.", "eleven twelve"], True),
        (1, ["You are a helpful assistant.", "eleven twelve"], True),
    ],
)
def test_truncation_keeps_system_and_last_message(
    num_ctx: int, kept: list[str], truncated: bool
) -> None:
    result = render_chat(PLAIN, CONVERSATION, tokenize=_words, num_ctx=num_ctx)
    assert result.prompt == "".join(k + " " for k in kept)
    assert result.truncated is truncated


def test_no_truncation_without_truncate_or_tokenizer() -> None:
    full = "".join(m.content + " " for m in CONVERSATION)
    assert (
        render_chat(
            PLAIN, CONVERSATION, tokenize=_words, num_ctx=1, truncate=False
        ).prompt
        == full
    )
    assert render_chat(PLAIN, CONVERSATION, num_ctx=1).prompt == full


def test_images_count_toward_the_context() -> None:
    msgs = [
        Message(role="user", content="look", images=["aW1n"]),
        Message(role="assistant", content="nice"),
        Message(role="user", content="again"),
    ]
    kept = render_chat(PLAIN, msgs, tokenize=_words, num_ctx=771)
    assert (kept.prompt, kept.image_count) == ("[img-0]look nice again ", 1)
    dropped = render_chat(PLAIN, msgs, tokenize=_words, num_ctx=770)
    assert (dropped.prompt, dropped.image_count) == ("nice again ", 0)
    assert (
        render_chat(PLAIN, msgs, tokenize=_words, num_ctx=3, image_tokens=0).image_count
        == 1
    )


def test_truncation_keeps_tool_results_with_their_call() -> None:
    call = Message.model_validate(
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
        }
    )
    msgs = [
        Message(role="user", content="a b c d e f"),
        call,
        Message(role="tool", content="r1"),
        Message(role="tool", content="r2"),
    ]
    # without the user message it would fit from the first tool result on, but a tool
    # result is never separated from the call that asked for it
    result = render_chat(PLAIN, msgs, tokenize=_words, num_ctx=3)
    assert result.prompt == "calling r1 r2 "


def test_merge_chat_messages() -> None:
    model_messages = [
        Message(role="user", content="example q"),
        Message(role="assistant", content="example a"),
    ]
    merged = merge_chat_messages(
        [Message(role="user", content="q")],
        model_system="be brief",
        model_messages=model_messages,
    )
    assert [(m.role, m.content) for m in merged] == [
        ("system", "be brief"),
        ("user", "example q"),
        ("assistant", "example a"),
        ("user", "q"),
    ]
    own_system = merge_chat_messages(
        [Message(role="system", content="mine"), Message(role="user", content="q")],
        model_system="be brief",
    )
    assert [m.content for m in own_system] == ["mine", "q"]
    assert merge_chat_messages([], model_system="be brief") == []


def test_merge_strips_earlier_thinking_for_qwen3_and_deepseek_r1() -> None:
    msgs = [
        Message(role="user", content="a"),
        Message(role="assistant", content="<think>hmm</think>\n\nanswer"),
        Message(role="user", content="b"),
        Message(role="assistant", content="<think>prefill"),
    ]
    for kwargs in ({"model_family": "qwen3"}, {"model_name": "deepseek-r1"}):
        merged = merge_chat_messages(msgs, **kwargs)
        assert [m.content for m in merged] == ["a", "answer", "b", "<think>prefill"]
    assert (
        merge_chat_messages(msgs, model_family="llama")[1].content
        == "<think>hmm</think>\n\nanswer"
    )


def test_generate_messages() -> None:
    model_messages = [Message(role="user", content="ex")]
    msgs = generate_messages(
        "p",
        system=None,
        model_system="ms",
        model_messages=model_messages,
        images=["aQ=="],
    )
    assert [(m.role, m.content, m.images) for m in msgs] == [
        ("system", "ms", None),
        ("user", "ex", None),
        ("user", "p", ["aQ=="]),
    ]
    msgs = generate_messages(
        "p",
        system="rs",
        model_system="ms",
        model_messages=model_messages,
        has_context=True,
    )
    assert [(m.role, m.content) for m in msgs] == [("system", "rs"), ("user", "p")]


def test_render_generate() -> None:
    result = render_generate(
        CHATML, prompt="why?", model_system="be brief", images=["aQ=="]
    )
    assert result.prompt == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n[img-0]why?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert result.image_count == 1
    with_context = render_generate(
        CHATML,
        prompt="why?",
        context_text="EARLIER",
        model_messages=_msgs([("user", "x")]),
    )
    assert (
        with_context.prompt
        == "EARLIER<|im_start|>user\nwhy?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_render_generate_with_suffix_or_request_template() -> None:
    fim = "{{ if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{ else }}{{ .Prompt }}{{ end }}"
    assert (
        render_generate(fim, prompt="def f(", suffix="return 1").prompt
        == "<PRE>def f(<SUF>return 1<MID>"
    )
    # a request template is executed directly: images keep their data but get no tags
    result = render_generate(
        CHATML,
        prompt="hi",
        request_template="[{{ .System }}] {{ .Prompt }}",
        system="s",
        images=["aQ=="],
    )
    assert (result.prompt, result.image_count) == ("[s] hi", 1)


def test_gguf_chat_template_without_a_template_layer() -> None:
    msgs = _msgs(FIXTURES["system-user-assistant-user"])
    jinja = render_chat(
        None, msgs, gguf_chat_template=GEMMA3_JINJA, bos_token="<bos>"
    ).prompt
    assert jinja == GOLDEN["gemma3", "system-user-assistant-user"]
    # a TEMPLATE layer wins over the GGUF's chat template
    assert (
        render_chat(CHATML, msgs, gguf_chat_template=GEMMA3_JINJA).prompt
        == GOLDEN["chatml", "system-user-assistant-user"]
    )
    # neither: {{ .Prompt }}
    assert render_chat(None, msgs).prompt == U + A + U2


def test_fit_prompt_tokens() -> None:
    tokens = list(range(10))
    assert fit_prompt_tokens(tokens, num_ctx=11) == tokens
    # context shift keeps num_keep (+BOS) tokens and discards from the middle
    assert fit_prompt_tokens(tokens, num_ctx=8, num_keep=2) == [0, 1, 2, 7, 8, 9]
    assert fit_prompt_tokens(tokens, num_ctx=8, num_keep=2, adds_bos=False) == [
        0,
        1,
        7,
        8,
        9,
    ]
    with pytest.raises(InvalidRequest) as err:
        fit_prompt_tokens(tokens, num_ctx=10, shift=False)
    assert str(err.value) == PROMPT_TOO_LONG
    assert err.value.status_code == 400
    with pytest.raises(InvalidRequest) as err:
        fit_prompt_tokens(tokens, num_ctx=10, truncate=False)
    assert json.loads(str(err.value)) == {
        "error": {
            "code": 400,
            "message": "request (10 tokens) exceeds the available context size (10 tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 10,
            "n_ctx": 10,
        }
    }


# Ollama's server/prompt_test.go cases: a legacy template, a tokenizer that counts
# words, and a vision model (each image counts 768 tokens).
HARRY = "{{- if .System }}{{ .System }} {{ end }}\n{{- if .Prompt }}{{ .Prompt }} {{ end }}\n{{- if .Response }}{{ .Response }} {{ end }}"
Q1 = "You're a test, Harry!"
R1 = "I-I'm a what?"
Q2 = "A test. And a thumping good one at that, I'd wager."
SYS = "You are the Test Who Lived."


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _m(role: str, content: str = "", *images: str) -> Message:
    return Message(role=role, content=content, images=[_b64(i) for i in images] or None)


CHAT_PROMPT_CASES = {
    "messages": (
        64,
        [_m("user", Q1), _m("assistant", R1), _m("user", Q2)],
        f"{Q1} {R1} {Q2} ",
        [],
    ),
    "truncate messages": (
        1,
        [_m("user", Q1), _m("assistant", R1), _m("user", Q2)],
        f"{Q2} ",
        [],
    ),
    "truncate messages with image": (
        64,
        [_m("user", Q1), _m("assistant", R1), _m("user", Q2, "something")],
        f"[img-0]{Q2} ",
        ["something"],
    ),
    "truncate messages with images": (
        64,
        [
            _m("user", Q1, "something"),
            _m("assistant", R1),
            _m("user", Q2, "somethingelse"),
        ],
        f"[img-0]{Q2} ",
        ["somethingelse"],
    ),
    "messages with images": (
        2048,
        [
            _m("user", Q1, "something"),
            _m("assistant", R1),
            _m("user", Q2, "somethingelse"),
        ],
        f"[img-0]{Q1} {R1} [img-1]{Q2} ",
        ["something", "somethingelse"],
    ),
    "message with image tag": (
        2048,
        [
            _m("user", Q1 + " [img]", "something"),
            _m("assistant", R1),
            _m("user", Q2, "somethingelse"),
        ],
        f"{Q1} [img-0] {R1} [img-1]{Q2} ",
        ["something", "somethingelse"],
    ),
    "messages with interleaved images": (
        2048,
        [
            _m("user", Q1),
            _m("user", "", "something"),
            _m("user", "", "somethingelse"),
            _m("assistant", R1),
            _m("user", Q2),
        ],
        f"{Q1}\n\n[img-0]\n\n[img-1] {R1} {Q2} ",
        ["something", "somethingelse"],
    ),
    "truncate message with interleaved images": (
        1024,
        [
            _m("user", Q1),
            _m("user", "", "something"),
            _m("user", "", "somethingelse"),
            _m("assistant", R1),
            _m("user", Q2),
        ],
        f"[img-0] {R1} {Q2} ",
        ["somethingelse"],
    ),
    "message with system prompt": (
        2048,
        [_m("system", SYS), _m("user", Q1), _m("assistant", R1), _m("user", Q2)],
        f"{SYS} {Q1} {R1} {Q2} ",
        [],
    ),
    "out of order system": (
        2048,
        [_m("user", Q1), _m("assistant", R1), _m("system", SYS), _m("user", Q2)],
        f"{Q1} {R1} {SYS} {Q2} ",
        [],
    ),
    "multiple images same prompt": (
        2048,
        [
            _m(
                "user",
                "Compare these two pictures of hotdogs",
                "one hotdog",
                "two hotdogs",
            )
        ],
        "[img-0][img-1]Compare these two pictures of hotdogs ",
        ["one hotdog", "two hotdogs"],
    ),
}


@pytest.mark.parametrize(
    ("num_ctx", "messages", "prompt", "images"),
    CHAT_PROMPT_CASES.values(),
    ids=CHAT_PROMPT_CASES.keys(),
)
def test_chat_prompt(
    num_ctx: int, messages: list[Message], prompt: str, images: list[str]
) -> None:
    result = render_chat(HARRY, messages, tokenize=_words, num_ctx=num_ctx)
    assert result.prompt == prompt
    assert result.images == tuple(_b64(i) for i in images)


def test_template_call_without_pipeline_is_refused_as_ollama_does() -> None:
    with pytest.raises(TemplateError, match="undefined template specified"):
        PromptTemplate.parse(
            '{{ define "x" }}X{{ end }}{{ if .Messages }}{{ template "x" }}{{ end }}'
        )
    assert (
        PromptTemplate.parse('{{ define "x" }}X{{ end }}{{ template "x" . }}').execute()
        == "X"
    )
