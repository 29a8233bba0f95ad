"""CORS and the DNS-rebinding guard, on small apps and on the real one."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ollamapy.errors import ModelNotFound
from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.cors import allowed_host, is_loopback_listener, setup_browser_safety
from ollamapy.supervisor.middleware import error_middleware


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"one\n")
    return response


async def _fails(request: web.Request) -> web.Response:
    raise ModelNotFound("model 'x' not found")


async def _app_client(aiohttp_client: Any, *, listen_host: str | None = "127.0.0.1", origins: Sequence[str] | None = None) -> TestClient:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/json", _json)
    app.router.add_post("/json", _json)
    app.router.add_get("/stream", _streamed)
    app.router.add_get("/fails", _fails)
    setup_browser_safety(app, listen_host=listen_host, origins=origins)
    return await aiohttp_client(app)


# --- CORS ------------------------------------------------------------------------------


async def test_requests_without_origin_or_from_the_same_origin_pass_untouched(aiohttp_client: Any) -> None:
    client = await _app_client(aiohttp_client, origins=[])
    resp = await client.get("/json")
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    host = f"{client.host}:{client.port}"
    resp = await client.get("/json", headers={"Origin": f"http://{host}"})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost",
        "https://localhost",
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "http://0.0.0.0:80",
        "app://obsidian.md",
        "file://",
        "tauri://localhost",
        "vscode-webview://abc123",
        "vscode-file://vscode-app",
    ],
)
async def test_builtin_origins_are_allowed(aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    monkeypatch.delenv("OLLAMA_ORIGINS", raising=False)
    client = await _app_client(aiohttp_client)
    resp = await client.get("/json", headers={"Origin": origin})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert resp.headers["Vary"] == "Origin"


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost.evil.example", "https://127.0.0.2", "chrome-extension://abcdef", "null"])
async def test_other_origins_are_refused(aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    monkeypatch.delenv("OLLAMA_ORIGINS", raising=False)
    client = await _app_client(aiohttp_client)
    for method in ("GET", "OPTIONS"):
        resp = await client.request(method, "/json", headers={"Origin": origin})
        assert resp.status == 403 and await resp.read() == b""


async def test_ollama_origins_adds_exact_and_wildcard_origins(aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_ORIGINS", "https://app.example.com,chrome-extension://*,http://*.corp.test")
    client = await _app_client(aiohttp_client)
    for origin in ("https://app.example.com", "chrome-extension://abcdef", "http://wiki.corp.test", "http://localhost:1"):
        resp = await client.get("/json", headers={"Origin": origin})
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == origin
    resp = await client.get("/json", headers={"Origin": "https://other.example.com"})
    assert resp.status == 403


async def test_star_allows_every_origin(aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_ORIGINS", "*")
    client = await _app_client(aiohttp_client)
    resp = await client.get("/json", headers={"Origin": "https://anything.example"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_preflight(aiohttp_client: Any) -> None:
    client = await _app_client(aiohttp_client)
    headers = {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-stainless-retry-count"}
    resp = await client.options("/json", headers=headers)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
    allowed = resp.headers["Access-Control-Allow-Headers"].split(",")
    for name in ("Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "Openai-Beta"):
        assert name in allowed
    stainless = {"Arch", "Async", "Custom-Poll-Interval", "Helper-Method", "Lang", "Os", "Package-Version", "Poll-Helper", "Retry-Count", "Runtime", "Runtime-Version", "Timeout"}
    assert {h.removeprefix("X-Stainless-") for h in allowed if h.startswith("X-Stainless-")} == stainless
    assert resp.headers["Access-Control-Max-Age"] == "43200"
    # a preflight never reaches routing: unknown paths are answered too
    assert (await client.options("/v1/nowhere", headers=headers)).status == 204


async def test_streamed_and_error_responses_carry_cors_headers(aiohttp_client: Any) -> None:
    client = await _app_client(aiohttp_client)
    origin = {"Origin": "http://localhost:8080"}
    streamed = await client.get("/stream", headers=origin)
    assert await streamed.read() == b"one\n"
    assert streamed.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    failed = await client.get("/fails", headers=origin)
    assert failed.status == 404 and failed.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    missing = await client.get("/nowhere", headers=origin)
    assert missing.status == 404 and await missing.text() == "404 page not found"
    assert missing.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"


async def test_real_app_with_browser_safety(aiohttp_client: Any, models_dir: Path) -> None:
    app = create_app(models_dir)
    setup_browser_safety(app, listen_host="127.0.0.1")
    client = await aiohttp_client(app)
    resp = await client.get("/api/tags", headers={"Origin": "http://localhost:3000"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert (await client.get("/api/tags", headers={"Host": "attacker.example"})).status == 403


# --- host guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:11434",
        "localhost:11434",
        "LOCALHOST",
        "localhost",
        "[::1]:11434",
        "::1",
        "0.0.0.0:11434",
        "10.1.2.3",
        "172.16.0.9:80",
        "192.168.1.20:11434",
        "[fd00::1]:1",
        "[::ffff:127.0.0.1]:1",
        "app.localhost:3000",
        "printer.local",
        "db.internal:5432",
        "",
    ],
)
def test_allowed_hosts(host: str) -> None:
    assert allowed_host(host)


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:11434", "localhost.attacker.example", "8.8.8.8", "169.254.10.10", "100.64.0.1", "[2001:4860::8888]:80"])
def test_refused_hosts(host: str) -> None:
    assert not allowed_host(host)


def test_machine_hostname_is_allowed() -> None:
    assert allowed_host(socket.gethostname().upper() + ":11434")


@pytest.mark.parametrize(("listen", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False), (None, False), ("10.0.0.1", False)])
def test_loopback_listener(listen: str | None, loopback: bool) -> None:
    assert is_loopback_listener(listen) is loopback


async def test_guard_refuses_foreign_hosts_on_loopback(aiohttp_client: Any) -> None:
    client = await _app_client(aiohttp_client, listen_host="127.0.0.1")
    refused = await client.get("/json", headers={"Host": "attacker.example"})
    assert refused.status == 403 and await refused.read() == b""
    assert (await client.get("/json", headers={"Host": "localhost:11434"})).status == 200
    assert (await client.post("/json", headers={"Host": "192.168.0.2:11434"})).status == 200


async def test_guard_answers_options_for_allowed_names(aiohttp_client: Any) -> None:
    client = await _app_client(aiohttp_client, listen_host="127.0.0.1")
    assert (await client.options("/json", headers={"Host": "localhost:11434"})).status == 204
    # an address Host goes on to routing, which has no OPTIONS route
    assert (await client.options("/json", headers={"Host": "127.0.0.1:11434"})).status == 405


@pytest.mark.parametrize("listen", ["0.0.0.0", None])
async def test_guard_is_off_unless_listening_on_loopback(aiohttp_client: Any, listen: str | None) -> None:
    client = await _app_client(aiohttp_client, listen_host=listen)
    assert (await client.get("/json", headers={"Host": "attacker.example"})).status == 200
