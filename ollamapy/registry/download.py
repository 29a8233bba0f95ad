"""Resumable, verified blob downloads that concurrent pulls share (Ollama's ``download.go``).

A blob is fetched in ranged parts written at their offsets into ``<blob>-partial`` (sparse,
sized up front). Each part's progress is persisted as JSON in ``<blob>-partial-<N>``
(``{"N":…,"Offset":…,"Size":…,"Completed":…}``, the same files Ollama writes), so a pull
that is interrupted (client gone, server restarted, connection cut) resumes where it
stopped. Progress only ever counts bytes already written, so a part file can lag behind
the data but never run ahead of it.

A part that receives nothing for ``stall_timeout`` is dropped and asked for again without
counting as a failure; other failures are retried with doubling, jittered pauses. The
blob's direct URL is looked up once: redirects within the registry's host are followed,
the first redirect to another host (a CDN) is used for every part. When every part is
in, the file is hashed: a mismatch deletes it (``digest mismatch, file must be downloaded
again: want …, got …``); a match renames it into the store. Nothing unverified is ever
visible under a digest.

An exclusive ``flock`` on ``<blob>-partial.lock`` keeps a second server instance (or
process) on the same store from writing the same partial file; in one instance,
:class:`Downloads` hands concurrent pulls of a digest the same download, which is
cancelled when the last of them goes away.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from ollamapy.errors import OllamapyError
from ollamapy.registry.client import RegistryClient, RegistryError, RegistryNotFound
from ollamapy.registry.transfer import (
    TransferSettings,
    gather_all,
    jittered,
    progress_event,
    watch,
)
from ollamapy.registry.urls import hostname, resolve
from ollamapy.store.model_store import Layer, ModelStore, encode_json, release_page_cache

__all__ = ["BlobDownload", "DigestMismatch", "Downloads"]

log = logging.getLogger("ollamapy.registry")

T = TypeVar("T")

_FLUSH_BYTES = 1 << 20
_PERSIST_EVERY = 1.0  # seconds between part-file updates while bytes flow
_LOCK_POLL = 0.05
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10


class DigestMismatch(RegistryError):
    """The downloaded bytes do not hash to the digest they were fetched under."""


class _Stalled(Exception):
    """No bytes for ``stall_timeout``: retry the part without counting a failure."""


@dataclass
class _Part:
    n: int
    offset: int
    size: int
    completed: int = 0

    @property
    def start(self) -> int:
        return self.offset + self.completed

    @property
    def stop(self) -> int:
        return self.offset + self.size

    def to_json(self) -> bytes:
        return encode_json({"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed})

    @classmethod
    def from_json(cls, data: bytes) -> _Part:
        obj = json.loads(data)
        values = [obj.get(key) for key in ("N", "Offset", "Size", "Completed")]
        if not all(type(v) is int for v in values):
            raise ValueError("part file fields must be integers")
        return cls(*values)


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


async def _uninterrupted(func: Callable[..., T], *args: Any) -> T:
    """Run blocking ``func`` in a thread; if cancelled meanwhile, let it finish before re-raising.

    A write or hash still running after its caller gave up could outlive the file
    descriptor it uses, or the lock that makes the partial file this task's alone.
    """
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise


class _PartialLock:
    """An exclusive ``flock`` on a lock file that is removed on release.

    A waiter that wins the lock on a file its holder already unlinked sees a different
    inode at the path and tries again, so two holders never overlap.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self._path = path

    @classmethod
    async def acquire(cls, path: Path) -> _PartialLock:
        while (fd := cls._try(path)) is None:
            await asyncio.sleep(_LOCK_POLL)
        return cls(fd, path)

    @staticmethod
    def _try(path: Path) -> int | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)
        return None

    def release(self) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self._path)
        os.close(self._fd)


