"""The model store against a store laid out by hand exactly as Ollama lays one out:
listing, reading, copying, deleting, pruning, blob uploads and case-insensitive names."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
from datetime import datetime
from pathlib import Path

import pytest

from ollamapy.errors import BlobNotFound, InvalidDigest, InvalidModelName, InvalidRequest, ModelNotFound, OllamapyError
from ollamapy.store.model_store import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_TEMPLATE,
    Layer,
    Manifest,
    ModelConfig,
    ModelStore,
    encode_json,
)
from ollamapy.store.names import ModelName
from ollamapy.testing.page_cache import cached_pages, page_cache_can_drop

HOUR = 3600.0


# -- a store written by hand, byte for byte as Ollama writes it ---------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob(root: Path, data: bytes) -> str:
    """Write a blob the way Ollama names it; returns its ``sha256:<hex>`` digest."""
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{_sha(data)}").write_bytes(data)
    return f"sha256:{_sha(data)}"


def _layer_json(media_type: str, data: bytes, digest: str, extra: str = "") -> str:
    return f'{{"mediaType":"{media_type}","digest":"{digest}","size":{len(data)}{extra}}}'


def _ollama_manifest(root: Path, parts: tuple[str, str, str, str], layers: list[tuple[str, bytes]], mtime: float, config: bytes | None = None) -> bytes:
    """Blobs plus a manifest file in Go's ``json.Encoder`` format (compact, trailing newline)."""
    config = config or (
        b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"8.0B",'
        b'"file_type":"Q4_K_M","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}\n'
    )
    config_digest = _blob(root, config)
    layer_texts = [_layer_json(media, data, _blob(root, data)) for media, data in layers]
    text = (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        f'"config":{_layer_json(MEDIA_TYPE_CONFIG, config, config_digest)},"layers":[{",".join(layer_texts)}]}}\n'
    )
    path = root.joinpath("manifests", *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    os.utime(path, (mtime, mtime))
    return text.encode()


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


WEIGHTS = b"GGUF" + bytes(range(256)) * 4
SHARED_TEMPLATE = b"{{ .Prompt }}"
PARAMS = b'{"stop":["<|end|>"],"temperature":0.7}'


@pytest.fixture
def store(models_dir: Path) -> ModelStore:
    now = time.time()
    _ollama_manifest(
        models_dir,
        ("registry.ollama.ai", "library", "llama3.2", "latest"),
        [(MEDIA_TYPE_MODEL, WEIGHTS), (MEDIA_TYPE_TEMPLATE, SHARED_TEMPLATE), (MEDIA_TYPE_PARAMS, PARAMS)],
        mtime=now - 3 * HOUR,
    )
    _ollama_manifest(
        models_dir,
        ("registry.ollama.ai", "me", "tiny", "v1"),
        [(MEDIA_TYPE_MODEL, b"GGUF other weights"), (MEDIA_TYPE_TEMPLATE, SHARED_TEMPLATE)],
        mtime=now - 1 * HOUR,
    )
    _ollama_manifest(
        models_dir,
        ("example.com:5000", "team", "coder", "q8"),
        [(MEDIA_TYPE_MODEL, b"GGUF coder")],
        mtime=now - 2 * HOUR,
    )
    return ModelStore(models_dir)


def _name(text: str) -> ModelName:
    return ModelName.parse(text)


def _blob_files(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs").iterdir()}


# -- listing and reading -------------------------------------------------------------------


def test_lists_an_ollama_store_newest_first(store: ModelStore, models_dir: Path) -> None:
    models = store.list_models()
    assert [m.name.display_shortest() for m in models] == ["me/tiny:v1", "example.com:5000/team/coder:q8", "llama3.2:latest"]
    llama = models[2]
    manifest_file = models_dir / "manifests/registry.ollama.ai/library/llama3.2/latest"
    assert llama.digest == _sha(manifest_file.read_bytes())
    config_size = len((models_dir / "blobs" / llama.manifest.config.digest.replace(":", "-")).read_bytes())
    assert llama.size == len(WEIGHTS) + len(SHARED_TEMPLATE) + len(PARAMS) + config_size
    assert llama.modified_at.tzinfo is not None
    assert llama.modified_at.timestamp() == pytest.approx(manifest_file.stat().st_mtime)


def test_reads_manifest_config_and_text_layers(store: ModelStore) -> None:
    name = _name("llama3.2")
    manifest = store.read_manifest(name)
    assert [layer.media_type for layer in manifest.layers] == [MEDIA_TYPE_MODEL, MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PARAMS]
    assert store.blob_path(manifest.layers[0].digest).read_bytes() == WEIGHTS
    assert store.read_blob_text(manifest.layers[1].digest) == SHARED_TEMPLATE.decode()
    config = store.read_config(manifest)
    assert (config["model_family"], config["file_type"]) == ("llama", "Q4_K_M")
    typed = ModelConfig.from_dict(config)  # rootfs tolerated and ignored
    assert typed.model_families == ["llama"] and typed.model_type == "8.0B"
    assert "rootfs" not in typed.to_dict()
    assert store.has_manifest(name)
    assert isinstance(store.manifest_mtime(name), datetime)
    assert store.manifest_digest(name) == next(m.digest for m in store.list_models() if m.name == name)


def test_missing_model_and_blob(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound, match=r"^model 'nope:latest' not found$"):
        store.read_manifest(_name("nope"))
    with pytest.raises(ModelNotFound):
        store.manifest_digest(_name("../x"))
    assert not store.has_manifest(_name("nope"))
    with pytest.raises(BlobNotFound, match=r'^blob "sha256:0{64}" not found$'):
        store.read_blob_text("sha256:" + "0" * 64)


def test_manifest_with_unknown_fields_and_other_formatting_is_read(store: ModelStore, models_dir: Path) -> None:
    digest = _blob(models_dir, WEIGHTS)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": digest, "size": len(WEIGHTS), "annotations": {"x": "y"}},
            "layers": [{"mediaType": MEDIA_TYPE_MODEL, "digest": digest, "size": len(WEIGHTS), "from": "llama3.2:latest", "urls": []}],
            "annotations": {"org.example": "1"},
        },
        indent=3,
    ).encode()
    written = store.write_manifest(_name("pulled"), raw)
    assert store.manifest_path(written).read_bytes() == raw  # stored verbatim: registry digest kept
    assert store.manifest_digest(written) == _sha(raw)
    manifest = store.read_manifest(written)
    assert manifest.layers[0].from_ == "llama3.2:latest"


