"""Blob uploads to a Docker Registry v2 (Ollama's ``upload.go``).

For each blob: ``HEAD`` says whether the registry already has it; otherwise ``POST
…/blobs/uploads/`` opens a session (with ``?mount=<digest>&from=<ns/model>`` when the layer
came from another model, and ``201`` means the registry mounted it without a byte sent),
each part goes up as a ``PATCH`` with ``Content-Range: <start>-<end>`` to the URL the
previous answer gave (``Docker-Upload-Location`` or ``Location``), and ``PUT
<location>?digest=…&etag=<md5 of part md5s>-<parts>`` commits it. A ``307`` to a PATCH
means "PUT this part to the redirect target instead" (no registry token goes there).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import aiohttp

from ollamapy.errors import OllamapyError
from ollamapy.registry.client import RegistryClient, RegistryError, RegistryNotFound
from ollamapy.registry.transfer import (
    TransferSettings,
    gather_all,
    progress_event,
    watch,
)
from ollamapy.registry.urls import add_query, resolve
from ollamapy.store.model_store import Layer, ModelStore
from ollamapy.store.names import ModelName

__all__ = ["BlobUpload", "upload_blob"]

log = logging.getLogger("ollamapy.registry")

_CHUNK = 1 << 20
_RETRYABLE = (aiohttp.ClientError, TimeoutError, OllamapyError, OSError)
_T = TypeVar("_T")


def _location(response: aiohttp.ClientResponse, base: str) -> str:
    location = response.headers.get("Docker-Upload-Location") or response.headers.get("Location") or ""
    return resolve(base, location) if location else ""


class _PartReader:
    """Streams one part from the blob file, counting progress and its md5; rebuilt per attempt."""

    def __init__(self, upload: BlobUpload, fd: int, offset: int, size: int) -> None:
        self._upload = upload
        self._fd = fd
        self._offset = offset
        self._size = size
        self.sent = 0
        self.md5 = hashlib.md5()

    def rollback(self) -> None:
        """Take this attempt's bytes back out of the progress."""
        self._upload.completed -= self.sent
        self.sent = 0

    def body(self) -> AsyncIterator[bytes]:
        self.rollback()
        self.md5 = hashlib.md5()
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        position, end = self._offset, self._offset + self._size
        while position < end:
            chunk = await asyncio.to_thread(os.pread, self._fd, min(_CHUNK, end - position), position)
            if not chunk:
                raise OSError(f"{self._upload.digest}: blob file is shorter than its layer")
            self.md5.update(chunk)
            self.sent += len(chunk)
            self._upload.completed += len(chunk)
            position += len(chunk)
            yield chunk


