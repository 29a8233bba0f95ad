"""Bodies Go's JSON decoder refuses are 400s with its message on every JSON route.

Ollama decodes every body with Go's ``encoding/json`` and answers its error with 400, so a
body that is not UTF-8 JSON (UTF-16, a byte order mark, stray bytes, a cut-off upload) is
the client's mistake, never a 500. The routes are read from the application's route
table, so a route is covered as soon as it is added. Nothing here loads a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app, setup_routes

RAW_BODY_ROUTES = {"/api/blobs/{digest}"}
"""Routes whose body is not JSON (a blob upload is stored as it is)."""


def _json_routes() -> list[tuple[str, str]]:
    table = web.Application()
    setup_routes(table)
    return sorted(
        {
            (route.method, route.resource.canonical)
            for route in table.router.routes()
            if route.method in ("POST", "PUT", "PATCH", "DELETE") and route.resource is not None and route.resource.canonical not in RAW_BODY_ROUTES
        }
    )


JSON_ROUTES = _json_routes()

REQUEST = '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "name": "tiny"}'

UNDECODABLE = {
    "invalid UTF-8": (b"\xff\xfe\xfd", "invalid character 'ÿ' looking for beginning of value"),
    "UTF-16 with BOM": (REQUEST.encode("utf-16"), "invalid character 'ÿ' looking for beginning of value"),
    "UTF-16LE": (REQUEST.encode("utf-16-le"), "invalid character '\\x00' looking for beginning of object key string"),
    "UTF-16BE": (REQUEST.encode("utf-16-be"), "invalid character '\\x00' looking for beginning of value"),
    "UTF-8 BOM": (b"\xef\xbb\xbf" + REQUEST.encode(), "invalid character 'ï' looking for beginning of value"),
    "truncated": (REQUEST.encode()[:30], "unexpected EOF"),
    "truncated in a string": (b'{"model": "ti', "unexpected EOF"),
}


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path) -> TestClient:
    return await aiohttp_client(create_app(models_dir))


def _error_message(path: str, body: Any) -> str:
    """The message of an error answered in the route's API shape (checked to be a 400's)."""
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        return str(body["error"]["message"])
    if path.startswith("/v1/"):
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] is None
        return str(body["error"]["message"])
    assert set(body) == {"error"}
    return str(body["error"])


def test_the_route_table_has_json_routes_of_every_api() -> None:
    paths = {path for _, path in JSON_ROUTES}
    assert {"/api/generate", "/api/chat", "/api/delete", "/v1/chat/completions", "/v1/messages"} <= paths
    assert not paths & RAW_BODY_ROUTES


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize("kind", UNDECODABLE)
async def test_an_undecodable_body_is_a_400_with_go_decoders_message(client: TestClient, method: str, path: str, kind: str) -> None:
    raw, message = UNDECODABLE[kind]
    resp = await client.request(method, path, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    assert _error_message(path, await resp.json()) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"model": tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"model": nul', "unexpected EOF"),
        (b'{"model" "x"}', "invalid character '\"' after object key"),
        (b'{"model": "x" "stream": true}', "invalid character '\"' after object key:value pair"),
        (b'{"model": "x", }', "invalid character '}' looking for beginning of object key string"),
        (b"{'model': 'x'}", "invalid character '\\'' looking for beginning of object key string"),
        (b'{"images": [1 2]}', "invalid character '2' after array element"),
        (b'{"model": "a\\qb"}', "invalid character 'q' in string escape code"),
        (b'{"model": "\\u12x4"}', "invalid character 'x' in \\u hexadecimal character escape"),
        (b'{"model": "a\nb"}', "invalid character '\\n' in string literal"),
        (b'{"options": {"temperature": -x}}', "invalid character 'x' in numeric literal"),
        (b'{"options": {"temperature": 1.}}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"options": {"temperature": 1e+}}', "invalid character '}' in exponent of numeric literal"),
        (b'{"options": {"temperature": NaN}}', "invalid character 'N' looking for beginning of value"),
        (b'{"options": {"temperature": -Infinity}}', "invalid character 'I' in numeric literal"),
        (b"\x00", "invalid character '\\x00' looking for beginning of value"),
        (b"\x85", "invalid character '\\u0085' looking for beginning of value"),
        (b"[" * 10001, "invalid character '[' exceeded max depth"),
    ],
)
async def test_syntax_errors_are_named_as_go_names_them(client: TestClient, raw: bytes, message: str) -> None:
    resp = await client.post("/api/show", data=raw)
    assert resp.status == 400
    assert await resp.json() == {"error": message}


@pytest.mark.parametrize(("raw", "message"), [(b"", "missing request body"), (b" \r\n\t", "missing request body")])
async def test_an_empty_body_is_missing(client: TestClient, raw: bytes, message: str) -> None:
    resp = await client.post("/api/show", data=raw)
    assert resp.status == 400 and await resp.json() == {"error": message}


async def test_invalid_utf8_inside_a_string_is_replaced_as_go_does(client: TestClient) -> None:
    resp = await client.post("/api/show", data=b'{"model": "gh\xffost"}')
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'gh\ufffdost' not found"}


async def test_text_after_the_first_value_is_ignored_as_go_does(client: TestClient) -> None:
    resp = await client.post("/api/show", data=b'{"model": "ghost"} {"model": "other"} trailing')
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'ghost' not found"}