def test_unparsable_manifests_and_bad_names_are_skipped(store: ModelStore, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = models_dir / "manifests/registry.ollama.ai/library/broken/latest"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b'{"schemaVersion":2,"layers":')
    weird = models_dir / "manifests/registry.ollama.ai/library/-dash/latest"
    weird.parent.mkdir(parents=True)
    weird.write_bytes(store.manifest_path(_name("llama3.2")).read_bytes())
    with caplog.at_level(logging.WARNING):
        names = [m.name.display_shortest() for m in store.list_models()]
    assert names == ["me/tiny:v1", "example.com:5000/team/coder:q8", "llama3.2:latest"]
    assert "broken" in caplog.text and "-dash" in caplog.text
    with pytest.raises(OllamapyError, match="invalid manifest"):
        store.read_manifest(_name("broken"))


# -- writing -------------------------------------------------------------------------------


def test_written_manifest_and_config_match_ollamas_bytes(models_dir: Path) -> None:
    store = ModelStore(models_dir)
    config = ModelConfig(model_format="gguf", model_family="llama", model_families=["llama"], model_type="8.0B", file_type="Q4_K_M")
    config_layer = store.add_blob_bytes(config.to_json(), MEDIA_TYPE_CONFIG)
    weights = store.add_blob_bytes(WEIGHTS, MEDIA_TYPE_MODEL)
    name = store.write_manifest(_name("made"), Manifest(config=config_layer, layers=[weights]))

    assert config.to_json() == (
        b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"8.0B",'
        b'"file_type":"Q4_K_M","architecture":"amd64","os":"linux"}\n'
    )
    expected = _ollama_manifest(models_dir / "reference", name.manifest_parts(), [(MEDIA_TYPE_MODEL, WEIGHTS)], time.time(), config=config.to_json())
    assert store.manifest_path(name).read_bytes() == expected
    assert stat.S_IMODE(store.manifest_path(name).stat().st_mode) == 0o644
    assert stat.S_IMODE(store.blob_path(weights.digest).stat().st_mode) == 0o644
    assert not [p for p in store.manifest_path(name).parent.iterdir() if p.name.startswith(".")]


