"""Schemathesis hooks for tests/test_fuzz_openapi.py, loaded by ``st run`` through
``SCHEMATHESIS_HOOKS=fuzz_hooks`` (this folder on ``PYTHONPATH``); the test passes the rest
through ``OLLAMAPY_FUZZ_*`` variables.

* Left alone, the fuzzer names models at random and nearly every request stops at a 404,
  so the generation, embedding, show and push paths past the lookup would never run. A
  body that names a model is also tried naming one the server holds
  (``OLLAMAPY_FUZZ_MODELS``, JSON: name → GGUF path and parameters), the rest of it still fuzzed; for create it is the ``from``
  model, so fuzzed creates build on a real model and never overwrite one.
* A delete that removes one of those models (the description's own delete example names
  one, and the fuzzer learns the others from ``/api/tags``) is undone at once: the model is
  created again from its GGUF file and parameters, so later requests still reach it.
* Two 500s are Ollama's own answers, kept by ollamapy, and not counted as server errors:
  a registry it cannot reach (pull, push, and create pulling a missing ``from`` model,
  with ``stream: false``; a stream ends with an ``{"error": …}`` line instead), recognised
  by the refused connection to the proxy address where nothing listens
  (``OLLAMAPY_FUZZ_UNREACHABLE``); and a push of a model the store lacks, Go's
  ``open <manifest>: no such file or directory``. Every other 500 counts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import strategies as st

__all__ = ["after_call", "filter_failure", "flatmap_body"]

# name -> {"gguf": path, "parameters": {...}}: the server's models and how they were made
_MODELS: dict[str, dict[str, Any]] = json.loads(os.environ.get("OLLAMAPY_FUZZ_MODELS", "{}"))
_UNREACHABLE = os.environ.get("OLLAMAPY_FUZZ_UNREACHABLE", "")
# the body field that names an existing model, per operation
_MODEL_FIELD = {"/api/generate": "model", "/api/chat": "model", "/api/embed": "model", "/api/show": "model", "/api/push": "model", "/api/create": "from"}


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """The body as generated, or the same body naming one of the server's models."""
    field = _MODEL_FIELD.get(context.operation.path if context.operation is not None else "")
    if not _MODELS or field is None or not isinstance(body, dict):
        return st.just(body)
    return st.one_of(st.just(body), st.sampled_from(sorted(_MODELS)).map(lambda name: {**body, field: name}))


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """After a delete, create again any of the server's models it removed."""
    if case.path != "/api/delete" or response.status_code != 200:
        return
    base = response.request.url.removesuffix(case.path)
    present = {model["name"] for model in requests.get(f"{base}/api/tags", timeout=30).json()["models"]}
    for name, recipe in _MODELS.items():
        if f"{name}:latest" in present:
            continue
        gguf = Path(recipe["gguf"]).read_bytes()
        digest = "sha256:" + hashlib.sha256(gguf).hexdigest()
        requests.post(f"{base}/api/blobs/{digest}", data=gguf, timeout=30).raise_for_status()
        body = {"model": name, "files": {"model.gguf": digest}, "parameters": recipe.get("parameters", {}), "stream": False}
        requests.post(f"{base}/api/create", json=body, timeout=30).raise_for_status()


def _ollama_500(path: str, message: str) -> bool:
    """Whether a 500 with ``message`` on ``path`` is the one Ollama answers there too."""
    if path in {"/api/pull", "/api/push", "/api/create"} and _UNREACHABLE and f"Cannot connect to host {_UNREACHABLE} " in message:
        return True
    return path == "/api/push" and message.startswith("open ") and message.endswith(": no such file or directory")


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but Ollama's own 500s (see the module docstring)."""
    if getattr(failure, "code", "") != "ST101" or response is None or response.status_code != 500:
        return True
    try:
        message = response.json().get("error", "")
    except (ValueError, AttributeError):
        return True
    return not (isinstance(message, str) and _ollama_500(case.path, message))
