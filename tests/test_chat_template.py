"""GGUF (Jinja2) chat templates rendered as llama.cpp renders them."""

from __future__ import annotations

import pytest

from ollamapy.api.tools import Tool
from ollamapy.api.types import Message
from ollamapy.errors import TemplateError
from ollamapy.prompt.jinja_template import (
    jinja_messages,
    render_chat_messages,
    render_chat_template,
)

# Gemma 3's own chat template (as shipped in its tokenizer_config.json / GGUF).
GEMMA3_JINJA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SYSTEM_USER_ASSISTANT_USER = [
    Message(role="system", content="You are a helpful assistant."),
    Message(role="user", content="Hello, how are you?"),
    Message(role="assistant", content="I'm doing great. How can I help you today?"),
    Message(role="user", content="I'd like to show off how chat templating works!"),
]


def test_gemma3_system_folds_into_first_user_turn() -> None:
    prompt = render_chat_messages(
        GEMMA3_JINJA, SYSTEM_USER_ASSISTANT_USER, bos_token="<bos>"
    )
    assert prompt == (
        "<start_of_turn>user\nYou are a helpful assistant.\n\nHello, how are you?<end_of_turn>\n"
        "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
        "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_bos_is_kept_when_the_tokenizer_does_not_add_it() -> None:
    prompt = render_chat_messages(
        GEMMA3_JINJA, SYSTEM_USER_ASSISTANT_USER[1:2], bos_token="<bos>", add_bos=False
    )
    assert (
        prompt
        == "<bos><start_of_turn>user\nHello, how are you?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_final_assistant_message_is_a_prefill() -> None:
    messages = [
        Message(role="user", content="Count to three"),
        Message(role="assistant", content="One, two,"),
    ]
    assert render_chat_messages(CHATML_JINJA, messages) == (
        "<|im_start|>user\nCount to three<|im_end|>\n<|im_start|>assistant\nOne, two,"
    )


def test_raise_exception_is_a_template_error() -> None:
    messages = [Message(role="user", content="a"), Message(role="user", content="b")]
    with pytest.raises(TemplateError, match="Conversation roles must alternate"):
        render_chat_messages(GEMMA3_JINJA, messages)


def test_syntax_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="chat template error"):
        render_chat_template("{% for m in messages %}", [])


def test_sandbox_blocks_attribute_escapes() -> None:
    with pytest.raises(TemplateError):
        render_chat_template("{{ messages.__class__.__mro__[1].__subclasses__() }}", [])
    with pytest.raises(TemplateError):
        render_chat_template("{% set _ = messages.append(1) %}", [])


def test_globals_and_filters() -> None:
    out = render_chat_template(
        "{{ strftime_now('%Y') | length }}|{{ messages[0] | tojson }}|{{ eos_token }}|{{ add_generation_prompt }}",
        [{"role": "user", "content": "héllo <b>"}],
        eos_token="</s>",
        add_generation_prompt=False,
    )
    assert out == '4|{"role": "user", "content": "héllo <b>"}|</s>|False'


def test_trim_and_lstrip_blocks() -> None:
    template = "{% for m in messages %}\n  {% if m.role %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}"
    assert render_chat_template(template, [{"role": "user", "content": "x"}]) == "[x]\n"


def test_loop_controls() -> None:
    template = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
    assert (
        render_chat_template(
            template,
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        )
        == "a"
    )


def test_tools_and_think_reach_the_template() -> None:
    tool = Tool.model_validate(
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                },
            },
        }
    )
    template = (
        "{% if tools %}{% for t in tools %}{{ t.function.name }}:{{ t.function.parameters | tojson }};{% endfor %}{% endif %}"
        "{{ enable_thinking }}/{{ reasoning_effort | default('-') }}"
    )
    messages = [Message(role="user", content="hi")]
    assert render_chat_messages(template, messages, tools=[tool], think=True) == (
        'get_weather:{"type": "object", "properties": {"city": {"type": "string"}}};True/-'
    )
    assert render_chat_messages(template, messages, think="high") == "True/high"
    assert render_chat_messages(template, messages) == "/-"


def test_messages_take_the_openai_shape() -> None:
    messages = [
        Message.model_validate(
            {
                "role": "assistant",
                "content": "",
                "thinking": "hmm",
                "tool_calls": [
                    {"id": "call_abc", "function": {"name": "f", "arguments": {"x": 1}}}
                ],
            }
        ),
        Message(role="tool", content="42", tool_name="f", tool_call_id="call_abc"),
    ]
    assert jinja_messages(messages) == [
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "hmm",
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "f", "arguments": {"x": 1}},
                }
            ],
        },
        {"role": "tool", "content": "42", "name": "f", "tool_call_id": "call_abc"},
    ]


def test_no_tools_is_none() -> None:
    template = "{{ tools is none }}/{{ tools is defined }}"
    assert render_chat_template(template, [], tools=[]) == "True/True"
