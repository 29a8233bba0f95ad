"""The on-disk model store, laid out exactly as Ollama lays it out.

::

    <root>/manifests/<host>/<namespace>/<model>/<tag>   Docker v2 manifest (JSON)
    <root>/blobs/sha256-<hex>                           content-addressed layers

so ollamapy can serve an existing Ollama store and Ollama can read what ollamapy writes.
Directories are 0755, files 0644. Every write goes to a temporary file in the target's own
directory, is fsynced and then renamed into place, so a crash leaves either the old file or
the new one, never half of one; a blob is only ever renamed to the digest of its own bytes.

Paths are built only from valid :class:`~ollamapy.store.names.ModelName` parts and from digests
that passed :meth:`ModelStore.blob_path`'s check, so nothing outside ``root`` is touched.
Temporary files start with ``.tmp-`` (never a valid name or digest); listing skips them
and the startup prune removes stale ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ollamapy.errors import BlobNotFound, InvalidDigest, InvalidModelName, InvalidRequest, ModelNotFound, OllamapyError
from ollamapy.golang import marshal
from ollamapy.store.names import ModelName

__all__ = [
    "MEDIA_TYPE_ADAPTER",
    "MEDIA_TYPE_CONFIG",
    "MEDIA_TYPE_DRAFT",
    "MEDIA_TYPE_EMBED",
    "MEDIA_TYPE_JSON",
    "MEDIA_TYPE_LICENSE",
    "MEDIA_TYPE_MANIFEST",
    "MEDIA_TYPE_MESSAGES",
    "MEDIA_TYPE_MODEL",
    "MEDIA_TYPE_PARAMS",
    "MEDIA_TYPE_PROJECTOR",
    "MEDIA_TYPE_PROMPT",
    "MEDIA_TYPE_SYSTEM",
    "MEDIA_TYPE_TEMPLATE",
    "MEDIA_TYPE_TENSOR",
    "BlobWriter",
    "Layer",
    "Manifest",
    "ModelConfig",
    "ModelStore",
    "StoredModel",
    "encode_json",
    "release_page_cache",
]

log = logging.getLogger(__name__)

MEDIA_TYPE_MODEL = "application/vnd.ollama.image.model"
MEDIA_TYPE_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_TYPE_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TYPE_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_TYPE_PROMPT = "application/vnd.ollama.image.prompt"
"""Legacy name of the template layer; still found in old stores, never written."""
MEDIA_TYPE_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_TYPE_PARAMS = "application/vnd.ollama.image.params"
MEDIA_TYPE_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_TYPE_LICENSE = "application/vnd.ollama.image.license"
MEDIA_TYPE_DRAFT = "application/vnd.ollama.image.draft"
MEDIA_TYPE_EMBED = "application/vnd.ollama.image.embed"
"""Deprecated; present in old manifests and ignored."""
MEDIA_TYPE_TENSOR = "application/vnd.ollama.image.tensor"
MEDIA_TYPE_JSON = "application/vnd.ollama.image.json"
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
_TMP_PREFIX = ".tmp-"
_PARTIAL_MARK = "-partial"
_PARTIAL_MAX_AGE = 24 * 3600.0
_CHUNK = 1 << 20

def encode_json(obj: Any) -> bytes:
    """Encode as Go's ``json.NewEncoder(w).Encode`` does: compact, HTML-escaped, newline-ended.

    Manifests and config blobs are content-addressed, so matching Ollama's bytes means
    the same model gets the same digest whichever server wrote it.
    """
    return (marshal(obj, sort_keys=False) + "\n").encode()


def _digest_hex(digest: str) -> str:
    """The lower-case hex of a ``sha256:<hex>``/``sha256-<hex>`` digest, or ``InvalidDigest``."""
    match = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidDigest("invalid digest format")
    return match.group(1).lower()


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some filesystems refuse)."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def release_page_cache(fd: int) -> None:
    """Drop a fully written, fsynced blob's pages from the page cache.

    The pages a write leaves cached are as small as the writes were (4 KiB for a pull's
    parts), and a runner that maps the blob gets exactly those pages: 4 KiB page-table
    entries over weights that are read in full for every token, so every token pays the
    TLB misses (and on a kernel that samples page accesses, stalls). Read back by
    readahead, the file comes in large folios that the kernel maps with 2 MiB entries: on
    a freshly imported Gemma 3 270M, decoding ran 5 % faster. Costs one read of the file
    at its first load, as after any reboot. Best effort: not every system can drop pages
    (tmpfs keeps them)."""
    with suppress(OSError, AttributeError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary sibling: fsync, chmod 0644, rename."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _require(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """Type-check one decoded JSON value, failing as a corrupt manifest would in Go."""
    if not isinstance(value, kind) or isinstance(value, bool):
        raise OllamapyError(f"invalid manifest: {what} has the wrong type")
    return value


@dataclass(frozen=True)
class Layer:
    """One manifest entry: a blob's media type, ``sha256:<hex>`` digest and size.

    ``from_`` names the model a layer was inherited from (lets push mount it across
    repositories); ``name`` is the tensor name of safetensors layers.
    """

    media_type: str
    digest: str
    size: int
    from_: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Ollama's key order; ``from``/``name`` only when set (Go ``omitempty``)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Layer:
        """Decode one layer object; absent fields take Go's zero values, extra keys are ignored."""
        data = _require(data, dict, "layer")
        return cls(
            media_type=_require(data.get("mediaType", ""), str, "mediaType"),
            digest=_require(data.get("digest", ""), str, "digest"),
            size=_require(data.get("size", 0), int, "size"),
            from_=_require(data.get("from"), str, "from") if data.get("from") is not None else None,
            name=_require(data.get("name"), str, "name") if data.get("name") is not None else None,
        )


