"""Model creation (``/api/create``): a request becomes layers, a config blob and a manifest.

Two phases so errors get the right HTTP status: ``prepare_create`` does every check a
user's mistake can fail (answered as a plain 400 before any progress is streamed), and
``run_create`` does the work, reporting Ollama's progress lines through ``emit``. Nothing
is visible in the store until the manifest is renamed into place at the very end, so an
interrupted create leaves at most unreferenced blobs (pruned later), never a half model.

A ``from`` model that is not in the store is pulled from its registry first, as Ollama
does; the pull is async and needs the server's registry session, so this module only
marks the job (:attr:`CreateJob.pull_from`) and the caller runs the pull between the two
phases, streaming its progress lines ahead of the create's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ollamapy.api.options import Options
from ollamapy.api.types import CreateRequest
from ollamapy.errors import InvalidRequest, OllamapyError, TemplateError
from ollamapy.prompt.render import PromptTemplate
from ollamapy.store import model_store as st
from ollamapy.store import modelfile as mf
from ollamapy.store.gguf import QUANTIZE_FILE_TYPES, GGUFInfo, format_parameter_size, read_gguf
from ollamapy.store.model import load_model
from ollamapy.store.names import ModelName
from ollamapy.store.template_detect import detect_named_template

__all__ = ["QUANTIZABLE_TYPES", "CreateJob", "prepare_create", "run_create"]

log = logging.getLogger("ollamapy.create")

Emit = Callable[[dict[str, Any]], None]

QUANTIZABLE_TYPES = {"F16", "BF16", "F32"}
_MESSAGE_ROLES = {"system", "user", "assistant"}
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")


@dataclass
class CreateJob:
    """A validated create request, ready to run."""

    name: ModelName
    request: CreateRequest
    from_name: ModelName | None = None
    pull_from: ModelName | None = None
    """``from_name`` when the store lacks it: pull it before :func:`run_create`."""
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    quantize: str = ""


def _digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _legacy_to_json(store: st.ModelStore, req: CreateRequest) -> CreateRequest:
    """Turn the legacy ``modelfile``/``path`` form into the JSON form.

    ``FROM @sha256:…`` names an uploaded blob; a FROM/ADAPTER path that exists on the
    server (relative to the Modelfile given by ``path``) is imported into the blob store.
    """
    text = req.modelfile
    base_dir = Path.cwd()
    if not text and req.path:
        path = Path(req.path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidRequest(f"error reading modelfile: {exc.strerror}") from None
        base_dir = path.parent
    if not text:
        raise InvalidRequest("path or modelfile are required")
    parsed = mf.parse(text)
    body, local_files = mf.to_create_request(parsed, base_dir)
    for kind in ("files", "adapters"):
        for filename, digest in list((body.get(kind) or {}).items()):
            if not digest and filename in local_files:
                body[kind][filename] = store.add_blob_file(local_files[filename], st.MEDIA_TYPE_MODEL).digest
    source = body.get("from") or ""
    if source.startswith("@"):
        body.pop("from")
        body.setdefault("files", {})["model.gguf"] = source[1:]
    merged = req.model_dump(by_alias=True, exclude={"modelfile", "path"})
    merged.update({k: v for k, v in body.items() if v not in (None, "", [], {})})
    return CreateRequest.model_validate(merged)


def _check_file_path(filename: str) -> None:
    pure = PurePosixPath(filename)
    if (
        not filename
        or filename == "."
        or pure.is_absolute()
        or ".." in pure.parts
        or any(c in filename for c in "\\:\x00")
    ):
        raise InvalidRequest(f"file path must be relative: {filename}")


def prepare_create(store: st.ModelStore, req: CreateRequest) -> CreateJob:
    """Validate everything a user can get wrong; raise the 4xx error Ollama answers with."""
    name = ModelName.parse(req.target)
    if not name.is_valid():
        raise InvalidRequest("invalid model name")
    if req.modelfile or req.path:
        req = _legacy_to_json(store, req)
    job = CreateJob(name=store.resolve_existing(name), request=req, quantize=req.quantize_type)

    for kind, mapping in (("files", req.files), ("adapters", req.adapters)):
        for filename, digest in mapping.items():
            _check_file_path(filename)
            if filename.endswith(".safetensors"):
                raise InvalidRequest("safetensors import is not supported yet")
            store.blob_path(digest)  # validates the digest format
            if not store.has_blob(digest):
                raise InvalidRequest(f"blob not found for {filename} (digest {digest})")
        getattr(job, kind).update(mapping)

    if req.from_:
        source = ModelName.parse(req.from_)
        if not source.is_valid():
            raise InvalidRequest("invalid model name")
        job.from_name = store.resolve_existing(source)
        if not store.has_manifest(job.from_name):
            job.pull_from = job.from_name
    elif not job.files:
        raise InvalidRequest("neither 'from' or 'files' was specified")

    if req.template:
        try:
            PromptTemplate.parse(req.template)
        except TemplateError as exc:
            raise InvalidRequest(f"template error: {exc}") from None
    if req.parameters:
        Options.from_layers(req.parameters)  # raises InvalidRequest on bad types
    for message in req.messages or []:
        if message.role not in _MESSAGE_ROLES:
            raise InvalidRequest('message role must be one of "system", "user", or "assistant"')
    if job.quantize:
        _check_quantizable(store, job)
    return job


def _check_quantizable(store: st.ModelStore, job: CreateJob) -> None:
    if job.quantize.lower() not in QUANTIZE_FILE_TYPES:
        raise InvalidRequest(f"unsupported quantization type {job.quantize}")
    if job.pull_from is None:  # else its file type is known once it is pulled
        _check_source_type(store, job)


def _check_source_type(store: st.ModelStore, job: CreateJob) -> None:
    if job.files:
        infos = [read_gguf(store.blob_path(d)) for d in job.files.values()]
        source_types = [i.file_type_name for i in infos if not (i.is_adapter or i.is_projector)]
    else:
        assert job.from_name is not None
        source_types = [store.read_config(store.read_manifest(job.from_name)).get("file_type", "")]
    if not source_types or source_types[0] not in QUANTIZABLE_TYPES:
        raise InvalidRequest("quantization is only supported for F16, BF16 and F32 models")


class _LayerWriter:
    """Adds layers to the store, reporting ``using existing``/``creating new`` as Ollama does."""

    def __init__(self, store: st.ModelStore, emit: Emit) -> None:
        self.store = store
        self.emit = emit

    def existing(self, layer: st.Layer) -> st.Layer:
        self.emit({"status": f"using existing layer {layer.digest}"})
        return layer

    def text(self, media_type: str, data: bytes) -> st.Layer:
        digest = _digest_of(data)
        status = "using existing layer" if self.store.has_blob(digest) else "creating new layer"
        layer = self.store.add_blob_bytes(data, media_type)
        self.emit({"status": f"{status} {layer.digest}"})
        return layer


def _gguf_layers(store: st.ModelStore, files: dict[str, str], emit: Emit) -> list[tuple[st.Layer, GGUFInfo]]:
    out: list[tuple[st.Layer, GGUFInfo]] = []
    for filename in sorted(files):
        digest = files[filename]
        emit({"status": "parsing GGUF"})
        info = read_gguf(store.blob_path(digest))
        if info.is_adapter:
            media = st.MEDIA_TYPE_ADAPTER
        elif info.is_projector:
            media = st.MEDIA_TYPE_PROJECTOR
        else:
            media = st.MEDIA_TYPE_MODEL
        size = store.blob_path(digest).stat().st_size
        out.append((st.Layer(media_type=media, digest=digest.replace("-", ":", 1), size=size), info))
    return out


def _config_from_gguf(info: GGUFInfo) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_format": "gguf",
        "model_family": info.architecture,
        "model_families": [info.architecture],
        "model_type": format_parameter_size(info.parameter_count),
        "file_type": info.file_type_name,
    }
    if info.context_length:
        config["context_length"] = info.context_length
    if info.embedding_length:
        config["embedding_length"] = info.embedding_length
    return config


def _quantize(store: st.ModelStore, layer: st.Layer, info: GGUFInfo, qtype: str, emit: Emit) -> tuple[st.Layer, GGUFInfo]:
    """Run llama.cpp's quantizer in a child process, streaming per-tensor byte progress."""
    target = qtype.upper()
    status = f"quantizing {info.file_type_name} model to {target}"
    sizes = {t.name: t.n_bytes for t in info.tensors}
    total, done = sum(sizes.values()), 0
    emit({"status": status, "digest": "0000000000000000000", "total": total, "completed": 0})
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        out_path = Path(tmp) / "quantized.gguf"
        cmd = [sys.executable, "-m", "ollamapy.runner.quantize", str(store.blob_path(layer.digest)), str(out_path), qtype]
        tail: list[str] = []
        with subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:
                tail = ([*tail, line.rstrip()])[-20:]
                match = _TENSOR_LINE.match(line)
                if match:
                    done += sizes.get(match.group(3), 0)
                    emit({"status": status, "digest": "0000000000000000000", "total": total, "completed": done})
        if proc.returncode != 0:
            errors = [line for line in tail if "error" in line.lower()] or tail[-1:]
            raise OllamapyError(f"quantization failed: {errors[-1] if errors else proc.returncode}")
        new_info = read_gguf(out_path)
        new_layer = store.add_blob_file(out_path, st.MEDIA_TYPE_MODEL)
    emit({"status": f"creating new layer {new_layer.digest}"})
    return new_layer, new_info


