"""Pull and push against a real Docker registry on loopback, with faults and auth in between.

The registry is Debian's ``docker-registry`` (the distribution registry, v2 API), started
once per session on a free port with a temporary storage directory. Between the server
under test and the registry sits :class:`Proxy`, a small aiohttp reverse proxy that counts
the blob bytes it forwards and can cut, tamper with, stall or hold blob responses, answer
with a CDN redirect, or demand Ollama-style signed Bearer tokens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from ollamapy.registry import TransferSettings, ensure_keypair
from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.routes.registry import setup_registry_routes
from ollamapy.testing.api import free_port
from ollamapy.testing.page_cache import cached_pages, page_cache_can_drop
from tests.test_cli import run as run_cli
from tests.test_cli import serving

pytestmark = pytest.mark.registry

REGISTRY_BIN = "/usr/bin/docker-registry"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
EMPTY_BODY_HASH = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()

# Small parts and short timeouts: the tiny GGUF (~470 KB) splits into 16 parts.
SETTINGS = TransferSettings(
    min_part_size=16 * 1024,
    stall_timeout=0.5,
    max_retries=3,
    retry_delay=0.01,
    redirect_timeout=2.0,
    progress_interval=0.02,
)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the registry -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:<port>`` of a docker-registry serving from a temporary directory."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"{REGISTRY_BIN} not found: install Debian's docker-registry package")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(root / "registry.log", "wb")
    process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except (OSError, urllib.error.URLError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()}") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _publish(registry: str, repo: str, blobs: list[tuple[str, bytes]], tag: str = "latest") -> bytes:
    """Put blobs (monolithic uploads) and a manifest naming them straight into the registry."""
    for _media_type, data in blobs:
        request = urllib.request.Request(f"http://{registry}/v2/{repo}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(request) as response:
            location = response.headers["Location"]
        sep = "&" if "?" in location else "?"
        request = urllib.request.Request(f"{location}{sep}digest={_digest(data)}", data=data, method="PUT")
        request.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(request).close()
    (config_type, config), *layers = blobs
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": config_type, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": t, "digest": _digest(d), "size": len(d)} for t, d in layers],
        },
        separators=(",", ":"),
    ).encode()
    request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", data=manifest, method="PUT")
    request.add_header("Content-Type", MANIFEST_TYPE)
    urllib.request.urlopen(request).close()
    return manifest


class Published:
    """A model placed in the registry by the test suite itself (not by the code under test)."""

    def __init__(self, repo: str, manifest: bytes, blobs: dict[str, bytes], weights: str) -> None:
        self.repo = repo
        self.manifest = manifest
        self.blobs = blobs
        self.weights = weights
        """Digest of the big (multi-part) layer."""


@pytest.fixture(scope="session")
def published(registry: str, tiny_gguf: Path) -> Published:
    weights = tiny_gguf.read_bytes()
    config = json.dumps({"model_format": "gguf", "model_family": "llama", "architecture": "amd64", "os": "linux"}).encode()
    template = b"{{ .Prompt }}"
    blobs = [
        ("application/vnd.docker.container.image.v1+json", config),
        ("application/vnd.ollama.image.model", weights),
        ("application/vnd.ollama.image.template", template),
    ]
    manifest = _publish(registry, "faults/tiny", blobs)
    return Published("faults/tiny", manifest, {_digest(d): d for _, d in blobs}, _digest(weights))


# --- the proxy ------------------------------------------------------------------------------

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
)
_BLOB_PATH = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")


class Proxy:
    """A reverse proxy in front of the registry, with counters and fault switches (all per digest).

    ``cut_at[d] = n``: once ``n`` bytes of ``d`` have been served in total, every response
    for ``d`` is cut there (the connection dropped). ``pause_at[d] = n``: responses stop
    at ``n`` bytes until ``resume`` is set. ``stall_once``: the first ranged request for
    each range of ``d`` hangs. ``tamper``: one byte of each ranged response is flipped.
    ``cdn``: blob GETs are answered with a 307 to :attr:`cdn_url`, served by a second
    server on another host name. ``redirect_uploads``: upload PATCHes are answered with a
    307 to that server, which keeps the parts; the commit PUT hands them to the registry
    in one piece (as Ollama's registry does with its object store). ``authorized_key``
    turns on Ollama-style token auth.
    A ``Range: bytes=0-0`` probe (the direct-URL lookup) is counted but never faulted.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.host = ""
        self.served: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str]] = []
        self.cut_at: dict[str, int] = {}
        self.pause_at: dict[str, int] = {}
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()
        self.stall_once: set[str] = set()
        self.stalled: list[str] = []
        self.tamper: set[str] = set()
        self.cdn = False
        self.cdn_requests: list[dict[str, str]] = []
        self.cdn_paths: list[str] = []
        self.redirect_uploads = False
        self.uploaded_parts: dict[str, dict[int, bytes]] = {}
        self.commits: list[dict[str, str]] = []
        self.authorized_key = ""
        self.realm = ""
        self.token_requests: list[dict[str, str]] = []
        self.bearer_seen: Counter[str] = Counter()
        self._tokens: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self.host = await self._serve(self._handle, "127.0.0.1")
        self.cdn_host = await self._serve(self._handle_cdn, "127.0.0.1")

    async def _serve(self, handler: Any, host: str) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, host, port).start()
        self._runners.append(runner)
        return f"{host}:{port}"

    @property
    def cdn_url(self) -> str:
        # "localhost" is another host name than the registry's 127.0.0.1: a different host to the client.
        return f"http://localhost:{self.cdn_host.split(':')[1]}/cdn/"

    async def close(self) -> None:
        self.resume.set()
        for runner in self._runners:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- auth ----------------------------------------------------------------------------

    def _challenge(self, request: web.Request) -> web.Response:
        repo = request.path.split("/")[2:4]
        scope = f"repository:{'/'.join(repo)}:pull,push"
        header = f'Bearer realm="{self.realm}",service="test-registry",scope="{scope}"'
        return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401, headers={"WWW-Authenticate": header})

    def _token(self, request: web.Request) -> web.Response:
        public, _, signature = request.headers.get("Authorization", "").partition(":")
        signed = f"GET,http://{request.host}{request.raw_path},{EMPTY_BODY_HASH}".encode()
        try:
            key = load_ssh_public_key(f"ssh-ed25519 {public}".encode())
            if not isinstance(key, Ed25519PublicKey):
                raise TypeError("not an ed25519 key")
            key.verify(base64.b64decode(signature), signed)
        except (ValueError, TypeError, binascii.Error, InvalidSignature, UnsupportedAlgorithm):
            return web.Response(status=401, text="bad signature")
        if f"ssh-ed25519 {public}" != self.authorized_key:
            return web.Response(status=401, text="unknown key")
        self.token_requests.append({key: ",".join(request.query.getall(key)) for key in request.query})
        token = secrets.token_hex(8)
        self._tokens.add(token)
        return web.json_response({"token": token})

    # -- forwarding ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/token":
            return self._token(request)
        if self.authorized_key:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self._tokens:
                return self._challenge(request)
            self.bearer_seen[request.method] += 1
        match = _BLOB_PATH.match(request.path)
        digest = match.group(1) if match and request.method == "GET" else ""
        byte_range = request.headers.get("Range", "")
        self.requests.append((request.method, request.rel_url.raw_path_qs, byte_range))
        if digest and self.cdn:
            return web.Response(status=307, headers={"Location": f"{self.cdn_url}{request.path.lstrip('/')}?signature=abc"})
        if self.redirect_uploads and "/blobs/uploads/" in request.path:
            return await self._redirected_upload(request)
        probe = byte_range == "bytes=0-0"
        if digest and not probe and digest in self.stall_once and byte_range not in self.stalled:
            self.stalled.append(byte_range)
            await asyncio.sleep(3600)  # cancelled when the client gives up on the part
        # rel_url: a forward-proxy request names the absolute URL; only its path goes upstream.
        return await self._forward(request, request.rel_url.raw_path_qs, digest if not probe else "", counted=digest)

    async def _redirected_upload(self, request: web.Request) -> web.StreamResponse:
        if request.method == "PATCH" and request.headers.get("X-Redirect-Uploads") == "1":
            start = int(request.headers["Content-Range"].split("-")[0])
            here = f"http://{request.host}{request.rel_url.raw_path_qs}"
            target = f"{self.cdn_url}upload{request.path}?start={start}&signature=abc"
            return web.Response(status=307, headers={"Location": target, "Docker-Upload-Location": here})
        if request.method == "PUT" and "digest" in request.query:
            self.commits.append(dict(request.query))
            parts = self.uploaded_parts.pop(request.path, {})
            data = b"".join(parts[start] for start in sorted(parts))
            assert self._session is not None
            async with self._session.put(
                f"http://{self.upstream}{request.rel_url.raw_path_qs}", data=data, headers={"Host": request.host}
            ) as upstream:
                return web.Response(status=upstream.status, body=await upstream.read())
        return await self._forward(request, request.rel_url.raw_path_qs, "", counted="")

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        self.cdn_requests.append(dict(request.headers))
        self.cdn_paths.append(f"{request.method} {request.path}")
        if request.path.startswith("/cdn/upload/") and request.method == "PUT":
            upload = request.path.removeprefix("/cdn/upload")
            self.uploaded_parts.setdefault(upload, {})[int(request.query["start"])] = await request.read()
            return web.Response(status=200)
        path = request.path.removeprefix("/cdn")
        return await self._forward(request, path, "", counted=path.rsplit("/", 1)[-1])

    async def _forward(self, request: web.Request, path: str, faulted: str, counted: str) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "authorization"}
        body = request.content if request.body_exists else None
        async with self._session.request(
            request.method, f"http://{self.upstream}{path}", headers=headers, data=body, allow_redirects=False
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status, headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            )
            await response.prepare(request)
            first = True
            async for chunk in upstream.content.iter_chunked(8192):
                if faulted in self.tamper and first:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                first = False
                if faulted in self.pause_at and not self.resume.is_set():
                    room = max(0, self.pause_at[faulted] - self.served[faulted])
                    if room < len(chunk):
                        await response.write(chunk[:room])
                        self.served[counted] += room
                        chunk = chunk[room:]
                        self.paused.set()
                        await self.resume.wait()
                if faulted in self.cut_at:
                    room = max(0, self.cut_at[faulted] - self.served[faulted])
                    if room < len(chunk):
                        await response.write(chunk[:room])
                        self.served[counted] += room
                        assert request.transport is not None
                        request.transport.close()
                        return response
                await response.write(chunk)
                self.served[counted] += len(chunk)
            await response.write_eof()
            return response


