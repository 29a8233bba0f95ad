"""Model-management endpoints over real HTTP: create, blobs, tags, show, copy, delete."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.testing.tiny_gguf import write_tiny_gguf, write_tiny_lora


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path) -> TestClient:
    return await aiohttp_client(create_app(models_dir))


async def _upload(client: TestClient, path: Path) -> str:
    digest = _digest(path)
    resp = await client.post(f"/api/blobs/{digest}", data=path.read_bytes())
    assert resp.status in (200, 201), await resp.text()
    return digest


async def _create(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await client.post("/api/create", json=body)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in (await resp.text()).splitlines()]


async def _create_tiny(client: TestClient, gguf: Path, name: str = "tiny", **extra: Any) -> list[dict[str, Any]]:
    digest = await _upload(client, gguf)
    return await _create(client, {"model": name, "files": {"tiny.gguf": digest}, **extra})


# --- health, version, routing ---------------------------------------------------------


async def test_root_and_version(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    resp = await client.get("/")
    assert resp.status == 200 and await resp.text() == "Ollama is running"
    assert (await client.head("/")).status == 200
    assert await (await client.get("/api/version")).json() == {"version": "0.33.0"}
    monkeypatch.setenv("OLLAMAPY_API_VERSION", "0.9.9")
    assert await (await client.get("/api/version")).json() == {"version": "0.9.9"}


async def test_unknown_path_and_wrong_method_answer_like_go(client: TestClient) -> None:
    resp = await client.get("/api/nope")
    assert resp.status == 404 and await resp.text() == "404 page not found"
    resp = await client.get("/api/show")
    assert resp.status == 405 and await resp.text() == "405 method not allowed"
    assert resp.headers["Content-Type"].startswith("text/plain")


async def test_missing_and_malformed_bodies(client: TestClient) -> None:
    resp = await client.post("/api/show", data=b"")
    assert resp.status == 400 and await resp.json() == {"error": "missing request body"}
    resp = await client.post("/api/show", data=b"{not json")
    assert resp.status == 400 and "error" in await resp.json()


# --- blobs ------------------------------------------------------------------------------


async def test_blob_upload_head_and_errors(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    digest = _digest(tiny_gguf)
    resp = await client.head(f"/api/blobs/{digest}")
    assert resp.status == 404
    resp = await client.post(f"/api/blobs/{digest}", data=tiny_gguf.read_bytes())
    assert resp.status == 201
    assert (models_dir / "blobs" / digest.replace(":", "-")).read_bytes() == tiny_gguf.read_bytes()
    assert (await client.post(f"/api/blobs/{digest}", data=b"whatever")).status == 200
    assert (await client.head(f"/api/blobs/{digest}")).status == 200

    wrong = "sha256:" + "0" * 64
    resp = await client.post(f"/api/blobs/{wrong}", data=b"hello")
    assert resp.status == 400
    assert (await resp.json())["error"] == (
        f'digest mismatch, expected "{wrong}", got "sha256:{hashlib.sha256(b"hello").hexdigest()}"'
    )
    assert not (models_dir / "blobs" / wrong.replace(":", "-")).exists()

    for bad in ("sha256:abc", "md5:" + "0" * 64, "sha256:" + "g" * 64):
        resp = await client.post(f"/api/blobs/{bad}", data=b"x")
        assert resp.status == 400 and (await resp.json())["error"] == "invalid digest format"
    # nothing but the one good blob was written anywhere in the store
    assert [p.name for p in (models_dir / "blobs").iterdir()] == [digest.replace(":", "-")]


async def test_blob_path_traversal_never_escapes(client: TestClient, models_dir: Path, tmp_path: Path) -> None:
    before = _tree(tmp_path)
    for bad in ("..%2F..%2Fescape", "sha256-..%2f..%2fescape", "%2e%2e", "sha256:" + "a" * 63 + "%2F"):
        resp = await client.post(f"/api/blobs/{bad}", data=b"payload")
        assert resp.status in (400, 404)
    assert _tree(tmp_path) == before


# --- create -------------------------------------------------------------------------------


async def test_create_from_uploaded_gguf_streams_progress(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    digest = _digest(tiny_gguf)
    events = await _create_tiny(client, tiny_gguf, template="{{ .Prompt }}", system="be brief", parameters={"stop": ["a", "b"], "temperature": 0.5})
    statuses = [e["status"] for e in events]
    assert statuses[0] == "parsing GGUF"
    assert f"using existing layer {digest}" in statuses
    assert sum(s.startswith("creating new layer sha256:") for s in statuses) == 3  # template, system, params
    assert statuses[-2:] == ["writing manifest", "success"]

    manifest_path = models_dir / "manifests/registry.ollama.ai/library/tiny/latest"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    media = [layer["mediaType"] for layer in manifest["layers"]]
    assert media == [
        "application/vnd.ollama.image.model",
        "application/vnd.ollama.image.template",
        "application/vnd.ollama.image.system",
        "application/vnd.ollama.image.params",
    ]
    config_blob = models_dir / "blobs" / manifest["config"]["digest"].replace(":", "-")
    config = json.loads(config_blob.read_text())
    assert config["model_format"] == "gguf" and config["model_family"] == "llama"
    assert config["file_type"] == "F32" and config["architecture"] == "amd64" and config["os"] == "linux"
    for layer in manifest["layers"] + [manifest["config"]]:
        blob = models_dir / "blobs" / layer["digest"].replace(":", "-")
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"].split(":")[1]
        assert blob.stat().st_size == layer["size"]


async def test_create_stream_false_answers_one_object(client: TestClient, tiny_gguf: Path) -> None:
    digest = await _upload(client, tiny_gguf)
    resp = await client.post("/api/create", json={"model": "tiny", "files": {"tiny.gguf": digest}, "stream": False})
    assert resp.status == 200 and await resp.json() == {"status": "success"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "tiny"}, 400, "neither 'from' or 'files' was specified"),
        ({"model": "bad/name/x/y/z", "from": "tiny"}, 400, "invalid model name"),
        ({"model": "../../etc/x", "from": "tiny"}, 400, "invalid model name"),
        ({"model": "t2", "from": "tiny", "template": "{{ .Prompt "}, 400, "template error: "),
        ({"model": "t2", "files": {"/abs/x.gguf": "sha256:" + "a" * 64}}, 400, "file path must be relative"),
        ({"model": "t2", "files": {"../x.gguf": "sha256:" + "a" * 64}}, 400, "file path must be relative"),
        ({"model": "t2", "files": {"x.gguf": "sha256:" + "a" * 64}}, 400, "blob not found"),
        ({"model": "t2", "files": {"x.gguf": "nonsense"}}, 400, "invalid digest format"),
        ({"model": "t2", "files": {"model.safetensors": "sha256:" + "a" * 64}}, 400, "safetensors import is not supported yet"),
        ({"model": "t2", "from": "tiny", "parameters": {"temperature": "hot"}}, 400, 'option "temperature" must be of type float'),
        ({"model": "t2", "from": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, "message role must be one of"),
        ({"model": "t2", "from": "tiny", "quantize": "q4_K_M"}, 400, "quantization is only supported for F16, BF16 and F32 models"),
        ({"model": "t2", "from": "tiny", "quantize": "q9_z"}, 400, "unsupported quantization type"),
    ],
)
async def test_create_errors(client: TestClient, models_dir: Path, tiny_gguf: Path, body: dict[str, Any], status: int, message: str) -> None:
    q8 = write_tiny_gguf(models_dir.parent / "q8.gguf")
    await _create_tiny(client, tiny_gguf)
    if body.get("quantize") == "q4_K_M":  # quantizing needs an F16/BF16/F32 source
        await _quantized(client, q8, "tinyq8")
        body = {**body, "from": "tinyq8"}
    before = _tree(models_dir / "manifests")
    resp = await client.post("/api/create", json=body)
    assert resp.status == status, await resp.text()
    assert (await resp.json())["error"].startswith(message)
    assert _tree(models_dir / "manifests") == before


async def _quantized(client: TestClient, gguf: Path, name: str) -> list[dict[str, Any]]:
    return await _create_tiny(client, gguf, name=name, quantize="q8_0")


async def test_quantize_reports_per_tensor_progress(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    events = await _quantized(client, tiny_gguf, "tinyq")
    quant = [e for e in events if e["status"].startswith("quantizing")]
    assert quant[0]["status"] == "quantizing F32 model to Q8_0"
    assert len(quant) > 10 and quant[-1]["completed"] == quant[-1]["total"] > 0
    assert [e["completed"] for e in quant] == sorted(e["completed"] for e in quant)
    show = await (await client.post("/api/show", json={"model": "tinyq"})).json()
    assert show["details"]["quantization_level"] == "Q8_0"


async def test_create_from_model_overlays_layers(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    await _create_tiny(client, tiny_gguf, system="one", parameters={"temperature": 0.5, "stop": ["x"]}, license="MIT")
    events = await _create(client, {"model": "derived", "from": "tiny", "system": "two", "parameters": {"top_k": 7}, "license": "Apache"})
    assert any(e["status"].startswith("using existing layer") for e in events)
    show = await (await client.post("/api/show", json={"model": "derived"})).json()
    assert show["system"] == "two"
    assert show["license"] == "MIT\nApache"
    params = show["parameters"]
    assert "temperature" in params and "top_k" in params and '"x"' in params
    base = await (await client.post("/api/show", json={"model": "tiny"})).json()
    assert base["system"] == "one"  # the source model is untouched


async def test_create_legacy_modelfile_form(client: TestClient, tiny_gguf: Path) -> None:
    digest = await _upload(client, tiny_gguf)
    modelfile = f'FROM @{digest}\nPARAMETER temperature 0.1\nPARAMETER stop "<|end|>"\nSYSTEM """You are\na pirate"""\nMESSAGE user hi\nMESSAGE assistant ahoy\n'
    resp = await client.post("/api/create", json={"name": "legacy", "modelfile": modelfile, "stream": False})
    assert resp.status == 200, await resp.text()
    show = await (await client.post("/api/show", json={"model": "legacy"})).json()
    assert show["system"] == "You are\na pirate"
    assert show["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ahoy"}]
    bad = await client.post("/api/create", json={"name": "legacy2", "modelfile": "FROM x\nBOGUS y\n"})
    assert bad.status == 400 and "(line 2)" in (await bad.json())["error"]
    none = await client.post("/api/create", json={"name": "legacy3"})
    assert none.status == 400


async def test_create_with_adapter(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    lora = write_tiny_lora(models_dir.parent / "lora.gguf")
    model_digest = await _upload(client, tiny_gguf)
    lora_digest = await _upload(client, lora)
    await _create(client, {"model": "withlora", "files": {"tiny.gguf": model_digest}, "adapters": {"lora.gguf": lora_digest}})
    show = await (await client.post("/api/show", json={"model": "withlora"})).json()
    assert "ADAPTER " in show["modelfile"]


async def test_interrupted_create_leaves_no_manifest(client: TestClient, models_dir: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ollamapy.store import model_store as st
    def boom(self: st.ModelStore, name: Any, manifest: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(st.ModelStore, "write_manifest", boom)
    events = await _create_tiny(client, tiny_gguf)
    assert "error" in events[-1]
    assert not (models_dir / "manifests/registry.ollama.ai/library/tiny").exists()


# --- tags, show, copy, delete ------------------------------------------------------------------


async def test_tags_lists_models_newest_first(client: TestClient, models_dir: Path, tiny_gguf: Path, tiny_embed_gguf: Path) -> None:
    assert await (await client.get("/api/tags")).json() == {"models": []}
    await _create_tiny(client, tiny_gguf, name="first")
    await _create_tiny(client, tiny_embed_gguf, name="user/second:v1")
    manifest = models_dir / "manifests/registry.ollama.ai/library/first/latest"
    os.utime(manifest, (1_600_000_000, 1_600_000_000))
    body = await (await client.get("/api/tags")).json()
    names = [m["name"] for m in body["models"]]
    assert names == ["user/second:v1", "first:latest"]
    first = body["models"][1]
    assert first["model"] == "first:latest"
    assert first["digest"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert first["modified_at"].startswith("2020-09-13T12:26:40")
    assert first["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": first["details"]["parameter_size"],
        "quantization_level": "F32",
    }
    assert first["size"] == sum(layer["size"] for layer in json.loads(manifest.read_text())["layers"]) + json.loads(manifest.read_text())["config"]["size"]
    assert (await client.head("/api/tags")).status == 200


async def test_show_fields(client: TestClient, tiny_gguf: Path, tiny_embed_gguf: Path) -> None:
    await _create_tiny(client, tiny_gguf, template="{{ .System }} {{ .Prompt }}", parameters={"num_ctx": 1024, "stop": ["<a>", "<b>"]})
    show = await (await client.post("/api/show", json={"model": "tiny"})).json()
    assert show["template"] == "{{ .System }} {{ .Prompt }}"
    assert show["capabilities"] == ["completion"]
    assert show["details"]["family"] == "llama"
    assert show["model_info"]["general.architecture"] == "llama"
    assert show["model_info"]["llama.embedding_length"] == 64
    assert show["model_info"]["tokenizer.ggml.tokens"] is None  # arrays elided unless verbose, as Ollama
    assert show["modelfile"].startswith('# Modelfile generated by "ollama show"')
    assert "FROM " in show["modelfile"] and "PARAMETER num_ctx 1024" in show["modelfile"]
    assert [line.split()[0] for line in show["parameters"].splitlines()] == ["num_ctx", "stop", "stop"]
    assert show["modified_at"].endswith("Z")
    verbose = await (await client.post("/api/show", json={"model": "tiny", "verbose": True})).json()
    assert len(verbose["model_info"]["tokenizer.ggml.tokens"]) > 250
    override = await (await client.post("/api/show", json={"model": "tiny", "system": "sys!"})).json()
    assert override["system"] == "sys!"

    await _create_tiny(client, tiny_embed_gguf, name="embedder")
    embed = await (await client.post("/api/show", json={"name": "embedder"})).json()
    assert embed["capabilities"] == ["embedding"]


async def test_show_errors(client: TestClient) -> None:
    resp = await client.post("/api/show", json={})
    assert resp.status == 400 and await resp.json() == {"error": "model is required"}
    resp = await client.post("/api/show", json={"model": "ghost"})
    assert resp.status == 404 and await resp.json() == {"error": "model 'ghost' not found"}
    resp = await client.post("/api/show", json={"model": "../../../etc/passwd"})
    assert resp.status == 404


async def test_copy_and_delete(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    await _create_tiny(client, tiny_gguf)
    resp = await client.post("/api/copy", json={"source": "tiny", "destination": "copy:v2"})
    assert resp.status == 200 and await resp.read() == b""
    src = models_dir / "manifests/registry.ollama.ai/library/tiny/latest"
    dst = models_dir / "manifests/registry.ollama.ai/library/copy/v2"
    assert src.read_bytes() == dst.read_bytes()

    resp = await client.post("/api/copy", json={"source": "ghost", "destination": "x"})
    assert resp.status == 404 and await resp.json() == {"error": 'model "ghost" not found'}
    resp = await client.post("/api/copy", json={"source": "../x", "destination": "x"})
    assert resp.status == 400 and await resp.json() == {"error": 'source "../x" is invalid'}
    resp = await client.post("/api/copy", json={"source": "tiny", "destination": "a/b/c/d/e"})
    assert resp.status == 400 and await resp.json() == {"error": 'destination "a/b/c/d/e" is invalid'}

    blobs_before = set((models_dir / "blobs").iterdir())
    resp = await client.delete("/api/delete", json={"model": "tiny"})
    assert resp.status == 200 and await resp.read() == b""
    assert not src.exists()
    assert set((models_dir / "blobs").iterdir()) == blobs_before  # all still used by copy:v2
    resp = await client.delete("/api/delete", json={"model": "copy:v2"})
    assert resp.status == 200
    assert list((models_dir / "blobs").iterdir()) == []
    assert not (models_dir / "manifests/registry.ollama.ai").exists()

    resp = await client.delete("/api/delete", json={"model": "ghost"})
    assert resp.status == 404 and await resp.json() == {"error": "model 'ghost' not found"}
    resp = await client.delete("/api/delete", json={"model": "bad/name/x/y/z"})
    assert resp.status == 400 and await resp.json() == {"error": 'name "bad/name/x/y/z" is invalid'}


async def test_names_are_case_insensitive(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    await _create_tiny(client, tiny_gguf, name="MyModel")
    await _create_tiny(client, tiny_gguf, name="mymodel", system="again")
    dirs = list((models_dir / "manifests/registry.ollama.ai/library").iterdir())
    assert [d.name for d in dirs] == ["MyModel"]
    show = await (await client.post("/api/show", json={"model": "MYMODEL"})).json()
    assert show["system"] == "again"


async def test_ollama_laid_out_store_is_listed_and_shown(client: TestClient, models_dir: Path, tiny_gguf: Path) -> None:
    """A store written exactly as Ollama writes it (by hand here) is usable."""
    blobs = models_dir / "blobs"
    blobs.mkdir(exist_ok=True)

    def put(data: bytes) -> dict[str, Any]:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / f"sha256-{hexd}").write_bytes(data)
        return {"digest": f"sha256:{hexd}", "size": len(data)}

    model = put(tiny_gguf.read_bytes())
    template = put(b"{{ .Prompt }}")
    config = put(
        json.dumps(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "model_families": ["llama"],
                "model_type": "1M",
                "file_type": "F32",
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [model["digest"], template["digest"]]},
            }
        ).encode()
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", **model},
            {"mediaType": "application/vnd.ollama.image.template", **template},
        ],
    }
    path = models_dir / "manifests/registry.ollama.ai/library/handmade/7b"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))
    tags = await (await client.get("/api/tags")).json()
    assert [m["name"] for m in tags["models"]] == ["handmade:7b"]
    assert tags["models"][0]["details"]["parameter_size"] == "1M"
    show = await (await client.post("/api/show", json={"model": "handmade:7b"})).json()
    assert show["template"] == "{{ .Prompt }}"


@pytest.mark.e2e
async def test_default_model_import_on_gemma(client: TestClient, models_dir: Path) -> None:
    from ollamapy.store.default_model import import_default_model

    assert import_default_model(models_dir, model="gemma3:270m").startswith("imported gemma3:270m")
    assert "already" in import_default_model(models_dir, model="gemma3:270m")
    show = await (await client.post("/api/show", json={"model": "gemma3:270m"})).json()
    assert show["details"]["family"] == "gemma3"
    assert show["details"]["quantization_level"] == "Q4_K_M"
    assert show["details"]["parameter_size"] == "268.10M"
    assert show["model_info"]["gemma3.embedding_length"] == 640
    assert "<start_of_turn>" in show["template"]
    assert '"<end_of_turn>"' in show["parameters"]
    assert show["capabilities"] == ["completion"]


# --- show: tensors and projector; tags: capabilities ------------------------------------


def _write_projector(path: Path) -> Path:
    """A header-only CLIP projector GGUF, as llama.cpp's mmproj files are typed."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_type("mmproj")
    writer.add_uint32("clip.vision.block_count", 2)
    writer.add_uint32("clip.vision.embedding_length", 32)
    writer.add_tensor("v.patch_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


async def test_show_verbose_lists_tensors_as_ollama(client: TestClient, tiny_gguf: Path) -> None:
    await _create_tiny(client, tiny_gguf)
    plain = await (await client.post("/api/show", json={"model": "tiny"})).json()
    assert "tensors" not in plain and "projector_info" not in plain
    verbose = await (await client.post("/api/show", json={"model": "tiny", "verbose": True})).json()
    tensors = {t["name"]: t for t in verbose["tensors"]}
    assert tensors["token_embd.weight"]["type"] == "F32"
    assert tensors["token_embd.weight"]["shape"] == [64, len(verbose["model_info"]["tokenizer.ggml.tokens"])]  # GGUF order, ne[0] first
    assert tensors["blk.0.attn_norm.weight"] == {"name": "blk.0.attn_norm.weight", "type": "F32", "shape": [64]}


async def test_show_fills_projector_info_from_the_projector_header(client: TestClient, tiny_gguf: Path, tmp_path: Path) -> None:
    model = await _upload(client, tiny_gguf)
    projector = await _upload(client, _write_projector(tmp_path / "mmproj.gguf"))
    await _create(client, {"model": "seeing", "files": {"model.gguf": model, "mmproj.gguf": projector}})
    show = await (await client.post("/api/show", json={"model": "seeing"})).json()
    assert show["projector_info"]["general.architecture"] == "clip"
    assert show["projector_info"]["clip.vision.embedding_length"] == 32
    assert show["projector_info"]["general.parameter_count"] == 32
    assert "vision" in show["capabilities"]


async def test_tags_entries_carry_the_capabilities_show_lists(client: TestClient, tiny_gguf: Path, tiny_embed_gguf: Path) -> None:
    await _create_tiny(client, tiny_gguf, template="{{ if .Tools }}tools{{ end }}{{ .Prompt }}")
    await _create_tiny(client, tiny_embed_gguf, name="embedder")
    body = await (await client.get("/api/tags")).json()
    assert {m["name"]: m["capabilities"] for m in body["models"]} == {"tiny:latest": ["completion", "tools"], "embedder:latest": ["embedding"]}