async def _resolve_direct(client: RegistryClient, blob_url: str) -> str:
    """The URL parts are fetched from: same-host redirects followed, the first other-host one taken.

    Asks for one byte only, so finding the URL never streams the blob.
    """
    url = blob_url
    for _ in range(_MAX_REDIRECTS + 1):
        response = await client.request("GET", url, headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"})
        status, location = response.status, response.headers.get("Location", "")
        response.close()
        if status in _REDIRECT_STATUSES and location:
            target = resolve(url, location)
            if hostname(target) == hostname(blob_url):
                url = target
                continue
            if status in (302, 307):
                return target
        if status in (200, 206):
            return url
        raise RegistryError(f"unexpected status code {status}")
    raise RegistryError(f"maximum redirects exceeded ({_MAX_REDIRECTS}) for directURL")


class BlobDownload:
    """One blob on its way into the store; see the module docstring for the protocol."""

    def __init__(self, store: ModelStore, layer: Layer, settings: TransferSettings) -> None:
        self.digest = layer.digest
        self.path = store.blob_path(layer.digest)
        self.partial = self.path.with_name(f"{self.path.name}-partial")
        self.settings = settings
        self.total = 0
        self.completed = 0
        self.ready = False
        """True once ``total`` is known (parts prepared or the blob found in place)."""
        self._expected_size = layer.size
        self._parts: list[_Part] = []

    def progress(self) -> dict[str, Any] | None:
        if not self.ready:
            return None
        return progress_event(f"pulling {self.digest[7:19]}", self.digest, self.total, self.completed)

    async def run(self, client: RegistryClient) -> None:
        """Download, verify and move into place (or find it done by another instance)."""
        await asyncio.to_thread(self.path.parent.mkdir, mode=0o755, parents=True, exist_ok=True)
        lock = await _PartialLock.acquire(self.path.with_name(f"{self.path.name}-partial.lock"))
        try:
            size = await asyncio.to_thread(_file_size, self.path)
            if size is not None:
                self.total = self.completed = size
                self.ready = True
                return
            await self._prepare(client)
            todo = [part for part in self._parts if part.completed < part.size]
            url, authed = await self._direct_url(client) if todo else ("", False)
            fd = await asyncio.to_thread(self._open_partial)
            try:
                limit = asyncio.Semaphore(max(1, self.settings.part_count))
                await gather_all(self._run_part(client, url, authed, part, fd, limit) for part in todo)
                await _uninterrupted(self._finish, fd)
            finally:
                os.close(fd)
        finally:
            lock.release()

    # -- preparing -----------------------------------------------------------------------

    async def _prepare(self, client: RegistryClient) -> None:
        parts = await asyncio.to_thread(self._load_parts)
        if parts is None:
            response = await client.request("HEAD", client.url("blobs", self.digest))
            length = response.content_length
            response.release()
            total = length if length is not None else self._expected_size
            parts = [_Part(n, offset, size) for n, (offset, size) in enumerate(self.settings.split(total))]
            await asyncio.to_thread(self._start_fresh, parts, total)
        self._parts = parts
        self.total = sum(part.size for part in parts)
        self.completed = sum(part.completed for part in parts)
        self.ready = True
        if parts:
            log.info("downloading %s in %d %d-byte part(s)", self.digest[7:19], len(parts), parts[0].size)

    def _part_files(self) -> dict[int, Path]:
        prefix = f"{self.partial.name}-"
        found: dict[int, Path] = {}
        with suppress(OSError):
            for entry in os.scandir(self.path.parent):
                suffix = entry.name[len(prefix):]
                if entry.name.startswith(prefix) and suffix.isdigit():
                    found[int(suffix)] = Path(entry.path)
        return found

    def _load_parts(self) -> list[_Part] | None:
        """The parts of an interrupted download, or None (after clearing leftovers) if there is none to resume."""
        files = self._part_files()
        if not files:
            return None
        try:
            parts = [_Part.from_json(path.read_bytes()) for _, path in sorted(files.items())]
            offset = 0
            for n, part in enumerate(parts):
                if part.n != n or part.offset != offset or part.size <= 0 or not 0 <= part.completed <= part.size:
                    raise ValueError(f"part {n} does not line up")
                offset += part.size
            if self.partial.stat().st_size != offset:
                raise ValueError("partial file has the wrong size")
        except (OSError, ValueError) as exc:
            log.warning("discarding the partial download of %s: %s", self.digest[7:19], exc)
            self._discard()
            return None
        return parts

    def _start_fresh(self, parts: list[_Part], total: int) -> None:
        self._discard()
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, total)
        finally:
            os.close(fd)
        for part in parts:
            self._write_part(part)

    def _open_partial(self) -> int:
        return os.open(self.partial, os.O_RDWR)

    def _write_part(self, part: _Part) -> None:
        Path(f"{self.partial}-{part.n}").write_bytes(part.to_json())

    def _discard(self) -> None:
        for path in [self.partial, *self._part_files().values()]:
            with suppress(FileNotFoundError):
                path.unlink()

    async def _direct_url(self, client: RegistryClient) -> tuple[str, bool]:
        """The parts' URL, and whether it is on the registry's host (and so gets the bearer token)."""
        blob_url = client.url("blobs", self.digest)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.redirect_timeout
        attempt = 0
        while True:
            try:
                url = await _resolve_direct(client, blob_url)
                return url, hostname(url) == hostname(blob_url)
            except RegistryError as exc:
                attempt += 1
                pause = jittered(min(attempt * attempt * 0.01, 10.0))
                if isinstance(exc, RegistryNotFound) or loop.time() + pause > deadline:
                    raise
                log.warning("failed to get direct URL; backing off and retrying: %s", exc)
                await asyncio.sleep(pause)

    # -- parts ---------------------------------------------------------------------------

    async def _run_part(
        self, client: RegistryClient, url: str, authed: bool, part: _Part, fd: int, limit: asyncio.Semaphore
    ) -> None:
        async with limit:
            failures = 0
            while part.completed < part.size:
                try:
                    await self._fetch_part(client, url, authed, part, fd)
                except _Stalled:
                    log.info(
                        "%s part %d stalled; retrying. If this persists, press ctrl-c to exit, "
                        "then 'ollama pull' to find a faster connection.",
                        self.digest[7:19],
                        part.n,
                    )
                except (aiohttp.ClientError, TimeoutError, OllamapyError, OSError) as exc:
                    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                        raise
                    failures += 1
                    if failures >= self.settings.max_retries:
                        raise RegistryError(f"max retries exceeded: {exc or type(exc).__name__}") from exc
                    pause = self.settings.retry_pause(failures)
                    log.info("%s part %d attempt %d failed: %s, retrying in %.2fs", self.digest[7:19], part.n, failures, exc, pause)
                    await asyncio.sleep(pause)
                finally:
                    self._write_part(part)  # tiny and synchronous: must also run while being cancelled

    async def _fetch_part(self, client: RegistryClient, url: str, authed: bool, part: _Part, fd: int) -> None:
        """Fetch the rest of ``part``; every byte written is counted, even when this fails."""
        headers = {"Range": f"bytes={part.start}-{part.stop - 1}", "Accept-Encoding": "identity"}
        stall = self.settings.stall_timeout
        try:
            async with asyncio.timeout(stall):
                if authed:
                    response = await client.request("GET", url, headers=headers)
                else:  # a CDN URL is pre-signed: no registry token goes there
                    response = await client.send("GET", url, headers=headers, auth=False)
        except TimeoutError:
            raise _Stalled() from None
        async with response:
            if response.status != 206 and not (response.status == 200 and part.start == 0):
                raise RegistryError(f"unexpected status code {response.status}")
            pending = bytearray()
            persisted_at = asyncio.get_running_loop().time()
            try:
                while part.completed + len(pending) < part.size:
                    try:
                        async with asyncio.timeout(stall):
                            chunk = await response.content.readany()
                    except TimeoutError:
                        raise _Stalled() from None
                    if not chunk:
                        raise RegistryError("unexpected EOF")
                    pending += chunk[: part.size - part.completed - len(pending)]
                    if len(pending) >= _FLUSH_BYTES:
                        data, start = bytes(pending), part.start
                        pending.clear()
                        # If cancelled meanwhile, the bytes land but go uncounted (fetched again later).
                        await _uninterrupted(_pwrite_all, fd, data, start)
                        self._count(part, len(data))
                        now = asyncio.get_running_loop().time()
                        if now - persisted_at >= _PERSIST_EVERY:
                            self._write_part(part)
                            persisted_at = now
            finally:
                if pending:
                    _pwrite_all(fd, bytes(pending), part.start)
                    self._count(part, len(pending))

    def _count(self, part: _Part, n: int) -> None:
        part.completed += n
        self.completed += n

    # -- finishing -----------------------------------------------------------------------

    def _finish(self, fd: int) -> None:
        """Hash the whole partial file; rename it into the store only if it is what was asked for."""
        os.fsync(fd)
        sha = hashlib.sha256()
        offset = 0
        while chunk := os.pread(fd, _FLUSH_BYTES, offset):
            sha.update(chunk)
            offset += len(chunk)
        release_page_cache(fd)
        got = f"sha256:{sha.hexdigest()}"
        if got != self.digest.lower().replace("-", ":", 1):
            self._discard()
            raise DigestMismatch(f"digest mismatch, file must be downloaded again: want {self.digest}, got {got}")
        os.fchmod(fd, 0o644)
        os.replace(self.partial, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._discard()


class Downloads:
    """The downloads in flight, by digest: a second pull of a blob joins the first one's download.

    The download runs as its own task; each pull watches it. When the last watcher goes
    away (its client disconnected) the download is cancelled, leaving its part files for
    the next pull to resume.
    """

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings
        self._active: dict[str, _Shared] = {}

    async def fetch(self, store: ModelStore, client: RegistryClient, layer: Layer) -> AsyncGenerator[dict[str, Any], None]:
        """Progress events (``pulling <digest[7:19]>``) until ``layer``'s blob is in the store."""
        size = await asyncio.to_thread(_file_size, store.blob_path(layer.digest))
        if size is not None:
            yield progress_event(f"pulling {layer.digest[7:19]}", layer.digest, size, size)
            return
        shared = self._active.get(layer.digest)
        if shared is None or shared.task.done() or shared.task.cancelling():
            # A download being cancelled (its last watcher left) is not joined: a new one
            # waits for its lock and resumes from the part files it leaves.
            download = BlobDownload(store, layer, self.settings)
            task = asyncio.create_task(download.run(client), name=f"download {layer.digest[7:19]}")
            shared = self._active[layer.digest] = _Shared(download, task)
            task.add_done_callback(functools.partial(self._forget, layer.digest, shared))
        shared.waiters += 1
        try:
            async with aclosing(watch(shared.task, shared.download.progress, self.settings.progress_interval)) as events:
                async for event in events:
                    yield event
        finally:
            shared.waiters -= 1
            if shared.waiters == 0:
                shared.task.cancel()

    def _forget(self, digest: str, shared: _Shared, _task: asyncio.Task[None]) -> None:
        if self._active.get(digest) is shared:
            del self._active[digest]

    async def close(self) -> None:
        """Cancel every download (their part files stay for a later resume)."""
        tasks = [shared.task for shared in self._active.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class _Shared:
    """A running download and how many pulls are watching it."""

    download: BlobDownload
    task: asyncio.Task[None]
    waiters: int = 0