@dataclass(frozen=True)
class Manifest:
    """A Docker v2 schema 2 manifest: the config blob plus the ordered layers."""

    config: Layer
    layers: list[Layer]
    schema_version: int = 2
    media_type: str = MEDIA_TYPE_MANIFEST

    @property
    def size(self) -> int:
        """Bytes on disk for this model: every layer plus the config blob."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def to_json(self) -> bytes:
        """The bytes Ollama writes for the same manifest (so the digest matches)."""
        return encode_json(
            {
                "schemaVersion": self.schema_version,
                "mediaType": self.media_type,
                "config": self.config.to_dict(),
                "layers": [layer.to_dict() for layer in self.layers],
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Decode manifest bytes; unknown fields are tolerated, malformed ones raise ``OllamapyError``."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OllamapyError(f"invalid manifest: {exc}") from None
        obj = _require(obj, dict, "manifest")
        layers = _require(obj.get("layers") or [], list, "layers")
        return cls(
            config=Layer.from_dict(obj.get("config") or {}),
            layers=[Layer.from_dict(layer) for layer in layers],
            schema_version=_require(obj.get("schemaVersion", 0), int, "schemaVersion"),
            media_type=_require(obj.get("mediaType", ""), str, "mediaType"),
        )

    def blob_digests(self) -> list[str]:
        """Digests of the config and every layer, in manifest order."""
        return [self.config.digest, *(layer.digest for layer in self.layers)]


# Config keys Ollama's Go struct tags ``omitempty``: written only when non-empty.
_CONFIG_OMITEMPTY = frozenset(
    {"renderer", "parser", "requires", "remote_host", "remote_model", "capabilities", "context_length", "embedding_length", "base_name"}
)


@dataclass
class ModelConfig:
    """The config blob (``application/vnd.docker.container.image.v1+json``).

    ``model_type`` is the parameter count Ollama shows (``8.0B``), ``file_type`` the
    quantization (``Q4_K_M``). ``rootfs`` (written by Ollama until Aug 2026) and any other
    unknown key are ignored on read and never written.
    """

    model_format: str = ""
    model_family: str = ""
    model_families: list[str] | None = None
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: list[str] = field(default_factory=list)
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    architecture: str = "amd64"
    os: str = "linux"

    def to_dict(self) -> dict[str, Any]:
        """Fields in Ollama's order, empty optional ones left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _CONFIG_OMITEMPTY and not value:
                continue
            out[f.name] = value
        return out

    def to_json(self) -> bytes:
        return encode_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Take the known fields whose JSON type fits; ignore everything else."""
        config = cls()
        for key, default in vars(cls()).items():
            value = data.get(key)
            if key == "model_families":
                if isinstance(value, list) and all(isinstance(x, str) for x in value):
                    config.model_families = value
            elif isinstance(value, list) and isinstance(default, list):
                setattr(config, key, [x for x in value if isinstance(x, str)])
            elif isinstance(value, type(default)) and not isinstance(value, bool):
                setattr(config, key, value)
        return config


@dataclass(frozen=True)
class StoredModel:
    """One entry of :meth:`ModelStore.list_models` (what ``/api/tags`` reports)."""

    name: ModelName
    manifest: Manifest
    digest: str
    """sha256 hex of the manifest file's bytes."""
    modified_at: datetime
    size: int


