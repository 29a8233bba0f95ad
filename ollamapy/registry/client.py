"""HTTP to a Docker Registry v2 (Ollama's registry or any distribution registry).

One :class:`RegistryClient` serves one pull or push: it knows the registry's base URL and
the repository, keeps the bearer token once it has one, and answers a 401 challenge by
fetching a signed token and trying again (Ollama's ``makeRequestWithRetry``). Statuses
become errors with Ollama's texts: 404 ``file does not exist``, ≥ 400 ``<code>: <body>``.

Sessions trust the environment (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``) and verify TLS
against the system CA store (``ssl.create_default_context``, which also reads
``SSL_CERT_FILE``/``SSL_CERT_DIR``). They have no overall timeout: a multi-gigabyte part
may take long, and stalls are caught by the transfer code instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import ssl
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from ollamapy import envconfig
from ollamapy.errors import OllamapyError
from ollamapy.registry.auth import parse_challenge, token_request
from ollamapy.registry.urls import netloc
from ollamapy.store.names import ModelName

__all__ = [
    "Body",
    "RegistryClient",
    "RegistryError",
    "RegistryNotFound",
    "new_session",
    "user_agent",
]

log = logging.getLogger("ollamapy.registry")

Body = bytes | Callable[[], AsyncIterable[bytes] | bytes] | None
"""A request body, or a factory for one (a streamed body must be rebuilt to be sent again after a 401)."""

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class RegistryError(OllamapyError):
    """A registry answered with an error or could not be reached; shown to users as Ollama shows it."""


class RegistryNotFound(RegistryError):
    """404 from the registry (Go's ``os.ErrNotExist``)."""

    def __init__(self, message: str = "file does not exist") -> None:
        super().__init__(message)


def user_agent() -> str:
    """``ollama/<version> (<arch> <os>) Python/<version>``: registries read the ``ollama/<version>`` part."""
    machine = platform.machine().lower()
    return f"ollama/{envconfig.api_version()} ({_GOARCH.get(machine, machine)} {platform.system().lower()}) Python/{platform.python_version()}"


def new_session() -> aiohttp.ClientSession:
    """A session for registry traffic: proxies from the environment, the system CA store, no total timeout."""
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(), limit=64)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True)


def _force_http(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("http", *parts[1:])) if parts.scheme == "https" else url


class RegistryClient:
    """Requests to one repository of one registry, with Ollama's auth retry and error texts.

    With ``insecure`` every registry request goes over plain http (as Ollama's
    ``makeRequest`` does); otherwise the name's scheme is used (``https`` unless the user
    wrote ``http://``, which the pull/push code refuses without ``insecure``).
    """

    def __init__(self, session: aiohttp.ClientSession, name: ModelName, *, insecure: bool, key_dir: Path) -> None:
        self.session = session
        self.insecure = insecure
        self.key_dir = key_dir
        self.base_url = f"{'http' if insecure else name.scheme}://{name.host}"
        self.repository = f"{name.namespace}/{name.model}"
        self.token = ""

    def url(self, *path: str) -> str:
        """``<base>/v2/<namespace>/<model>/<path…>``."""
        return "/".join([self.base_url, "v2", self.repository, *path])

    def headers(self, extra: dict[str, str] | None = None, *, auth: bool = True) -> dict[str, str]:
        headers = {"User-Agent": user_agent(), **(extra or {})}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def send(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, body: Body = None, auth: bool = True
    ) -> aiohttp.ClientResponse:
        """One request, no status handling and no redirects followed; the caller releases the response."""
        data = body() if callable(body) else body
        return await self.session.request(
            method, URL(url, encoded=True), headers=self.headers(headers, auth=auth), data=data, allow_redirects=False
        )

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, body: Body = None
    ) -> aiohttp.ClientResponse:
        """Send with the auth retry; 404 → :class:`RegistryNotFound`, other ≥ 400 → ``"<code>: <body>"``.

        A response below 400 is returned unread (redirects included); the caller releases it.
        """
        if self.insecure:
            url = _force_http(url)
        for _ in range(2):
            try:
                response = await self.send(method, url, headers=headers, body=body)
            except aiohttp.ClientError as exc:
                raise RegistryError(f"{method} {url}: {exc or type(exc).__name__}") from exc
            if response.status == 401:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.release()
                self.token = await self.fetch_token(challenge, url)
                continue
            if response.status == 404:
                response.release()
                raise RegistryNotFound()
            if response.status >= 400:
                async with response:
                    text = await response.text(errors="replace")
                raise RegistryError(f"{response.status}: {text}")
            return response
        raise RegistryError("unauthorized: access denied")

    async def fetch_token(self, header: str, challenged_url: str) -> str:
        """Answer the Bearer challenge that ``challenged_url`` sent with a signed token request.

        The realm must be on the very host (and port) that challenged, or the signed
        request is never sent: a registry cannot collect signatures for another site.
        Nor may an https registry send it to a plain-http realm.
        """
        challenge = parse_challenge(header)
        realm_host, host = netloc(challenge.realm), netloc(challenged_url)
        if realm_host != host:
            raise RegistryError(f'realm host "{realm_host}" does not match original host "{host}"')
        realm_scheme = urlsplit(challenge.realm).scheme
        if realm_scheme != urlsplit(challenged_url).scheme and realm_scheme != "https":
            raise RegistryError(f'realm "{challenge.realm}" would send the signed token request over plain http')
        url, authorization = await asyncio.to_thread(token_request, challenge, self.key_dir)
        headers = {"User-Agent": user_agent(), "Authorization": authorization}
        try:
            async with self.session.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as response:
                text = await response.text(errors="replace")
        except aiohttp.ClientError as exc:
            raise RegistryError(str(exc) or type(exc).__name__) from None
        if response.status >= 400:
            raise RegistryError(f"{response.status}: {text}" if text else f"{response.status}")
        try:
            token = json.loads(text).get("token", "")
        except (ValueError, AttributeError):
            raise RegistryError(f"invalid token response: {text[:200]}") from None
        return token if isinstance(token, str) else ""