@pytest.fixture
async def proxy(registry: str) -> AsyncIterator[Proxy]:
    p = Proxy(registry)
    await p.start()
    yield p
    await p.close()


# --- the server under test ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``$HOME`` (the ed25519 key lives in ``~/.ollama``) and no outbound proxy."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home" / ".ollama"


def _app(models_dir: Path, settings: TransferSettings = SETTINGS) -> web.Application:
    app = create_app(models_dir)
    setup_registry_routes(app, settings)
    return app


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path) -> TestClient:
    return await aiohttp_client(_app(models_dir))


async def _stream(client: TestClient, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    return [json.loads(line) for line in (await response.text()).splitlines()]


async def _pull(client: TestClient, model: str) -> list[dict[str, Any]]:
    return await _stream(client, "/api/pull", {"model": model, "insecure": True})


def _blob_files(models_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (models_dir / "blobs").glob("*")} if (models_dir / "blobs").exists() else {}


def _assert_pulled(models_dir: Path, model: str, published: Published) -> None:
    host, rest = model.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    manifest = models_dir / "manifests" / host / repo / tag
    assert manifest.read_bytes() == published.manifest
    blobs = _blob_files(models_dir)
    for digest, data in published.blobs.items():
        assert blobs[digest.replace(":", "-")] == data
    assert not [name for name in blobs if "partial" in name]


# --- push and pull --------------------------------------------------------------------------


async def test_push_delete_pull_round_trip(client: TestClient, models_dir: Path, registry: str, tiny_gguf: Path) -> None:
    weights = tiny_gguf.read_bytes()
    digest = _digest(weights)
    assert (await client.post(f"/api/blobs/{digest}", data=weights)).status == 201
    name = f"{registry}/roundtrip/tiny:v1"
    create = await _stream(client, "/api/create", {"model": name, "files": {"tiny.gguf": digest}, "system": "Be brief."})
    assert create[-1] == {"status": "success"}
    manifest_file = models_dir / "manifests" / registry / "roundtrip" / "tiny" / "v1"
    manifest_bytes = manifest_file.read_bytes()
    layers = json.loads(manifest_bytes)
    digests = [layer["digest"] for layer in layers["layers"]] + [layers["config"]["digest"]]
    blobs = {d: (models_dir / "blobs" / d.replace(":", "-")).read_bytes() for d in digests}

    events = await _stream(client, "/api/push", {"model": name, "insecure": True})
    assert events[0] == {"status": "retrieving manifest"}
    assert events[-2:] == [{"status": "pushing manifest"}, {"status": "success"}]
    for d in digests:
        last = [e for e in events if e.get("digest") == d][-1]
        assert last == {"status": f"pushing {d[7:19]}", "digest": d, "total": len(blobs[d]), "completed": len(blobs[d])}

    # The registry holds the manifest byte for byte: its digest is the one /api/tags lists.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{registry}/v2/roundtrip/tiny/manifests/v1", headers={"Accept": MANIFEST_TYPE}) as response,
    ):
        assert await response.read() == manifest_bytes
        assert response.headers["Docker-Content-Digest"] == _digest(manifest_bytes)

    # A second push finds every blob there already.
    again = await _stream(client, "/api/push", {"model": name, "insecure": True, "stream": True})
    assert {e["status"] for e in again if "digest" in e} == {f"pushing {d[7:19]}" for d in digests}
    assert all(e["completed"] == e["total"] for e in again if "digest" in e)

    assert (await client.delete("/api/delete", json={"model": name})).status == 200
    assert not any((models_dir / "blobs").glob("sha256-*"))

    events = await _pull(client, name)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    order = [e["digest"] for e in events if "digest" in e]
    assert list(dict.fromkeys(order)) == digests  # layers in manifest order, config last
    for d in digests:
        assert [e for e in events if e.get("digest") == d][-1]["completed"] == len(blobs[d])
    assert manifest_file.read_bytes() == manifest_bytes
    if page_cache_can_drop(models_dir / "blobs"):  # the first load reads the weights back in large folios
        assert cached_pages(models_dir / "blobs" / digest.replace(":", "-")) == 0
    for d, data in blobs.items():
        assert (models_dir / "blobs" / d.replace(":", "-")).read_bytes() == data
    tags = await (await client.get("/api/tags")).json()
    assert tags["models"][0]["name"] == f"{registry}/roundtrip/tiny:v1"
    assert tags["models"][0]["digest"] == hashlib.sha256(manifest_bytes).hexdigest()

    # Pulling again: every blob is already there, and stream:false answers with the last event.
    response = await client.post("/api/pull", json={"model": name, "insecure": True, "stream": False})
    assert response.status == 200 and await response.json() == {"status": "success"}