class BlobUpload:
    """One blob on its way to the registry."""

    def __init__(self, store: ModelStore, layer: Layer, settings: TransferSettings) -> None:
        self.digest = layer.digest
        self.path = store.blob_path(layer.digest)
        self.from_ = layer.from_
        self.settings = settings
        self.total = layer.size
        self.completed = 0

    def progress(self) -> dict[str, Any]:
        return progress_event(f"pushing {self.digest[7:19]}", self.digest, self.total, self.completed)

    async def run(self, client: RegistryClient) -> None:
        url = client.url("blobs", "uploads") + "/"
        if self.from_:
            source = ModelName.parse(self.from_)
            url = add_query(url, [("mount", self.digest), ("from", f"{source.namespace}/{source.model}")])
        response = await client.request("POST", url)
        status, location = response.status, _location(response, url)
        response.release()
        self.total = (await asyncio.to_thread(os.stat, self.path)).st_size
        if status == 201:  # cross-repository mount: the registry had it already
            self.completed = self.total
            return
        if not location:
            raise RegistryError("registry returned no upload location")
        parts = self.settings.split(self.total)
        log.info("uploading %s in %d part(s)", self.digest[7:19], len(parts))
        md5s: list[bytes] = [b""] * len(parts)
        redirected: list[asyncio.Task[None]] = []
        fd = await asyncio.to_thread(os.open, self.path, os.O_RDONLY)
        try:
            for n, (offset, size) in enumerate(parts):
                location = await self._patch(client, location, fd, n, offset, size, md5s, redirected)
            await gather_all(redirected)
        except BaseException:
            for task in redirected:
                task.cancel()
            await asyncio.gather(*redirected, return_exceptions=True)
            raise
        finally:
            os.close(fd)
        etag = f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(parts)}"
        await self._commit(client, add_query(location, [("digest", self.digest), ("etag", etag)]))

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``attempt()`` up to ``max_retries`` times with doubling pauses."""
        failures = 0
        while True:
            try:
                return await attempt()
            except _RETRYABLE as exc:
                failures += 1
                if failures >= self.settings.max_retries:
                    raise RegistryError(f"max retries exceeded: {exc or type(exc).__name__}") from exc
                pause = self.settings.retry_pause(failures)
                log.info("%s %s attempt %d failed: %s, retrying in %.2fs", self.digest[7:19], what, failures, exc, pause)
                await asyncio.sleep(pause)

    async def _patch(
        self,
        client: RegistryClient,
        url: str,
        fd: int,
        n: int,
        offset: int,
        size: int,
        md5s: list[bytes],
        redirected: list[asyncio.Task[None]],
    ) -> str:
        """PATCH part ``n`` (or hand it to a redirect PUT); return the URL for the next request."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-Redirect-Uploads": "1",
            "Content-Range": f"{offset}-{offset + size - 1}",
        }

        async def attempt() -> str:
            reader = _PartReader(self, fd, offset, size)
            try:
                response = await client.request("PATCH", url, headers=headers, body=reader.body)
            except BaseException:
                reader.rollback()
                raise
            next_url = _location(response, url)
            if response.status == 307:
                reader.rollback()
                target = resolve(url, response.headers.get("Location", ""))
                response.release()
                redirected.append(asyncio.create_task(self._put_redirected(client, target, fd, n, offset, size, md5s)))
                return next_url
            response.release()
            md5s[n] = reader.md5.digest()
            return next_url

        return await self._retrying(f"part {n}", attempt)

    async def _put_redirected(
        self, client: RegistryClient, url: str, fd: int, n: int, offset: int, size: int, md5s: list[bytes]
    ) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}

        async def attempt() -> None:
            reader = _PartReader(self, fd, offset, size)
            try:
                response = await client.send("PUT", url, headers=headers, body=reader.body, auth=False)
                async with response:
                    if response.status >= 400:
                        raise RegistryError(f"http status {response.status}: {await response.text(errors='replace')}")
            except BaseException:
                reader.rollback()
                raise
            md5s[n] = reader.md5.digest()

        await self._retrying(f"part {n}", attempt)

    async def _commit(self, client: RegistryClient, url: str) -> None:
        async def attempt() -> None:
            response = await client.request("PUT", url, headers={"Content-Type": "application/octet-stream", "Content-Length": "0"})
            response.release()

        await self._retrying("complete upload", attempt)


async def upload_blob(
    client: RegistryClient, store: ModelStore, layer: Layer, settings: TransferSettings
) -> AsyncGenerator[dict[str, Any], None]:
    """Progress events (``pushing <digest[7:19]>``) until the registry has ``layer``'s blob."""
    try:
        response = await client.request("HEAD", client.url("blobs", layer.digest))
    except RegistryNotFound:
        pass
    else:
        response.release()
        yield progress_event(f"pushing {layer.digest[7:19]}", layer.digest, layer.size, layer.size)
        return
    upload = BlobUpload(store, layer, settings)
    task = asyncio.create_task(upload.run(client), name=f"upload {layer.digest[7:19]}")
    try:
        async with aclosing(watch(task, upload.progress, settings.progress_interval)) as events:
            async for event in events:
                yield event
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
