"""ollamapy against llama-server, the competitor, side by side in one run.

llama-server is built once from the llama.cpp sources vendored in the installed
llama-cpp-python, with the project's CPU flags (``bench.llama_server``), and started from a
directory where it can load only the ggml CPU variant ollamapy's runners choose
(``--variant`` sets the variant of both sides instead). Both sides serve Gemma
3 270M Q4_K_M with 2 threads (``--threads``) and 8 slots of ``--ctx`` tokens each:
llama-server with ``-np 8 -c 8×ctx`` (its other settings at their defaults), ollamapy with
``OLLAMA_NUM_PARALLEL=8`` and ``num_ctx`` ``--ctx``. 1, 4 and 8 concurrent clients stream
``--tokens`` greedy tokens each, every client its own prompt: raw ``/api/generate`` on
ollamapy, the native ``/completion`` on llama-server (with ``ignore_eos``, so it generates
exactly ``--tokens``; ollamapy has no such option, so the token counts are printed and any
difference named). Every token chunk is timestamped on the client.

One warm-up round of 8 clients per side first (it also caches every prompt, so the 1-client
time to first token is the prefix-cached case on both sides), then ``--rounds`` rounds; each
round runs 1, 4 and 8 clients on both sides, the side going first swapping round by round,
with a pause before each side's turn so the other side's idle llama.cpp threads stop
spinning. Figures are medians over rounds.

Printed: per side and client count, aggregate tokens/s (all tokens over the wall time from
the first request to the last token), per-client tokens/s, time to first token p50/p99 and
inter-token latency; each server's own account of decode speed and prompt time as a
cross-check; then the ratios the targets are stated in: aggregate ollamapy / llama-server at
1, 4 and 8 clients (≥ 1.0), time to first token added at 1 client (≤ 5 ms), time to first
token p50 at 8 clients (no worse than llama-server).

    .venv/bin/python -m bench.vs_llama_server [--rounds 3] [--tokens 128] [--variant icelake]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from bench._server import MODEL, PROMPTS, Round, Stream, free_port, gemma_path, generate_round, running_server, stop_process, table
from bench.llama_server import run_dir
from ollamapy.runner.backends import CPU_BACKEND_ENV, cpu_backend_name

__all__ = ["main"]

CLIENTS = (1, 4, 8)
WARMUP_TOKENS = 16
OURS, THEIRS = "ollamapy", "llama-server"


@contextlib.contextmanager
def llama_server(variant: str, args: argparse.Namespace) -> Iterator[str]:
    """Start llama-server from the run directory of ``variant``; yields its URL once it answers ``/health``."""
    directory = run_dir(variant)
    port = free_port()
    command = [
        str(directory / "llama-server"), "-m", str(gemma_path()), "-np", str(max(CLIENTS)), "-c", str(args.ctx * max(CLIENTS)),
        "-t", str(args.threads), "--host", "127.0.0.1", "--port", str(port),
    ]
    print(f"llama-server (cwd {directory}):\n  {shlex.join(command)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-llama-server-") as tmp:
        log_path = Path(tmp) / "llama-server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
            try:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 120
                while not _healthy(url):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"llama-server did not start (exit status {process.poll()}):\n" + log_path.read_text(errors="replace")[-4000:])
                    time.sleep(0.1)
                yield url
            finally:
                stop_process(process, 10)


def _healthy(url: str) -> bool:
    """``/health`` answers 200 once the model is loaded (503 while loading)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