async def test_push_mounts_layers_inherited_from_another_model(
    client: TestClient, proxy: Proxy, tiny_gguf: Path
) -> None:
    weights = tiny_gguf.read_bytes()
    digest = _digest(weights)
    assert (await client.post(f"/api/blobs/{digest}", data=weights)).status == 201
    base, derived = f"{proxy.host}/mount/base:latest", f"{proxy.host}/mount/derived:latest"
    assert (await _stream(client, "/api/create", {"model": base, "files": {"tiny.gguf": digest}}))[-1] == {"status": "success"}
    assert (await _stream(client, "/api/push", {"model": base, "insecure": True}))[-1] == {"status": "success"}
    assert (await _stream(client, "/api/create", {"model": derived, "from": base, "system": "Derived."}))[-1] == {"status": "success"}

    proxy.requests.clear()
    events = await _stream(client, "/api/push", {"model": derived, "insecure": True})
    assert events[-1] == {"status": "success"}
    assert [e for e in events if e.get("digest") == digest][-1]["completed"] == len(weights)
    mounts = [path for method, path, _ in proxy.requests if method == "POST" and "mount=" in path]
    assert mounts == [f"/v2/mount/derived/blobs/uploads/?from=mount%2Fbase&mount={digest.replace(':', '%3A')}"]
    patches = [path for method, path, _ in proxy.requests if method == "PATCH"]
    assert len(patches) == 2  # the new system layer and the config; the weights were mounted, not sent


