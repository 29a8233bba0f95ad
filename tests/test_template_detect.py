"""Create-time template detection: GGUF chat templates of several families to Ollama's named templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollamapy.api.types import CreateRequest
from ollamapy.store import create as model_create
from ollamapy.store.model import load_model
from ollamapy.store.model_store import MEDIA_TYPE_MODEL, ModelStore
from ollamapy.store.names import ModelName
from ollamapy.store.template_detect import detect_named_template, levenshtein_below, named_templates
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf

# Chat templates as published GGUFs carry them (tokenizer.chat_template).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
PHI3 = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
    "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}"
    "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"
)
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
# Gemma 3 folds the system prompt into the first user turn: too far from every indexed text.
GEMMA3 = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n'"
    " + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)


@pytest.mark.parametrize(
    ("chat_template", "name", "stop"),
    [
        (SMOLLM2, "chatml", ["<|im_start|>", "<|im_end|>"]),
        (LLAMA3, "llama3-instruct", ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
        (GEMMA, "gemma-instruct", ["<start_of_turn>", "<end_of_turn>"]),
        (PHI3, "phi-3", ["<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]),
        (ZEPHYR, "zephyr", ["<|system|>", "</s>", "<|user|>", "<|assistant|>"]),
    ],
)
def test_chat_templates_map_to_their_named_template_and_stop_words(chat_template: str, name: str, stop: list[str]) -> None:
    named = detect_named_template(chat_template)
    assert named is not None
    assert (named.name, named.parameters) == (name, {"stop": stop})


def test_a_named_template_without_a_params_file_has_no_parameters() -> None:
    named = detect_named_template(MISTRAL)
    assert named is not None
    assert (named.name, named.parameters) == ("mistral-instruct", None)
    assert named.template.startswith("[INST] {{ range $index, $_ := .Messages }}")


@pytest.mark.parametrize("chat_template", [GEMMA3, "", None, "{{ messages[0]['content'] }}"])
def test_templates_far_from_every_indexed_one_match_nothing(chat_template: str | None) -> None:
    assert detect_named_template(chat_template) is None


def test_the_match_limit_is_a_distance_below_100() -> None:
    jinja, named = named_templates()[6]  # the plain ChatML loop
    assert named.name == "chatml"
    padding = "{# x #}"
    assert detect_named_template(jinja + padding * 14)  # 98 edits away
    assert detect_named_template(jinja + padding * 14 + "xx") is None  # 100 edits away


@pytest.mark.parametrize(("a", "b", "distance"), [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "abc", 0), ("flaw", "lawn", 2), ("día", "dia", 1)])
def test_levenshtein_counts_code_point_edits(a: str, b: str, distance: int) -> None:
    assert levenshtein_below(a, b, 10) == distance
    assert levenshtein_below(a, b, distance) is None


def test_every_named_template_in_the_index_parses_and_renders() -> None:
    from ollamapy.prompt.render import PromptTemplate

    names = {named.name for _, named in named_templates()}
    assert {"chatml", "llama3-instruct", "gemma-instruct", "mistral-instruct", "phi-3", "command-r"} <= names
    for _, named in named_templates():
        PromptTemplate.parse(named.template)


# --- create ---------------------------------------------------------------------------


def _create(store: ModelStore, gguf: Path, **extra: object) -> list[str]:
    layer = store.add_blob_file(gguf, MEDIA_TYPE_MODEL)
    events: list[str] = []
    request = CreateRequest.model_validate({"model": "detected", "files": {"model.gguf": layer.digest}, **extra})
    model_create.run_create(store, model_create.prepare_create(store, request), lambda e: events.append(e["status"]))
    return events


def test_create_from_a_gguf_writes_the_detected_template_and_stop_words(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "chatml.gguf", TinyModelSpec(chat_template=SMOLLM2))
    store = ModelStore(tmp_path / "models")
    events = _create(store, gguf)
    assert "using autodetected template chatml" in events
    model = load_model(store, ModelName.parse("detected"))
    assert model.template == next(n.template for _, n in named_templates() if n.name == "chatml")
    params = next(layer for layer in model.manifest.layers if layer.media_type.endswith(".params"))
    assert json.loads(store.read_blob_text(params.digest)) == {"stop": ["<|im_start|>", "<|im_end|>"]}


def test_the_request_template_and_parameters_go_over_the_detected_ones(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "chatml.gguf", TinyModelSpec(chat_template=SMOLLM2))
    store = ModelStore(tmp_path / "models")
    _create(store, gguf, template="{{ .Prompt }}", parameters={"temperature": 0.5})
    model = load_model(store, ModelName.parse("detected"))
    assert model.template == "{{ .Prompt }}"
    params = next(layer for layer in model.manifest.layers if layer.media_type.endswith(".params"))
    assert json.loads(store.read_blob_text(params.digest)) == {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.5}


def test_create_from_a_gguf_whose_template_matches_nothing_keeps_no_template_layer(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "gemma3.gguf", TinyModelSpec(chat_template=GEMMA3))
    store = ModelStore(tmp_path / "models")
    events = _create(store, gguf)
    assert not any(e.startswith("using autodetected template") for e in events)
    model = load_model(store, ModelName.parse("detected"))
    assert [layer.media_type for layer in model.manifest.layers] == [MEDIA_TYPE_MODEL]
