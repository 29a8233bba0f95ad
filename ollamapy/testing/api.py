"""Small helpers tests and benchmarks use to drive a server through its HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from ollamapy.api.runner_protocol import HealthResponse

__all__ = ["FOREVER_GRAMMAR", "create_model", "file_digest", "free_port", "until_health", "until_idle", "upload_blob", "wait_until_serving"]


class _Poster(Protocol):
    """An aiohttp ``ClientSession`` or a test ``TestClient``: both post to a URL or path."""

    def post(self, url: str, **kwargs: Any) -> Any: ...


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_serving(base: str, process: subprocess.Popen[bytes], *, attempts: int = 400) -> None:
    """Wait until the ``ollamapy serve`` process at ``base`` answers ``/``; fail if it exits first."""
    async with aiohttp.ClientSession() as session:
        for _ in range(attempts):
            if process.poll() is not None:
                raise AssertionError(f"server exited early with status {process.returncode}")
            try:
                async with session.get(base) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("server did not start")


def file_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


async def upload_blob(http: _Poster, path: Path, *, base: str = "") -> str:
    """Upload ``path`` through ``/api/blobs`` and return its digest."""
    digest = file_digest(path)
    async with http.post(f"{base}/api/blobs/{digest}", data=path.read_bytes()) as resp:
        assert resp.status in (200, 201), await resp.text()
    return digest


async def create_model(http: _Poster, name: str, gguf: Path, *, base: str = "", **extra: Any) -> None:
    """Create ``name`` from a GGUF file (uploaded first) with ``stream: false``."""
    digest = await upload_blob(http, gguf, base=base)
    body = {"model": name, "files": {"m.gguf": digest}, "stream": False, **extra}
    async with http.post(f"{base}/api/create", json=body) as resp:
        assert resp.status == 200, await resp.text()


FOREVER_GRAMMAR = "root ::= [a-m] [n-z] root"
"""A grammar the tiny model never finishes (a request runs until ``num_predict`` or until
its client leaves): the alternating ranges keep any token from repeating until the
repetition rules end the stream."""


class _Health(Protocol):
    async def health(self) -> HealthResponse: ...


async def until_health(runner: _Health, condition: Callable[[HealthResponse], bool], *, timeout: float = 60) -> HealthResponse:
    """Poll the runner's ``/health`` until ``condition`` holds; fail after ``timeout``
    seconds instead of hanging."""
    async with asyncio.timeout(timeout):
        while not condition(health := await runner.health()):
            await asyncio.sleep(0.01)
    return health


async def until_idle(runner: _Health) -> HealthResponse:
    """Wait until no request is left and the decode batch is empty (a client that left was
    noticed and its sequence removed); every prompt token was evaluated or dropped."""
    health = await until_health(runner, lambda h: h.active == 0 and h.active_sequences == 0)
    assert health.prompt_tokens_pending == 0
    return health