async def test_official_ollama_client_pulls_and_pushes(client: TestClient, models_dir: Path, proxy: Proxy, published: Published) -> None:
    api = ollama.AsyncClient(host=str(client.make_url("")).rstrip("/"))
    model = f"{proxy.host}/{published.repo}:latest"
    progress = [p async for p in await api.pull(model, insecure=True, stream=True)]
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    assert any(p.digest == published.weights and p.completed == p.total for p in progress)
    assert (await api.pull(model, insecure=True)).status == "success"
    _assert_pulled(models_dir, model, published)
    assert (await api.push(model, insecure=True)).status == "success"
    with pytest.raises(ollama.ResponseError, match="file does not exist"):
        await api.pull(f"{proxy.host}/nothing/here", insecure=True)


async def test_pull_replacing_a_tag_removes_its_unused_layers(
    client: TestClient, models_dir: Path, registry: str, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [("application/vnd.docker.container.image.v1+json", b'{"model_format":"gguf"}'), ("application/vnd.ollama.image.system", b"old system")]
    _publish(registry, "prune/tiny", old, tag="latest")
    model = f"{registry}/prune/tiny:latest"
    await _pull(client, model)
    assert (models_dir / "blobs" / _digest(b"old system").replace(":", "-")).exists()
    new = [old[0], ("application/vnd.ollama.image.system", b"new system")]
    _publish(registry, "prune/tiny", new, tag="latest")
    events = await _pull(client, model)
    assert "removing unused layers" in [e["status"] for e in events]
    assert not (models_dir / "blobs" / _digest(b"old system").replace(":", "-")).exists()
    assert (models_dir / "blobs" / _digest(b"new system").replace(":", "-")).exists()

    monkeypatch.setenv("OLLAMA_NOPRUNE", "1")
    _publish(registry, "prune/tiny", old, tag="latest")
    events = await _pull(client, model)
    assert "removing unused layers" not in [e["status"] for e in events]
    assert (models_dir / "blobs" / _digest(b"new system").replace(":", "-")).exists()


async def test_errors_answer_as_ollama(client: TestClient, registry: str) -> None:
    response = await client.post("/api/pull", json={"model": "bad//name"})
    assert response.status == 400 and await response.json() == {"error": "invalid model name"}
    response = await client.post("/api/pull", json={})
    assert response.status == 400 and await response.json() == {"error": "invalid model name"}
    response = await client.post("/api/push", json={})
    assert response.status == 400 and await response.json() == {"error": "model is required"}

    missing = f"{registry}/nothing/here:latest"
    assert await _pull(client, missing) == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    response = await client.post("/api/pull", json={"model": missing, "insecure": True, "stream": False})
    assert response.status == 500 and await response.json() == {"error": "pull model manifest: file does not exist"}

    response = await client.post("/api/pull", json={"model": f"http://{registry}/nothing/here"})
    assert response.status == 500 and await response.json() == {"error": "insecure protocol http"}
    events = await _stream(client, "/api/push", {"model": f"http://{registry}/nothing/here"})
    assert events == [{"status": "retrieving manifest"}, {"error": "insecure protocol http"}]

    events = await _stream(client, "/api/push", {"model": missing, "insecure": True})
    assert events[:2] == [{"status": "retrieving manifest"}, {"status": "couldn't retrieve manifest"}]
    assert events[2]["error"].endswith("no such file or directory")


# --- create pulls its FROM model ------------------------------------------------------------


async def _push_and_forget(client: TestClient, models_dir: Path, name: str, weights: bytes) -> dict[str, Any]:
    """Create ``name`` from the tiny GGUF, push it, delete it here; its manifest as pushed."""
    digest = _digest(weights)
    assert (await client.post(f"/api/blobs/{digest}", data=weights)).status in (200, 201)
    body = {"model": name, "files": {"tiny.gguf": digest}, "system": "Base."}
    assert (await _stream(client, "/api/create", body))[-1] == {"status": "success"}
    assert (await _stream(client, "/api/push", {"model": name, "insecure": True}))[-1] == {"status": "success"}
    host, rest = name.split("/", 1)
    manifest: dict[str, Any] = json.loads((models_dir / "manifests" / host / rest.replace(":", "/")).read_bytes())
    assert (await client.delete("/api/delete", json={"model": name})).status == 200
    assert _blob_files(models_dir) == {}
    return manifest


def _manifest_files(models_dir: Path) -> set[str]:
    root = models_dir / "manifests"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def test_create_pulls_a_from_model_the_store_lacks(client: TestClient, models_dir: Path, registry: str, tiny_gguf: Path) -> None:
    base = await _push_and_forget(client, models_dir, f"{registry}/createpull/base:latest", tiny_gguf.read_bytes())
    base_digests = [layer["digest"] for layer in base["layers"]] + [base["config"]["digest"]]

    events = await _stream(client, "/api/create", {"model": "derived", "from": f"http://{registry}/createpull/base", "system": "Derived."})
    statuses = [e["status"] for e in events]
    pull_end = statuses.index("success")
    assert statuses[0] == "pulling manifest"
    assert statuses[pull_end - 2 : pull_end + 1] == ["verifying sha256 digest", "writing manifest", "success"]
    for layer in [*base["layers"], base["config"]]:
        last = [e for e in events if e.get("digest") == layer["digest"]][-1]
        assert last == {"status": f"pulling {layer['digest'][7:19]}", "digest": layer["digest"], "total": layer["size"], "completed": layer["size"]}
    assert [e.get("digest") for e in events if "digest" in e][-1] == base["config"]["digest"]
    create = statuses[pull_end + 1 :]
    assert create[: len(base["layers"])] == [f"using existing layer {layer['digest']}" for layer in base["layers"]]
    assert create[-2:] == ["writing manifest", "success"]

    derived = json.loads((models_dir / "manifests" / "registry.ollama.ai" / "library" / "derived" / "latest").read_bytes())
    system = _digest(b"Derived.")
    assert [layer["digest"] for layer in derived["layers"]] == [
        *(layer["digest"] for layer in base["layers"] if layer["mediaType"] != "application/vnd.ollama.image.system"),
        system,
    ]
    blobs = _blob_files(models_dir)
    for digest in [*base_digests, system]:
        assert digest.replace(":", "-") in blobs
    assert not [name for name in blobs if "partial" in name]
    # As in Ollama, the pulled base model stays in the store too.
    show = await (await client.post("/api/show", json={"model": f"{registry}/createpull/base"})).json()
    assert show["system"] == "Base."
    show = await (await client.post("/api/show", json={"model": "derived"})).json()
    assert show["system"] == "Derived."


async def test_create_from_a_model_the_registry_lacks_leaves_nothing_behind(client: TestClient, models_dir: Path, registry: str) -> None:
    missing = f"http://{registry}/nothing/here"
    assert await _stream(client, "/api/create", {"model": "derived", "from": missing}) == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    response = await client.post("/api/create", json={"model": "derived", "from": missing, "stream": False})
    assert response.status == 500 and await response.json() == {"error": "pull model manifest: file does not exist"}

    closed = f"127.0.0.1:{free_port()}"  # nothing listens there: the registry is unreachable
    events = await _stream(client, "/api/create", {"model": "derived", "from": f"http://{closed}/nothing/here"})
    assert events[0] == {"status": "pulling manifest"} and len(events) == 2
    assert events[1]["error"].startswith(f"pull model manifest: GET http://{closed}/v2/nothing/here/manifests/latest: ")
    assert _manifest_files(models_dir) == set()
    assert _blob_files(models_dir) == {}


def test_cli_create_shows_the_pull_progress(
    models_dir: Path, registry: str, published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM http://{registry}/{published.repo}\nSYSTEM From the CLI.\n")
    with serving(_app(models_dir)) as host:
        monkeypatch.setenv("OLLAMA_HOST", host)
        result = run_cli("create", "clicreated", "-f", str(modelfile))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[:2] == ["gathering model components", "pulling manifest"]
    weights, template, config = published.weights, _digest(b"{{ .Prompt }}"), next(iter(published.blobs))
    # One finished bar per blob, layers in manifest order and the config last, as `ollama create` draws them.
    bars = [line for line in lines if "%" in line]
    assert [bar.split(" 100% \u2595")[0] for bar in bars] == [f"pulling {d[7:19]}" for d in (weights, template, config)]
    assert lines[len(bars) + 2 : len(bars) + 5] == ["verifying sha256 digest", "writing manifest", "success"]
    assert lines[-2:] == ["writing manifest", "success"]
    assert (models_dir / "manifests" / "registry.ollama.ai" / "library" / "clicreated" / "latest").is_file()


# --- faults -----------------------------------------------------------------------------------


async def test_connection_cut_mid_blob_then_pull_again_resumes(
    client: TestClient, models_dir: Path, proxy: Proxy, published: Published
) -> None:
    model = f"{proxy.host}/{published.repo}:latest"
    size = len(published.blobs[published.weights])
    proxy.cut_at[published.weights] = size // 2
    events = await _pull(client, model)
    assert "error" in events[-1] and "max retries exceeded" in events[-1]["error"]
    assert not (models_dir / "manifests").exists() or not any((models_dir / "manifests").rglob("latest"))
    partials = [name for name in _blob_files(models_dir) if "partial" in name]
    assert partials  # the progress so far is on disk

    first = proxy.served[published.weights]
    del proxy.cut_at[published.weights]
    events = await _pull(client, model)
    assert events[-1] == {"status": "success"}
    assert 0 < proxy.served[published.weights] - first < size  # only the missing bytes crossed again
    _assert_pulled(models_dir, model, published)


async def test_tampered_blob_fails_and_leaves_nothing_behind(
    client: TestClient, models_dir: Path, proxy: Proxy, published: Published
) -> None:
    model = f"{proxy.host}/{published.repo}:latest"
    proxy.tamper.add(published.weights)
    events = await _pull(client, model)
    error = events[-1]["error"]
    assert re.fullmatch(
        rf"digest mismatch, file must be downloaded again: want {published.weights}, got sha256:[0-9a-f]{{64}}", error
    ), error
    assert not (models_dir / "manifests").exists() or not any(p.is_file() for p in (models_dir / "manifests").rglob("*"))
    leftovers = [name for name in _blob_files(models_dir) if published.weights[7:] in name]
    assert leftovers == []  # no blob, no partial file, no part files under that digest

    response = await client.post("/api/pull", json={"model": model, "insecure": True, "stream": False})
    assert response.status == 500 and (await response.json())["error"].startswith("digest mismatch")


async def test_stalled_part_is_retried_without_counting_as_a_failure(
    aiohttp_client: Any, models_dir: Path, proxy: Proxy, published: Published
) -> None:
    # One failure allowed: a stall counted as a failure would fail the pull.
    settings = TransferSettings(**{**SETTINGS.__dict__, "max_retries": 1, "stall_timeout": 0.3})
    client = await aiohttp_client(_app(models_dir, settings))
    model = f"{proxy.host}/{published.repo}:latest"
    proxy.stall_once.add(published.weights)
    events = await _pull(client, model)
    assert events[-1] == {"status": "success"}
    ranges = [r for method, path, r in proxy.requests if path.endswith(published.weights) and method == "GET" and r != "bytes=0-0"]
    assert proxy.stalled and all(ranges.count(r) >= 2 for r in proxy.stalled)  # each stalled part asked for again
    _assert_pulled(models_dir, model, published)


async def test_server_restarted_mid_pull_resumes_from_part_files(
    aiohttp_client: Any, models_dir: Path, proxy: Proxy, published: Published
) -> None:
    settings = TransferSettings(**{**SETTINGS.__dict__, "stall_timeout": 30.0})
    model = f"{proxy.host}/{published.repo}:latest"
    size = len(published.blobs[published.weights])
    proxy.pause_at[published.weights] = size // 3

    first_server = await aiohttp_client(_app(models_dir, settings))
    pulling = asyncio.create_task(_pull(first_server, model))
    await asyncio.wait_for(proxy.paused.wait(), 30)
    pulling.cancel()
    await asyncio.gather(pulling, return_exceptions=True)
    await first_server.close()  # the server goes away mid-blob
    served = proxy.served[published.weights]
    part_files = [name for name in _blob_files(models_dir) if re.search(r"-partial-\d+$", name)]
    assert part_files
    saved = sum(json.loads(_blob_files(models_dir)[name])["Completed"] for name in part_files)
    assert 0 < saved <= served

    del proxy.pause_at[published.weights]
    proxy.resume.set()
    second_server = await aiohttp_client(_app(models_dir, settings))
    events = await _pull(second_server, model)
    assert events[-1] == {"status": "success"}
    # Exactly the bytes the part files lacked crossed again (plus the one-byte direct-URL probe).
    assert proxy.served[published.weights] - served == size - saved + 1
    _assert_pulled(models_dir, model, published)


async def test_concurrent_pulls_share_one_download(
    client: TestClient, models_dir: Path, proxy: Proxy, published: Published
) -> None:
    model = f"{proxy.host}/{published.repo}:latest"
    size = len(published.blobs[published.weights])
    proxy.pause_at[published.weights] = 0
    first = asyncio.create_task(_stream(client, "/api/pull", {"model": model, "insecure": True}))
    await asyncio.wait_for(proxy.paused.wait(), 30)
    second_events: list[dict[str, Any]] = []

    async def second() -> None:
        response = await client.post("/api/pull", json={"model": model, "insecure": True})
        async for line in response.content:
            second_events.append(json.loads(line))

    second_task = asyncio.create_task(second())
    while not any(e.get("digest") == published.weights for e in second_events):
        await asyncio.sleep(0.01)  # the second pull is waiting on the same blob
    proxy.resume.set()
    first_events = await first
    await second_task

    for events in (first_events, second_events):
        assert events[-1] == {"status": "success"}
        progress = [e for e in events if e.get("digest") == published.weights]
        assert progress[-1]["completed"] == size
    blob_heads = [r for r in proxy.requests if r[0] == "HEAD" and r[1].endswith(published.weights)]
    assert len(blob_heads) == 1
    assert proxy.served[published.weights] <= size + 1  # one download (+ the one-byte direct-URL probe)
    _assert_pulled(models_dir, model, published)


async def test_cdn_redirect_is_resolved_once_and_gets_no_token(
    client: TestClient, models_dir: Path, proxy: Proxy, published: Published
) -> None:
    proxy.cdn = True
    model = f"{proxy.host}/{published.repo}:latest"
    events = await _pull(client, model)
    assert events[-1] == {"status": "success"}
    weights_gets = [r for r in proxy.requests if r[0] == "GET" and r[1].endswith(published.weights)]
    assert len(weights_gets) == 1  # the lookup; every part then went to the CDN
    assert len(proxy.cdn_requests) >= 16
    assert not any("Authorization" in headers for headers in proxy.cdn_requests)
    _assert_pulled(models_dir, model, published)


async def test_outbound_proxy_from_the_environment_is_used(
    client: TestClient, models_dir: Path, proxy: Proxy, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry's name does not resolve: the pull works only through HTTP_PROXY.
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
    model = f"registry.invalid:5000/{published.repo}:latest"
    events = await _pull(client, model)
    assert events[-1] == {"status": "success"}
    assert any(path.endswith(published.weights) for _, path, _ in proxy.requests)
    _assert_pulled(models_dir, model, published)


async def test_push_with_redirected_part_uploads(
    client: TestClient, models_dir: Path, proxy: Proxy, published: Published
) -> None:
    model = f"{proxy.host}/{published.repo}:latest"
    assert (await _pull(client, model))[-1] == {"status": "success"}
    copy = f"{proxy.host}/redirected/tiny:latest"
    assert (await client.post("/api/copy", json={"source": model, "destination": copy})).status == 200
    proxy.redirect_uploads = True
    events = await _stream(client, "/api/push", {"model": copy, "insecure": True})
    assert events[-1] == {"status": "success"}

    weights = published.blobs[published.weights]
    part_size = len(weights) // 16
    commit = next(c for c in proxy.commits if c["digest"] == published.weights)
    md5s = b"".join(hashlib.md5(weights[i : i + part_size]).digest() for i in range(0, len(weights), part_size))
    assert commit["etag"] == f"{hashlib.md5(md5s).hexdigest()}-16"
    assert len([p for p in proxy.cdn_paths if p.startswith("PUT /cdn/upload/")]) == 16 + 2  # weights, config, template
    assert not any("Authorization" in headers for headers in proxy.cdn_requests)

    # The registry now has it: a fresh store pulls it back byte for byte.
    proxy.redirect_uploads = False
    shutil.rmtree(models_dir)
    models_dir.mkdir()
    assert (await _pull(client, copy))[-1] == {"status": "success"}
    for digest, data in published.blobs.items():
        assert (models_dir / "blobs" / digest.replace(":", "-")).read_bytes() == data


# --- auth -------------------------------------------------------------------------------------


async def test_signed_token_auth_for_push_and_pull(
    client: TestClient, models_dir: Path, proxy: Proxy, home: Path, published: Published
) -> None:
    proxy.authorized_key = ensure_keypair(home)
    proxy.realm = f"http://{proxy.host}/token"
    model = f"{proxy.host}/{published.repo}:latest"
    events = await _pull(client, model)
    assert events[-1] == {"status": "success"}
    assert proxy.token_requests
    for query in proxy.token_requests:
        assert query["service"] == "test-registry"
        assert query["scope"] == f"repository:{published.repo}:pull,push"
        assert abs(int(query["ts"]) - time.time()) < 600 and len(query["nonce"]) == 22
    assert proxy.bearer_seen["GET"] and proxy.bearer_seen["HEAD"]
    _assert_pulled(models_dir, model, published)

    # Push it back under another name through the same authenticated registry.
    copy = f"{proxy.host}/auth/copy:latest"
    assert (await client.post("/api/copy", json={"source": model, "destination": copy})).status == 200
    events = await _stream(client, "/api/push", {"model": copy, "insecure": True})
    assert events[-1] == {"status": "success"}
    assert proxy.bearer_seen["POST"] and proxy.bearer_seen["PATCH"] and proxy.bearer_seen["PUT"]


async def test_unknown_key_and_foreign_realm_are_refused(
    client: TestClient, proxy: Proxy, home: Path, published: Published
) -> None:
    ensure_keypair(home)
    proxy.authorized_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnlyTheRegisteredKeyIsWelcomeHereXXXXXXXXXX"
    proxy.realm = f"http://{proxy.host}/token"
    model = f"{proxy.host}/{published.repo}:latest"
    events = await _pull(client, model)
    assert events[-1] == {"error": "pull model manifest: 401: unknown key"}

    # A realm on another host never receives the signed request.
    other = f"127.0.0.1:{free_port()}"
    proxy.realm = f"http://{other}/token"
    events = await _pull(client, model)
    assert events[-1] == {"error": f'pull model manifest: realm host "{other}" does not match original host "{proxy.host}"'}
    assert proxy.token_requests == []