def test_layer_and_manifest_json_round_trip() -> None:
    layer = Layer(MEDIA_TYPE_MODEL, "sha256:" + "a" * 64, 12, from_="base:latest", name="tensor.weight")
    assert layer.to_dict() == {"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + "a" * 64, "size": 12, "from": "base:latest", "name": "tensor.weight"}
    assert "from" not in Layer(MEDIA_TYPE_MODEL, "sha256:" + "a" * 64, 12).to_dict()
    manifest = Manifest(config=Layer(MEDIA_TYPE_CONFIG, "sha256:" + "b" * 64, 3), layers=[layer])
    assert Manifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(OllamapyError):
        Manifest.from_json(b'{"config": {"size": "big"}}')


def test_model_config_takes_known_fields_of_the_right_type() -> None:
    config = ModelConfig.from_dict(
        {"capabilities": ["completion", 3], "context_length": 4096, "model_type": 5, "rootfs": {"type": "layers"}, "draft": "x", "renderer": "qwen3"}
    )
    assert (config.capabilities, config.context_length, config.model_type, config.renderer) == (["completion"], 4096, "", "qwen3")
    assert list(config.to_dict()) == [
        "model_format", "model_family", "model_families", "model_type", "file_type", "renderer", "capabilities", "context_length", "architecture", "os"
    ]


def test_encode_json_escapes_like_go() -> None:
    assert encode_json({"t": "<a & b>\u2028é"}) == '{"t":"\\u003ca \\u0026 b\\u003e\\u2028é"}\n'.encode()


def test_write_rejects_invalid_names_and_garbage(models_dir: Path) -> None:
    store = ModelStore(models_dir)
    layer = Layer(MEDIA_TYPE_CONFIG, "sha256:" + "b" * 64, 3)
    with pytest.raises(InvalidModelName, match=r"^invalid model name$"):
        store.write_manifest(_name("../../etc/passwd"), Manifest(config=layer, layers=[]))
    with pytest.raises(OllamapyError):
        store.write_manifest(_name("garbage"), b"not json")
    assert not (models_dir / "manifests").exists() or not any((models_dir / "manifests").rglob("*"))


def test_case_insensitive_names_reuse_the_existing_spelling(store: ModelStore, models_dir: Path) -> None:
    assert store.resolve_existing(_name("LLAMA3.2")) == _name("llama3.2")
    assert store.resolve_existing(_name("ME/Tiny:V2")) == _name("me/tiny:V2")  # tag is new: kept as typed
    assert store.resolve_existing(_name("Nobody/Tiny")) == _name("Nobody/Tiny")
    assert store.resolve_existing(_name("Example.COM:5000/Team/Coder:Q8")) == _name("example.com:5000/team/coder:q8")

    manifest = store.read_manifest(_name("llama3.2"))
    written = store.write_manifest(_name("Llama3.2:LATEST"), manifest)
    assert written.manifest_parts() == ("registry.ollama.ai", "library", "llama3.2", "latest")
    assert [m.name for m in store.list_models()].count(_name("llama3.2")) == 1
    assert sorted(p.name for p in (models_dir / "manifests/registry.ollama.ai/library").iterdir()) == ["llama3.2"]


# -- copy and delete -----------------------------------------------------------------------


def test_copy_is_a_byte_copy_with_the_same_digest(store: ModelStore) -> None:
    written = store.copy(_name("llama3.2"), _name("mine/llama:copy"))
    assert written == _name("mine/llama:copy")
    digests = {m.name.display_shortest(): m.digest for m in store.list_models()}
    assert digests["mine/llama:copy"] == digests["llama3.2:latest"]
    with pytest.raises(ModelNotFound, match=r'^model "ghost:latest" not found$'):
        store.copy(_name("ghost"), _name("x"))


def test_delete_removes_manifest_empty_dirs_and_orphaned_blobs_only(store: ModelStore, models_dir: Path) -> None:
    shared = store.blob_path("sha256:" + _sha(SHARED_TEMPLATE))
    weights = store.blob_path("sha256:" + _sha(WEIGHTS))
    tiny = store.read_manifest(_name("me/tiny:v1"))

    store.delete(_name("me/tiny:v1"))
    assert not store.has_manifest(_name("me/tiny:v1"))
    assert not (models_dir / "manifests/registry.ollama.ai/me").exists()
    assert (models_dir / "manifests/registry.ollama.ai/library/llama3.2").is_dir()
    assert shared.exists() and weights.exists()  # still used by llama3.2
    assert not store.blob_path(tiny.layers[0].digest).exists()
    assert tiny.config.digest == store.read_manifest(_name("llama3.2")).config.digest  # same config bytes: shared
    assert store.has_blob(tiny.config.digest)

    store.delete(_name("llama3.2"))
    assert not shared.exists() and not weights.exists()
    assert [m.name.display_shortest() for m in store.list_models()] == ["example.com:5000/team/coder:q8"]
    assert (models_dir / "manifests").is_dir()
    with pytest.raises(ModelNotFound):
        store.delete(_name("llama3.2"))


def test_delete_keeps_blobs_of_a_copy(store: ModelStore) -> None:
    store.copy(_name("llama3.2"), _name("twin"))
    store.delete(_name("llama3.2"))
    manifest = store.read_manifest(_name("twin"))
    assert all(store.has_blob(d) for d in manifest.blob_digests())


def test_delete_clears_a_corrupt_manifest(store: ModelStore, models_dir: Path) -> None:
    bad = models_dir / "manifests/registry.ollama.ai/library/broken/latest"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"{")
    store.delete(_name("broken"))
    assert not bad.exists()
    assert len(store.list_models()) == 3