async def stream_completion(session: aiohttp.ClientSession, url: str, prompt: str, tokens: int, seed: int) -> Stream:
    """POST a streaming ``/completion`` to llama-server and timestamp each event that carries text.

    Its final event's ``timings`` fill the server-side durations: ``predicted_ms`` as the
    eval duration, ``prompt_ms`` as the prompt eval duration.
    """
    body = {"prompt": prompt, "stream": True, "n_predict": tokens, "temperature": 0.0, "seed": seed, "cache_prompt": True, "ignore_eos": True}
    result = Stream(started=time.perf_counter())
    async with session.post(f"{url}/completion", json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            now = time.perf_counter()
            if not line.startswith(b"data: "):
                continue  # the blank line closing each event, or a keep-alive comment
            event = json.loads(line[len(b"data: "):])
            if "error" in event:
                raise RuntimeError(event["error"])
            if event.get("content"):
                result.chunk_times.append(now)
                result.text += event["content"]
            if event.get("stop"):
                result.eval_count = event["tokens_predicted"]
                result.eval_duration_ns = round(event["timings"]["predicted_ms"] * 1e6)
                result.prompt_eval_duration_ns = round(event["timings"]["prompt_ms"] * 1e6)
    return result


async def completion_round(session: aiohttp.ClientSession, url: str, n: int, tokens: int, seed: int) -> Round:
    """``n`` concurrent llama-server streams, client ``i`` with ``PROMPTS[i]`` as on ollamapy."""
    return Round(list(await asyncio.gather(*(stream_completion(session, url, PROMPTS[i], tokens, seed) for i in range(n)))))


def cpu_backends() -> dict[str, list[str]]:
    """The ggml CPU variants mapped into this process's descendants, by command: the check
    that both sides run the same kernels (neither server logs the one it loaded by default)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
    descendants = {os.getpid()}
    while grown := {pid for pid, parent in parents.items() if parent in descendants} - descendants:
        descendants |= grown
    found: dict[str, list[str]] = {}
    for pid in sorted(descendants - {os.getpid()}):
        with contextlib.suppress(OSError):
            maps = Path(f"/proc/{pid}/maps").read_text()
            variants = sorted({Path(line.split()[-1]).name for line in maps.splitlines() if "/libggml-cpu-" in line})
            if variants:
                argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
                found[f"pid {pid} ({Path(argv[0]).name} {' '.join(argv[1:3])})"] = variants
    return found


async def placement(session: aiohttp.ClientSession, url: str) -> Any:
    """What ``/api/ps`` says about where and how ollamapy runs the model."""
    async with session.get(f"{url}/api/ps") as response:
        models = (await response.json())["models"]
    return next((m.get("placement") for m in models if m["name"] == MODEL), None)


async def measure(our_url: str, their_url: str, args: argparse.Namespace) -> dict[str, dict[int, list[Round]]]:
    """The warm-up, then the alternating rounds; returns each side's rounds by client count."""
    options = {"temperature": 0.0, "seed": args.seed, "num_predict": args.tokens, "num_ctx": args.ctx, "num_thread": args.threads}
    results: dict[str, dict[int, list[Round]]] = {side: {n: [] for n in CLIENTS} for side in (OURS, THEIRS)}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        run: dict[str, Callable[[int, int], Awaitable[Round]]] = {
            OURS: lambda n, tokens: generate_round(session, our_url, n, {**options, "num_predict": tokens}),
            THEIRS: lambda n, tokens: completion_round(session, their_url, n, tokens, args.seed),
        }
        for side in (OURS, THEIRS):
            await run[side](max(CLIENTS), WARMUP_TOKENS)
        print(f"ollamapy placement (/api/ps): {json.dumps(await placement(session, our_url))}")
        for process, variants in cpu_backends().items():
            print(f"CPU backend mapped by {process}: {', '.join(variants)}", flush=True)
        for number in range(args.rounds):
            order = (OURS, THEIRS) if number % 2 == 0 else (THEIRS, OURS)
            for n in CLIENTS:
                for side in order:
                    await asyncio.sleep(args.pause)
                    results[side][n].append(await run[side](n, args.tokens))
    return results


def report(results: dict[str, dict[int, list[Round]]], args: argparse.Namespace, load_before: tuple[float, float, float]) -> None:
    ours, theirs = results[OURS], results[THEIRS]
    load = os.getloadavg()
    print(f"\nGemma 3 270M Q4_K_M, greedy, {args.tokens} tokens per client, {args.rounds} rounds, {args.threads} threads, "
          f"ctx {args.ctx} per sequence, CPU variant {args.variant}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    counts = {side: sorted({s.eval_count for rounds in results[side].values() for r in rounds for s in r.streams}) for side in results}
    print(f"tokens per stream: ollamapy {counts[OURS]}, llama-server {counts[THEIRS]}"
          + ("" if counts[OURS] == counts[THEIRS] else "   THE SIDES GENERATED DIFFERENT TOKEN COUNTS"))
    pairs = [(a.text, b.text) for n in CLIENTS for ra, rb in zip(ours[n], theirs[n]) for a, b in zip(ra.streams, rb.streams)]
    print(f"same text on both sides: {sum(a == b for a, b in pairs)} of {len(pairs)} streams\n")

    mine = table("ollamapy (raw streaming /api/generate, OLLAMA_NUM_PARALLEL=8)", ours)
    competitor = table("llama-server (streaming /completion, -np 8)", theirs)

    print("as each server reports it, median over streams: decode tok/s (ollamapy eval_count / eval_duration, "
          "llama-server timings.predicted_per_second), prompt eval ms (prompt_eval_duration, timings.prompt_ms)")
    for n in CLIENTS:
        cells = []
        for side in (OURS, THEIRS):
            streams = [s for r in results[side][n] for s in r.streams]
            decode = statistics.median(s.eval_count / (s.eval_duration_ns / 1e9) for s in streams)
            prompt = statistics.median(s.prompt_eval_duration_ns / 1e6 for s in streams)
            cells.append(f"{side} {decode:6.1f} tok/s, prompt {prompt:6.1f} ms")
        print(f"{n:>7} clients | " + " | ".join(cells))

    added = statistics.median((a.ttft - b.ttft) * 1000 for ra, rb in zip(ours[1], theirs[1]) for a, b in zip(ra.streams, rb.streams))
    print()
    print("aggregate ollamapy / llama-server: " + "  ".join(f"{n} clients {mine[n]['agg'] / competitor[n]['agg']:.2f}" for n in CLIENTS)
          + "   (target >= 1.0)")
    print(f"TTFT added at 1 client: {added:+.1f} ms (median over rounds; ollamapy p50 {mine[1]['t50']:.1f} ms, "
          f"llama-server p50 {competitor[1]['t50']:.1f} ms)   (target <= 5)")
    print(f"TTFT p50 at 8 clients: ollamapy {mine[8]['t50']:.1f} ms, llama-server {competitor[8]['t50']:.1f} ms "
          f"({mine[8]['t50'] / competitor[8]['t50']:.2f}×)   (target: no worse)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", help="the ggml CPU variant for both sides (default: the one ollamapy's runners choose)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048, help="context per sequence")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of quiet before each side's turn")
    args = parser.parse_args()
    if args.variant:
        os.environ[CPU_BACKEND_ENV] = args.variant  # the server passes its environment on to its runners
    else:
        args.variant = cpu_backend_name()  # as the server chooses for its runners
    load_before = os.getloadavg()
    # The servers start outside the event loop, so Ctrl-C while they start still stops them.
    with llama_server(args.variant, args) as their_url, running_server({"OLLAMA_NUM_PARALLEL": str(max(CLIENTS))}) as our_url:
        results = asyncio.run(measure(our_url, their_url, args))
    report(results, args, load_before)


if __name__ == "__main__":
    main()