def _base_from_model(store: st.ModelStore, job: CreateJob, writer: _LayerWriter) -> tuple[list[st.Layer], dict[str, Any], GGUFInfo | None]:
    assert job.from_name is not None
    source = load_model(store, job.from_name)
    short = source.name.display_shortest()
    layers = [
        writer.existing(st.Layer(layer.media_type, layer.digest, layer.size, from_=layer.from_ or short, name=layer.name))
        for layer in source.manifest.layers
    ]
    config = {k: v for k, v in source.config.items() if k != "rootfs"}
    return layers, config, source.gguf


def _replace(layers: list[st.Layer], media_types: set[str], new: st.Layer) -> list[st.Layer]:
    return [layer for layer in layers if layer.media_type not in media_types] + [new]


def _apply_overlays(store: st.ModelStore, layers: list[st.Layer], req: CreateRequest, writer: _LayerWriter) -> list[st.Layer]:
    """Modelfile values over inherited layers: singletons replaced, params merged, licenses appended."""
    if req.template:
        layers = _replace(layers, {st.MEDIA_TYPE_TEMPLATE, st.MEDIA_TYPE_PROMPT}, writer.text(st.MEDIA_TYPE_TEMPLATE, req.template.encode()))
    if req.system:
        layers = _replace(layers, {st.MEDIA_TYPE_SYSTEM}, writer.text(st.MEDIA_TYPE_SYSTEM, req.system.encode()))
    for text in req.licenses:
        if text:
            layers = [*layers, writer.text(st.MEDIA_TYPE_LICENSE, text.encode())]
    if req.parameters:
        merged: dict[str, Any] = {}
        for layer in layers:
            if layer.media_type == st.MEDIA_TYPE_PARAMS:
                merged.update(json.loads(store.read_blob_text(layer.digest) or "{}"))
        merged.update(req.parameters)
        data = st.encode_json(merged)
        layers = _replace(layers, {st.MEDIA_TYPE_PARAMS}, writer.text(st.MEDIA_TYPE_PARAMS, data))
    if req.messages:
        data = st.encode_json([m.to_wire() for m in req.messages])
        layers = _replace(layers, {st.MEDIA_TYPE_MESSAGES}, writer.text(st.MEDIA_TYPE_MESSAGES, data))
    return layers