# -- prune ---------------------------------------------------------------------------------


def test_prune_keeps_referenced_and_young_files_and_removes_old_orphans(store: ModelStore, models_dir: Path) -> None:
    blobs = models_dir / "blobs"
    referenced = _blob_files(models_dir)
    for name in referenced:
        _age(blobs / name, 10 * HOUR)
    old_orphan = blobs / f"sha256-{_sha(b'old orphan')}"
    young_orphan = blobs / f"sha256-{_sha(b'young orphan')}"
    young_partial = blobs / f"sha256-{'c' * 64}-partial"
    young_part = blobs / f"sha256-{'c' * 64}-partial-0"
    day_old_partial = blobs / f"sha256-{'d' * 64}-partial"
    old_temp = blobs / ".tmp-abc123"
    for path in (old_orphan, young_orphan, young_partial, young_part, day_old_partial, old_temp):
        path.write_bytes(b"x")
    _age(old_orphan, 2 * HOUR)
    _age(young_partial, 5 * HOUR)
    _age(day_old_partial, 25 * HOUR)
    _age(old_temp, 2 * HOUR)
    empty_dir = models_dir / "manifests/registry.ollama.ai/gone/model"
    empty_dir.mkdir(parents=True)

    removed = store.prune()

    assert sorted(removed) == sorted([old_orphan.name, day_old_partial.name, old_temp.name])
    assert _blob_files(models_dir) == referenced | {young_orphan.name, young_partial.name, young_part.name}
    assert not (models_dir / "manifests/registry.ollama.ai/gone").exists()
    assert len(store.list_models()) == 3


def test_prune_does_nothing_if_any_manifest_is_corrupt(store: ModelStore, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    orphan = models_dir / "blobs" / f"sha256-{_sha(b'orphan')}"
    orphan.write_bytes(b"orphan")
    _age(orphan, 5 * HOUR)
    bad = models_dir / "manifests/registry.ollama.ai/library/broken/latest"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a manifest")
    with caplog.at_level(logging.WARNING):
        assert store.prune() == []
    assert orphan.exists()
    assert "skipping prune" in caplog.text


def test_prune_counts_manifests_at_any_depth_as_references(store: ModelStore, models_dir: Path) -> None:
    # A newer Ollama layout (host/ns/kind/model/tag) must not make its blobs look orphaned.
    data = b"skill weights"
    deep = models_dir / "manifests/registry.ollama.ai/library/skill/thing/latest"
    deep.parent.mkdir(parents=True)
    deep.write_bytes(Manifest(config=Layer(MEDIA_TYPE_CONFIG, _blob(models_dir, data), len(data)), layers=[]).to_json())
    _age(models_dir / "blobs" / f"sha256-{_sha(data)}", 5 * HOUR)
    store.prune()
    assert store.has_blob("sha256:" + _sha(data))


def test_fix_blobs_renames_legacy_colon_names(models_dir: Path) -> None:
    blobs = models_dir / "blobs"
    blobs.mkdir()
    (blobs / f"sha256:{'e' * 64}").write_bytes(b"legacy")
    store = ModelStore(models_dir)
    store.fix_blobs()
    assert _blob_files(models_dir) == {f"sha256-{'e' * 64}"}
    assert store.has_blob(f"sha256:{'e' * 64}")


# -- blobs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "sha256:" + "g" * 64, "md5:" + "a" * 64, "sha256:../../" + "a" * 58, "sha256-" + "a" * 64 + "\n", "", "sha256:" + "a" * 65],
)
def test_blob_path_rejects_malformed_digests(models_dir: Path, digest: str) -> None:
    with pytest.raises(InvalidDigest, match=r"^invalid digest format$"):
        ModelStore(models_dir).blob_path(digest)


