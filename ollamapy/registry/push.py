"""``/api/push``: a model's blobs and manifest from the store to a registry.

Progress, as Ollama streams it: ``retrieving manifest``; ``pushing <digest[7:19]>`` per
layer (config last); ``pushing manifest``; ``success``. The manifest is sent exactly as
stored, so the registry's digest for it is the ``digest`` ``/api/tags`` shows and a pull
writes back the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ollamapy import envconfig
from ollamapy.errors import OllamapyError
from ollamapy.registry.client import RegistryError
from ollamapy.registry.manager import TransferManager
from ollamapy.registry.pull import manifest_layers
from ollamapy.registry.transfer import progress_event
from ollamapy.registry.upload import upload_blob
from ollamapy.store.model_store import MEDIA_TYPE_MANIFEST, Manifest, ModelStore
from ollamapy.store.names import ModelName

__all__ = ["push_model"]


def _read_manifest(store: ModelStore, name: ModelName) -> bytes:
    path = store.manifest_path(name)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise OllamapyError(f"open {path}: no such file or directory") from None


async def push_model(
    manager: TransferManager, store: ModelStore, name: ModelName, *, insecure: bool = False, key_dir: Path | None = None
) -> AsyncGenerator[dict[str, Any], None]:
    """Push ``name`` (already respelled as the store spells it), yielding progress events."""
    yield progress_event("retrieving manifest")
    if name.scheme == "http" and not insecure:
        raise RegistryError("insecure protocol http")
    try:
        raw = await asyncio.to_thread(_read_manifest, store, name)
        manifest = Manifest.from_json(raw)
    except OllamapyError:
        yield progress_event("couldn't retrieve manifest")
        raise
    client = manager.client(name, insecure=insecure, key_dir=key_dir or envconfig.home_dir())
    for layer in manifest_layers(manifest):
        async with aclosing(upload_blob(client, store, layer, manager.settings)) as events:
            async for event in events:
                yield event
    yield progress_event("pushing manifest")
    response = await client.request("PUT", client.url("manifests", name.tag), headers={"Content-Type": MEDIA_TYPE_MANIFEST}, body=raw)
    response.release()
    yield progress_event("success")
