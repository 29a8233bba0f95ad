"""``/api/pull``: a model's manifest and blobs from a registry into the store.

Progress, as Ollama streams it: ``pulling manifest``; ``pulling <digest[7:19]>`` with
``digest``/``total``/``completed`` per layer (config last; blobs already in the store report
done at once); ``verifying sha256 digest``; ``writing manifest``; ``removing unused layers``
when the tag's previous version left blobs nothing references (unless ``OLLAMA_NOPRUNE``);
``success``. Every downloaded blob is verified before it is renamed into place (see
:mod:`ollamapy.registry.download`), so by ``verifying sha256 digest`` the check has been
made; the manifest is written, byte for byte as the registry sent it, only after every
blob it names is in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from pathlib import Path
from typing import Any

import aiohttp

from ollamapy import envconfig
from ollamapy.errors import InvalidDigest, OllamapyError
from ollamapy.registry.client import RegistryClient, RegistryError
from ollamapy.registry.manager import TransferManager
from ollamapy.registry.transfer import progress_event
from ollamapy.store.model_store import MEDIA_TYPE_MANIFEST, Layer, Manifest, ModelStore
from ollamapy.store.names import ModelName

__all__ = ["manifest_layers", "pull_model", "remove_unused_blobs"]

_MAX_MANIFEST_BYTES = 32 << 20


def manifest_layers(manifest: Manifest) -> list[Layer]:
    """The blobs a pull or push moves: every layer, then the config (if there is one)."""
    return [*manifest.layers, *([manifest.config] if manifest.config.digest else [])]


def _previous_digests(store: ModelStore, name: ModelName) -> set[str]:
    """Blobs of the version of ``name`` being replaced (none if absent or unreadable)."""
    try:
        return set(store.read_manifest(name).blob_digests())
    except OllamapyError:
        return set()


def remove_unused_blobs(store: ModelStore, digests: set[str]) -> None:
    """Delete those of ``digests`` that no manifest in the store references any more."""
    in_use = {digest for model in store.list_models() for digest in model.manifest.blob_digests()}
    for digest in digests - in_use:
        with suppress(OSError, InvalidDigest):
            store.blob_path(digest).unlink()


async def _fetch_manifest(client: RegistryClient, store: ModelStore, tag: str) -> tuple[bytes, Manifest]:
    response = await client.request("GET", client.url("manifests", tag), headers={"Accept": MEDIA_TYPE_MANIFEST})
    async with response:
        if (response.content_length or 0) > _MAX_MANIFEST_BYTES:
            raise RegistryError("manifest too large")
        try:
            raw = await response.read()
        except aiohttp.ClientError as exc:
            raise RegistryError(str(exc) or type(exc).__name__) from exc
    manifest = Manifest.from_json(raw)
    for layer in manifest_layers(manifest):
        store.blob_path(layer.digest)  # InvalidDigest: never let a registry name a path
    return raw, manifest


async def pull_model(
    manager: TransferManager, store: ModelStore, name: ModelName, *, insecure: bool = False, key_dir: Path | None = None
) -> AsyncGenerator[dict[str, Any], None]:
    """Pull ``name`` (already respelled as the store spells it), yielding progress events.

    Errors carry Ollama's texts (``insecure protocol http``, ``pull model manifest: file
    does not exist``, ``digest mismatch, file must be downloaded again: want …, got …``).
    """
    previous = await asyncio.to_thread(_previous_digests, store, name)
    if name.scheme == "http" and not insecure:
        raise RegistryError("insecure protocol http")
    yield progress_event("pulling manifest")
    client = manager.client(name, insecure=insecure, key_dir=key_dir or envconfig.home_dir())
    try:
        raw, manifest = await _fetch_manifest(client, store, name.tag)
    except OllamapyError as exc:
        raise RegistryError(f"pull model manifest: {exc}") from exc
    for layer in manifest_layers(manifest):
        async with aclosing(manager.downloads.fetch(store, client, layer)) as events:
            async for event in events:
                yield event
    yield progress_event("verifying sha256 digest")
    yield progress_event("writing manifest")
    await asyncio.to_thread(store.write_manifest, name, raw)
    unused = previous - set(manifest.blob_digests())
    if unused and not envconfig.noprune():
        yield progress_event("removing unused layers")
        await asyncio.to_thread(remove_unused_blobs, store, unused)
    yield progress_event("success")