def test_blob_path_accepts_both_separators(models_dir: Path) -> None:
    store = ModelStore(models_dir)
    hexd = "A" * 64
    assert store.blob_path(f"sha256:{hexd}") == store.blob_path(f"sha256-{hexd.lower()}") == models_dir / "blobs" / f"sha256-{'a' * 64}"


def test_blob_writer_stores_verified_upload(models_dir: Path) -> None:
    store = ModelStore(models_dir)
    data = b"chunk one, chunk two"
    digest = "sha256:" + _sha(data)
    with store.open_blob_writer(digest) as writer:
        writer.write(data[:9])
        writer.write(data[9:])
        assert writer.commit() is True
    assert store.blob_path(digest).read_bytes() == data
    with store.open_blob_writer(digest.replace(":", "-")) as writer:
        writer.write(data)
        assert writer.commit() is False  # already there
    assert _blob_files(models_dir) == {f"sha256-{_sha(data)}"}


def test_blob_writer_digest_mismatch_leaves_no_file(models_dir: Path) -> None:
    store = ModelStore(models_dir)
    expected = "sha256:" + "0" * 64
    writer = store.open_blob_writer(expected)
    writer.write(b"something else")
    with pytest.raises(InvalidRequest) as info:
        writer.commit()
    assert str(info.value) == f'digest mismatch, expected "{expected}", got "sha256:{_sha(b"something else")}"'
    assert info.value.status_code == 400
    writer.abort()  # the route calls abort on any error; must be harmless
    assert _blob_files(models_dir) == set()


def test_aborted_or_failed_blob_writer_leaves_no_file(models_dir: Path) -> None:
    store = ModelStore(models_dir)
    writer = store.open_blob_writer("sha256:" + "1" * 64)
    writer.write(b"partial upload")
    writer.abort()
    with pytest.raises(RuntimeError, match="client went away"), store.open_blob_writer("sha256:" + "1" * 64) as failing:
        failing.write(b"partial")
        raise RuntimeError("client went away")
    with store.open_blob_writer() as forgotten:
        forgotten.write(b"never committed")
    assert _blob_files(models_dir) == set()


def test_blob_writer_rejects_bad_digest_before_creating_anything(models_dir: Path) -> None:
    with pytest.raises(InvalidDigest):
        ModelStore(models_dir).open_blob_writer("sha256:../../evil")
    assert not (models_dir / "blobs").exists()


def test_add_blob_file_streams_a_file_in(models_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "weights.gguf"
    data = os.urandom(3 * (1 << 20) + 17)
    source.write_bytes(data)
    store = ModelStore(models_dir)
    layer = store.add_blob_file(source, MEDIA_TYPE_MODEL)
    assert layer == Layer(MEDIA_TYPE_MODEL, "sha256:" + _sha(data), len(data))
    assert store.blob_path(layer.digest).read_bytes() == data
    assert store.add_blob_bytes(data, MEDIA_TYPE_MODEL) == layer
    assert _blob_files(models_dir) == {f"sha256-{_sha(data)}"}


def test_written_blob_leaves_the_page_cache(models_dir: Path, tmp_path: Path) -> None:
    """A runner maps the blob: pages left cached by the writes would be mapped 4 KiB at a
    time, while pages read back by readahead come in large folios (2 MiB mappings)."""
    store = ModelStore(models_dir)
    store.blobs_dir.mkdir(parents=True)
    if not page_cache_can_drop(store.blobs_dir):
        pytest.skip("this filesystem keeps file pages cached (tmpfs)")
    source = tmp_path / "weights.gguf"
    source.write_bytes(os.urandom(3 * (1 << 20)))
    layer = store.add_blob_file(source, MEDIA_TYPE_MODEL)
    assert cached_pages(store.blob_path(layer.digest)) == 0
    with store.open_blob_writer() as writer:  # an upload through /api/blobs
        writer.write(os.urandom(1 << 20))
        writer.commit()
    assert cached_pages(store.blob_path(writer.digest)) == 0