def _autodetected_template(layers: list[st.Layer], info: GGUFInfo, writer: _LayerWriter) -> list[st.Layer]:
    """Give an imported GGUF the named Go template (and its stop words) its chat template matches.

    The layers replace any template/params inherited so far; the request's own TEMPLATE and
    PARAMETERs are applied over them afterwards, as in Ollama.
    """
    named = detect_named_template(info.chat_template)
    if named is None:
        return layers
    template = writer.store.add_blob_bytes(named.template.encode(), st.MEDIA_TYPE_TEMPLATE)
    writer.emit({"status": f"using autodetected template {named.name}"})
    layers = _replace(layers, {st.MEDIA_TYPE_TEMPLATE, st.MEDIA_TYPE_PROMPT}, template)
    if named.parameters is not None:
        layers = _replace(layers, {st.MEDIA_TYPE_PARAMS}, writer.text(st.MEDIA_TYPE_PARAMS, st.encode_json(named.parameters)))
    return layers


def run_create(store: st.ModelStore, job: CreateJob, emit: Emit) -> None:
    """Build and write the model; the manifest rename at the end is the only visible step.

    A job with :attr:`~CreateJob.pull_from` expects that model pulled by now (else
    ``ModelNotFound``).
    """
    if job.pull_from is not None and job.quantize:
        _check_source_type(store, job)
    writer = _LayerWriter(store, emit)
    config: dict[str, Any] = {}
    layers: list[st.Layer] = []
    model_info: GGUFInfo | None = None
    if job.from_name is not None:
        layers, config, model_info = _base_from_model(store, job, writer)
    for layer, info in _gguf_layers(store, job.files, emit):
        if layer.media_type == st.MEDIA_TYPE_MODEL:
            layers = [x for x in layers if x.media_type != st.MEDIA_TYPE_MODEL]
            model_info = info
            config.update(_config_from_gguf(info))
            layers = _autodetected_template([*layers, layer], info, writer)
            continue
        layers.append(layer)
    for layer, _info in _gguf_layers(store, job.adapters, emit):
        layers.append(st.Layer(st.MEDIA_TYPE_ADAPTER, layer.digest, layer.size))
    if job.quantize:
        model_layer = next((x for x in layers if x.media_type == st.MEDIA_TYPE_MODEL), None)
        if model_layer is None or model_info is None:
            raise InvalidRequest("quantization is only supported for F16, BF16 and F32 models")
        new_layer, model_info = _quantize(store, model_layer, model_info, job.quantize, emit)
        layers = [new_layer if x is model_layer else x for x in layers]
        config.update(_config_from_gguf(model_info))
    for layer in layers:
        if layer.media_type in (st.MEDIA_TYPE_MODEL, st.MEDIA_TYPE_ADAPTER, st.MEDIA_TYPE_PROJECTOR) and layer.digest in job.files.values():
            writer.existing(layer)
    layers = _apply_overlays(store, layers, job.request, writer)
    for key in ("renderer", "parser", "requires"):
        value = getattr(job.request, key)
        if value:
            config[key] = value
    config.setdefault("model_format", "gguf")
    config["architecture"] = "amd64"
    config["os"] = "linux"
    config_layer = store.add_blob_bytes(st.encode_json(config), st.MEDIA_TYPE_CONFIG)
    emit({"status": "writing manifest"})
    store.write_manifest(job.name, st.Manifest(config=config_layer, layers=layers))
    emit({"status": "success"})
