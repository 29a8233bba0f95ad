"""A stored model as the server uses it: its layers read into typed fields.

The store knows manifests and blobs; this module knows what the layers mean (weights,
adapters, template, system prompt, parameters, messages, licenses), like Ollama's
``GetModel``. ``/api/show``, the scheduler and prompt building all start from a ``Model``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from ollamapy.api.types import Message, ModelDetails
from ollamapy.errors import ModelNotFound
from ollamapy.store import model_store as st
from ollamapy.store.gguf import GGUFInfo, read_gguf
from ollamapy.store.names import ModelName

__all__ = ["Model", "details_from_config", "find_model", "load_model"]


@dataclass
class Model:
    """One model's manifest, config and layer contents."""

    name: ModelName
    manifest: st.Manifest
    config: dict[str, Any]
    digest: str
    """sha256 hex of the manifest bytes (what ``/api/tags`` reports)."""
    modified_at: datetime
    model_path: Path | None = None
    adapter_paths: list[Path] = field(default_factory=list)
    projector_paths: list[Path] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    _capabilities: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def short_name(self) -> str:
        return self.name.display_shortest()

    @property
    def size(self) -> int:
        return self.manifest.config.size + sum(layer.size for layer in self.manifest.layers)

    @cached_property
    def gguf(self) -> GGUFInfo | None:
        """GGUF header of the weights (header only, never tensor data), cached per blob."""
        return _read_gguf_cached(self.model_path) if self.model_path else None

    def details(self) -> ModelDetails:
        return details_from_config(self.config)

    def capabilities(self) -> list[str]:
        """GGUF-side capabilities plus those the template implies (tools, insert, thinking)."""
        from ollamapy.store.capabilities import model_capabilities

        if self._capabilities is None:
            self._capabilities = model_capabilities(self)
        return list(self._capabilities)


@lru_cache(maxsize=64)
def _read_gguf_cached(path: Path) -> GGUFInfo:
    """Blobs are content-addressed and never change, so a header is read once per path."""
    return read_gguf(path)


def details_from_config(config: dict[str, Any]) -> ModelDetails:
    """``details`` as Ollama reports it, from a model's config blob."""
    families = config.get("model_families")
    return ModelDetails(
        parent_model="",
        format=config.get("model_format", ""),
        family=config.get("model_family", ""),
        families=list(families) if families else None,
        parameter_size=config.get("model_type", ""),
        quantization_level=config.get("file_type", ""),
    )


_loaded: dict[Path, tuple[tuple[int, int, int], Model]] = {}
_loaded_lock = threading.Lock()


def load_model(store: st.ModelStore, name: ModelName) -> Model:
    """Read ``name`` from ``store``; ``ModelNotFound`` when it has no manifest.

    Parsed models are cached by manifest path and (mtime, size), so a request for a
    model that did not change costs one ``stat``. Callers must not mutate the result
    (copy it with ``dataclasses.replace`` first).
    """
    path = store.manifest_path(name)
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ModelNotFound(f"model '{name.display_shortest()}' not found") from None
    key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    with _loaded_lock:
        cached = _loaded.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    model = _read_model(store, name)
    with _loaded_lock:
        _loaded[path] = (key, model)
    return model


def find_model(store: st.ModelStore, raw_name: str) -> Model:
    """The model a user named (any spelling the store resolves: ``tiny``, ``library/tiny:latest``…).

    Raises ``ModelNotFound`` with Ollama's ``model '<name>' not found``, quoting the name as
    the user wrote it, for an invalid name as well as a missing one.
    """
    name = ModelName.parse(raw_name)
    if not raw_name or not name.is_valid():
        raise ModelNotFound(f"model '{raw_name}' not found")
    try:
        return load_model(store, store.resolve_existing(name))
    except ModelNotFound:
        raise ModelNotFound(f"model '{raw_name}' not found") from None


def _read_model(store: st.ModelStore, name: ModelName) -> Model:
    manifest = store.read_manifest(name)
    config = store.read_config(manifest)
    model = Model(
        name=name,
        manifest=manifest,
        config=config,
        digest=store.manifest_digest(name),
        modified_at=store.manifest_mtime(name),
    )
    for layer in manifest.layers:
        media = layer.media_type
        if media == st.MEDIA_TYPE_MODEL:
            model.model_path = store.blob_path(layer.digest)
        elif media == st.MEDIA_TYPE_ADAPTER:
            model.adapter_paths.append(store.blob_path(layer.digest))
        elif media == st.MEDIA_TYPE_PROJECTOR:
            model.projector_paths.append(store.blob_path(layer.digest))
        elif media in (st.MEDIA_TYPE_TEMPLATE, st.MEDIA_TYPE_PROMPT):
            model.template = store.read_blob_text(layer.digest)
        elif media == st.MEDIA_TYPE_SYSTEM:
            model.system = store.read_blob_text(layer.digest)
        elif media == st.MEDIA_TYPE_PARAMS:
            model.parameters = json.loads(store.read_blob_text(layer.digest) or "{}")
        elif media == st.MEDIA_TYPE_MESSAGES:
            raw = json.loads(store.read_blob_text(layer.digest) or "[]")
            model.messages = [Message.model_validate(m) for m in raw]
        elif media == st.MEDIA_TYPE_LICENSE:
            model.licenses.append(store.read_blob_text(layer.digest))
    if model.model_path is None and not manifest.layers:
        raise ModelNotFound(f"model '{name.display_shortest()}' has no layers")
    return model
