"""The HTTP client the CLI uses to talk to an ollamapy (or Ollama) server.

It mirrors Ollama's ``api/client.go``: plain requests decode ``{"error": …}`` from any
status >= 400 into :class:`StatusError`; streaming requests yield one JSON object per
NDJSON line and raise on an ``{"error": …}`` line, so a failure that happens after the
server has started streaming (status 200 already sent) is not mistaken for success. The
CLI talks to the server only through this class, so it works against a remote server
exactly as against a local one (blobs are uploaded, never read from the server's disk).

    ClientError                   anything the client raises
    ├── StatusError               the server answered with an error
    └── ServerUnreachable         no connection (also a ConnectionError)
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import platform
import sys
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiohttp

from ollamapy import __version__, envconfig

__all__ = ["UPLOAD_CHUNK_SIZE", "Client", "ClientError", "ServerUnreachable", "StatusError"]

UPLOAD_CHUNK_SIZE = 1 << 20
"""Bytes read from disk per chunk when uploading a blob."""

_NOT_RUNNING = "could not connect to ollamapy server, is it running? (start it with 'ollamapy serve')"
_NO_MESSAGE = "something went wrong, please see the ollama server logs for details"


class ClientError(Exception):
    """Base class of every error the client raises; ``str(err)`` is the message users see."""


class StatusError(ClientError):
    """An error answer from the server (Ollama's ``api.StatusError``).

    ``status_code`` is the HTTP status, or -1 for an ``{"error": …}`` line inside a stream
    that had already started (no HTTP status was sent for it). ``status`` is the reason
    line (``404 Not Found``) on streamed requests only; there Ollama prints it in front of
    the message (``500 Internal Server Error: llama runner process has terminated``).
    """

    def __init__(self, status_code: int, message: str, status: str = "") -> None:
        self.status_code = status_code
        self.message = message
        self.status = status
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.status and self.message:
            return f"{self.status}: {self.message}"
        return self.status or self.message or _NO_MESSAGE


class ServerUnreachable(ClientError, ConnectionError):
    """No server answers at the configured address."""


def _status_line(code: int) -> str:
    """Go's ``http.Response.Status``: ``404 Not Found``."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _error_message(body: bytes) -> str:
    """The message of an error body: its ``error`` field, else the whole body (as Go's ``checkError``)."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    if isinstance(decoded, dict):
        return str(decoded.get("error") or "")
    return body.decode("utf-8", "replace")


def _is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _user_agent() -> str:
    return f"ollamapy/{__version__} ({platform.machine()} {sys.platform}) Python/{platform.python_version()}"


class Client:
    """An async client for the native API (``/api/*``) at ``host``.

    ``host`` is a base URL such as ``http://127.0.0.1:11434``; by default the address in
    ``OLLAMA_HOST``. Use it as an async context manager (or call :meth:`close`); every
    method may raise :class:`StatusError` or :class:`ServerUnreachable`.
    """

    def __init__(self, host: str | None = None) -> None:
        if host is None:
            host = envconfig.host().url
        self.host = host.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": _user_agent()},
                # Generation and uploads take as long as they take, as Go's client allows.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
                # Proxies from the environment, except for loopback (Go's ProxyFromEnvironment).
                trust_env=not _is_loopback(self.host),
            )
        return self._session

    def _connect_error(self, err: aiohttp.ClientConnectorError) -> ServerUnreachable:
        if isinstance(err.os_error, ConnectionRefusedError):
            return ServerUnreachable(_NOT_RUNNING)
        return ServerUnreachable(f"could not connect to ollamapy server at {self.host}: {err.os_error}")

    async def _request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> bytes:
        """One request with a JSON body (or ``data=``); returns the response bytes."""
        headers = {"Accept": "application/json"}
        if body is not None:
            kwargs["data"] = json.dumps(body)
        if "data" in kwargs and "Content-Type" not in kwargs.get("headers", {}):
            headers["Content-Type"] = "application/json"
        headers.update(kwargs.pop("headers", {}))
        try:
            async with self._http().request(method, self.host + path, headers=headers, **kwargs) as response:
                data = await response.read()
                if response.status >= 400:
                    raise StatusError(response.status, _error_message(data))
                return data
        except aiohttp.ClientConnectorError as err:
            raise self._connect_error(err) from err
        except aiohttp.ClientError as err:
            raise ClientError(str(err) or type(err).__name__) from err

    async def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = await self._request(method, path, body)
        if not data:
            return {}
        decoded = json.loads(data)
        return decoded if isinstance(decoded, dict) else {}

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST ``body`` and yield each NDJSON object of the answer (Ollama's ``Client.stream``)."""
        headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
        try:
            async with self._http().post(self.host + path, data=json.dumps(body), headers=headers) as response:
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield self._stream_line(response.status, line)
                if buffer.strip():
                    yield self._stream_line(response.status, buffer)
        except aiohttp.ClientConnectorError as err:
            raise self._connect_error(err) from err
        except aiohttp.ClientError as err:
            raise ClientError(str(err) or type(err).__name__) from err

    @staticmethod
    def _stream_line(status: int, line: bytes) -> dict[str, Any]:
        try:
            decoded = json.loads(line)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            text = line.decode("utf-8", "replace")
            if status >= 400:
                raise StatusError(status, text, _status_line(status))
            raise ClientError(text)
        if status >= 400:
            raise StatusError(status, str(decoded.get("error") or ""), _status_line(status))
        if decoded.get("error"):
            raise StatusError(-1, str(decoded["error"]))
        return decoded

    # --- plain requests ----------------------------------------------------------------

    async def heartbeat(self) -> None:
        """``HEAD /``: succeeds when a server answers."""
        await self._request("HEAD", "/")

    async def version(self) -> str:
        """``GET /api/version``: the Ollama version the server reports."""
        return str((await self._json("GET", "/api/version")).get("version", ""))

    async def list(self) -> dict[str, Any]:
        """``GET /api/tags``: ``{"models": [...]}``, newest first."""
        return await self._json("GET", "/api/tags")

    async def ps(self) -> dict[str, Any]:
        """``GET /api/ps``: the loaded models."""
        return await self._json("GET", "/api/ps")

    async def show(
        self, model: str, verbose: bool = False, system: str = "", options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``POST /api/show``: a model's details, Modelfile, parameters, template, …

        ``system`` and ``options`` describe a session's overrides, as the REPL's ``/show``
        sends them.
        """
        body: dict[str, Any] = {"model": model}
        if verbose:
            body["verbose"] = True
        if system:
            body["system"] = system
        if options:
            body["options"] = options
        return await self._json("POST", "/api/show", body)

    async def copy(self, source: str, destination: str) -> None:
        """``POST /api/copy``."""
        await self._request("POST", "/api/copy", {"source": source, "destination": destination})

    async def delete(self, model: str) -> None:
        """``DELETE /api/delete``."""
        await self._request("DELETE", "/api/delete", {"model": model})

    async def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/embed``."""
        return await self._json("POST", "/api/embed", request)

    async def plan(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/plan`` (ollamapy only): a model's memory estimate and where the server would load it."""
        return await self._json("POST", "/api/plan", request)

    async def head_blob(self, digest: str) -> bool:
        """``HEAD /api/blobs/<digest>``: whether the server already has the blob."""
        try:
            await self._request("HEAD", f"/api/blobs/{quote(digest, safe=':')}")
        except StatusError as err:
            if err.status_code == 404:
                return False
            raise
        return True

    async def create_blob(self, digest: str, path: Path, progress: Callable[[int], None] | None = None) -> None:
        """``POST /api/blobs/<digest>`` with the file's bytes, streamed from disk.

        ``progress`` is called with the number of bytes sent so far after each chunk.
        """
        size = path.stat().st_size

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            with path.open("rb") as f:
                while chunk := await asyncio.to_thread(f.read, UPLOAD_CHUNK_SIZE):
                    yield chunk
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent)

        await self._request(
            "POST",
            f"/api/blobs/{quote(digest, safe=':')}",
            data=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )

    # --- streams -----------------------------------------------------------------------

    def create(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``POST /api/create``: progress objects (``status``, maybe ``digest``/``total``/``completed``)."""
        return self._stream("/api/create", request)

    def pull(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``POST /api/pull``: progress objects."""
        return self._stream("/api/pull", request)

    def push(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``POST /api/push``: progress objects."""
        return self._stream("/api/push", request)

    def generate(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``POST /api/generate``: response chunks, the last with ``done: true`` and metrics."""
        return self._stream("/api/generate", request)

    def chat(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``POST /api/chat``: message chunks, the last with ``done: true`` and metrics."""
        return self._stream("/api/chat", request)