class BlobWriter:
    """Streams one blob into the store: temp file, hash as it goes, verify, rename.

    Use as a context manager: leaving the block without :meth:`commit` (or through an
    exception) removes the temporary file, so no partial blob is ever left behind.
    """

    def __init__(self, blobs_dir: Path, expected_digest: str | None) -> None:
        self._expected = expected_digest
        self._expected_hex = _digest_hex(expected_digest) if expected_digest is not None else None
        self._blobs_dir = blobs_dir
        blobs_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=blobs_dir)
        self._tmp: Path | None = Path(tmp)  # None once renamed into place or removed
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._digest: str | None = None
        self.size = 0

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of what was written; available after a successful :meth:`commit`."""
        if self._digest is None:
            raise RuntimeError("blob writer has not been committed")
        return self._digest

    def _open_tmp(self) -> Path:
        if self._tmp is None or self._file.closed:
            raise RuntimeError("blob writer is closed")
        return self._tmp

    def write(self, chunk: bytes) -> None:
        self._open_tmp()
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self) -> bool:
        """Verify and move into place; True if the blob is new, False if it already existed.

        A digest other than the expected one raises ``InvalidRequest('digest mismatch,
        expected "…", got "sha256:…"')`` (the expected digest as the caller gave it) and
        leaves no file behind.
        """
        tmp = self._open_tmp()
        self._file.flush()
        os.fsync(self._file.fileno())
        release_page_cache(self._file.fileno())
        self._file.close()
        got = self._hash.hexdigest()
        if self._expected_hex is not None and got != self._expected_hex:
            self.abort()
            raise InvalidRequest(f'digest mismatch, expected "{self._expected}", got "sha256:{got}"')
        target = self._blobs_dir / f"sha256-{got}"
        created = not target.exists()
        if created:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            _fsync_dir(self._blobs_dir)
        else:
            tmp.unlink(missing_ok=True)
        self._tmp = None
        self._digest = f"sha256:{got}"
        return created

    def abort(self) -> None:
        """Drop the temporary file; safe to call more than once, after a failed or a done commit."""
        self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()


class ModelStore:
    """Manifests and blobs under one root (``$OLLAMA_MODELS``); see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifests_dir = self.root / "manifests"
        self.blobs_dir = self.root / "blobs"

    # -- blobs ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """The file for a ``sha256:<hex>`` or ``sha256-<hex>`` digest; the one place digests are checked.

        Anything else raises ``InvalidDigest("invalid digest format")`` (400).
        """
        return self.blobs_dir / f"sha256-{_digest_hex(digest)}"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob_writer(self, expected_digest: str | None = None) -> BlobWriter:
        """A writer for an upload of ``expected_digest`` (checked first), or for unknown content if None."""
        return BlobWriter(self.blobs_dir, expected_digest)

    def add_blob_bytes(self, data: bytes, media_type: str) -> Layer:
        """Store ``data`` as a blob (a no-op if it is already there) and describe it as a layer."""
        with self.open_blob_writer() as writer:
            writer.write(data)
            writer.commit()
        return Layer(media_type, writer.digest, writer.size)

    def add_blob_file(self, path: Path, media_type: str) -> Layer:
        """Copy a file into the store in chunks, hashing as it streams (never all in memory)."""
        with open(path, "rb") as src, self.open_blob_writer() as writer:
            while chunk := src.read(_CHUNK):
                writer.write(chunk)
            writer.commit()
        return Layer(media_type, writer.digest, writer.size)

    def read_blob_text(self, digest: str) -> str:
        """A text layer (template, system, license, params, messages) as a string."""
        path = self.blob_path(digest)
        try:
            return path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            raise BlobNotFound(f'blob "{digest}" not found') from None

    def read_config(self, manifest: Manifest) -> dict[str, Any]:
        """The decoded config blob of a manifest (``{}`` when it has none)."""
        if not manifest.config.digest:
            return {}
        try:
            config = json.loads(self.read_blob_text(manifest.config.digest))
        except ValueError as exc:
            raise OllamapyError(f"invalid model config: {exc}") from None
        if not isinstance(config, dict):
            raise OllamapyError("invalid model config: not a JSON object")
        return config

    # -- manifests -----------------------------------------------------------------------

    def manifest_path(self, name: ModelName) -> Path:
        """``manifests/<host>/<namespace>/<model>/<tag>`` for a valid name, else ``InvalidModelName``."""
        if not name.is_valid():
            raise InvalidModelName("invalid model name")
        return self.manifests_dir.joinpath(*name.manifest_parts())

    def _existing_manifest_file(self, name: ModelName) -> Path:
        """The manifest file of ``name`` exactly as spelled, or ``ModelNotFound``."""
        path = self.manifest_path(name) if name.is_valid() else None
        if path is None or not path.is_file():
            raise ModelNotFound(f"model '{name.display_shortest()}' not found")
        return path

    def has_manifest(self, name: ModelName) -> bool:
        return name.is_valid() and self.manifest_path(name).is_file()

    def resolve_existing(self, name: ModelName) -> ModelName:
        """``name`` respelled, level by level, as the directories already on disk spell it.

        Like Ollama's ``getExistingName``: ``Llama3`` reuses ``llama3``'s manifest path, so
        create/pull/copy with another casing never make a second copy on a case-sensitive
        filesystem. Levels below the first one with no match keep the given spelling.
        """
        if not name.is_valid():
            return name
        parts = list(name.manifest_parts())
        current = self.manifests_dir
        for i, part in enumerate(parts):
            want_dir = i < len(parts) - 1
            match = part if self._is_entry(current / part, want_dir) else self._find_fold(current, part, want_dir)
            if match is None:
                break
            parts[i] = match
            current = current / match
        host, namespace, model, tag = parts
        return ModelName(host, namespace, model, tag, scheme=name.scheme)

    @staticmethod
    def _is_entry(path: Path, want_dir: bool) -> bool:
        return path.is_dir() if want_dir else path.is_file()

    def _find_fold(self, directory: Path, part: str, want_dir: bool) -> str | None:
        """The first entry (sorted) of ``directory`` equal to ``part`` ignoring ASCII case."""
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return None
        folded = part.lower()
        for entry in names:
            if entry.isascii() and entry.lower() == folded and self._is_entry(directory / entry, want_dir):
                return entry
        return None

    def write_manifest(self, name: ModelName, manifest: Manifest | bytes) -> ModelName:
        """Write (atomically) the manifest of ``name`` under its existing on-disk spelling.

        ``bytes`` are stored verbatim (a pulled manifest keeps the registry's digest) but
        must decode as a manifest. Returns the name actually written.
        """
        if not name.is_valid():
            raise InvalidModelName("invalid model name")
        if isinstance(manifest, bytes):
            Manifest.from_json(manifest)
            data = manifest
        else:
            data = manifest.to_json()
        resolved = self.resolve_existing(name)
        _atomic_write(self.manifest_path(resolved), data)
        return resolved

    def read_manifest(self, name: ModelName) -> Manifest:
        """The manifest of ``name`` as spelled (resolve first for case-insensitive lookup).

        ``ModelNotFound("model '<short name>' not found")``; handlers re-raise with the
        text the user typed.
        """
        return Manifest.from_json(self._existing_manifest_file(name).read_bytes())

    def manifest_digest(self, name: ModelName) -> str:
        """sha256 hex of the manifest file's bytes: the ``digest`` Ollama lists."""
        return hashlib.sha256(self._existing_manifest_file(name).read_bytes()).hexdigest()

    def manifest_mtime(self, name: ModelName) -> datetime:
        """When the manifest was last written (``modified_at``), as a local aware datetime."""
        return _mtime(self._existing_manifest_file(name).stat())

    def _manifest_files(self) -> Iterator[tuple[tuple[str, str, str, str], Path]]:
        """Every regular file four levels down (``host/ns/model/tag``), skipping dotfiles."""

        def entries(directory: Path, want_dir: bool) -> list[str]:
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                return []
            return [n for n in names if not n.startswith(".") and self._is_entry(directory / n, want_dir)]

        for host in entries(self.manifests_dir, True):
            for namespace in entries(self.manifests_dir / host, True):
                for model in entries(self.manifests_dir / host / namespace, True):
                    model_dir = self.manifests_dir / host / namespace / model
                    for tag in entries(model_dir, False):
                        yield (host, namespace, model, tag), model_dir / tag

    def list_models(self) -> list[StoredModel]:
        """Every model in the store, newest first; unparsable manifests are logged and skipped."""
        models: list[tuple[int, StoredModel]] = []
        for parts, path in self._manifest_files():
            name = ModelName(*parts)
            if not name.is_valid():
                log.warning("bad manifest name: %s", path.relative_to(self.manifests_dir))
                continue
            try:
                with open(path, "rb") as f:
                    stat = os.fstat(f.fileno())
                    data = f.read()
                manifest = Manifest.from_json(data)
            except (OSError, OllamapyError) as exc:
                log.warning("bad manifest %s: %s", name, exc)
                continue
            item = StoredModel(
                name=name,
                manifest=manifest,
                digest=hashlib.sha256(data).hexdigest(),
                modified_at=_mtime(stat),
                size=manifest.size,
            )
            models.append((stat.st_mtime_ns, item))
        models.sort(key=lambda pair: pair[0], reverse=True)  # stable: ties keep name order
        return [item for _, item in models]

    def copy(self, src: ModelName, dst: ModelName) -> ModelName:
        """Give ``dst`` a byte copy of ``src``'s manifest (same blobs, same digest).

        A missing source raises ``ModelNotFound('model "<src>" not found')`` (Ollama quotes
        it with ``%q`` here). Returns the destination name as written.
        """
        try:
            data = self._existing_manifest_file(src).read_bytes()
        except ModelNotFound:
            raise ModelNotFound(f'model "{src.display_shortest()}" not found') from None
        return self.write_manifest(dst, data)

    def delete(self, name: ModelName) -> None:
        """Remove a model: its manifest, then empty parent directories, then orphaned blobs.

        A blob is deleted only if no remaining manifest references it. A corrupt manifest
        is still removed (that is how users clear one); it just frees no blobs.
        """
        path = self._existing_manifest_file(name)
        try:
            digests = Manifest.from_json(path.read_bytes()).blob_digests()
        except OllamapyError as exc:
            log.warning("deleting corrupt manifest %s: %s", name, exc)
            digests = []
        path.unlink()
        self._prune_parents(path.parent)
        in_use = self._referenced_blobs(strict=False)
        for digest in digests:
            try:
                blob = self.blob_path(digest)
            except InvalidDigest:
                log.info("couldn't get file path for '%s'", digest)
                continue
            if blob.name not in in_use:
                blob.unlink(missing_ok=True)

    def _prune_parents(self, directory: Path) -> None:
        """Remove ``directory`` and its parents while empty, stopping below ``manifests/``."""
        while directory != self.manifests_dir and self.manifests_dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def _referenced_blobs(self, strict: bool) -> set[str]:
        """Blob file names (``sha256-<hex>``) referenced by any manifest file at any depth.

        Every non-dot file under ``manifests/`` counts, not just four-level ones, so blobs
        of manifests written by a newer Ollama layout are never mistaken for orphans.
        With ``strict`` an unreadable manifest raises instead of being skipped.
        """
        refs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.manifests_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith("."):
                    continue
                path = Path(dirpath, filename)
                try:
                    digests = Manifest.from_json(path.read_bytes()).blob_digests()
                except (OSError, OllamapyError) as exc:
                    if strict:
                        raise OllamapyError(f"{path.relative_to(self.manifests_dir)}: {exc}") from None
                    log.warning("bad manifest %s: %s", path, exc)
                    continue
                for digest in digests:
                    with suppress(InvalidDigest):
                        refs.add(self.blob_path(digest).name)
        return refs

    # -- start-up maintenance ------------------------------------------------------------

    def fix_blobs(self) -> None:
        """Rename legacy ``sha256:<hex>`` blob files to ``sha256-<hex>`` (Ollama's fixBlobs).

        Runs at every start, whatever ``OLLAMA_NOPRUNE`` says; :meth:`prune` calls it too.
        """
        try:
            names = os.listdir(self.blobs_dir)
        except OSError:
            return
        for entry in names:
            if entry.startswith("sha256:"):
                os.replace(self.blobs_dir / entry, self.blobs_dir / entry.replace(":", "-", 1))

    def prune(self, min_age_seconds: float = 3600) -> list[str]:
        """Start-up cleanup (the caller skips it under ``OLLAMA_NOPRUNE``); returns removed blob names.

        Removes blobs no manifest references and stray files (leftover temporaries) older
        than ``min_age_seconds``, ``*-partial*`` download files only once older than 24 h,
        and empty directories under ``manifests/``. If any manifest fails to parse it does
        nothing at all, since its blobs cannot be told apart from orphans.
        """
        self.fix_blobs()
        try:
            in_use = self._referenced_blobs(strict=True)
        except OllamapyError as exc:
            log.warning("corrupt manifests detected, skipping prune operation.  Re-pull or delete to clear: %s", exc)
            return []
        try:
            entries = sorted(os.scandir(self.blobs_dir), key=lambda e: e.name)
        except OSError:
            entries = []
        now = time.time()
        removed: list[str] = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                continue
            if _PARTIAL_MARK in entry.name:
                max_age = _PARTIAL_MAX_AGE
            elif _DIGEST_RE.fullmatch(entry.name) and self.blob_path(entry.name).name in in_use:
                continue
            else:
                max_age = min_age_seconds
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age:
                continue
            try:
                os.unlink(entry.path)
            except OSError as exc:
                log.error("couldn't remove blob %s: %s", entry.name, exc)
                continue
            removed.append(entry.name)
        log.info("total blobs: %d", len(entries))
        log.info("total unused blobs removed: %d", len(removed))
        self._prune_empty_dirs()
        return removed

    def _prune_empty_dirs(self) -> None:
        """Remove every empty directory below ``manifests/`` (bottom-up; never ``manifests/`` itself)."""
        for dirpath, _dirnames, _filenames in os.walk(self.manifests_dir, topdown=False):
            if Path(dirpath) != self.manifests_dir:
                with suppress(OSError):
                    os.rmdir(dirpath)


def _mtime(stat: os.stat_result) -> datetime:
    return datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC).astimezone()
