"""Soak: minutes of mixed traffic against one server, then what it served and what it kept.

A real ollamapy server on loopback (``bench._server.running_server``) with
``OLLAMA_MAX_LOADED_MODELS=1`` serves three tiny models created through the API (two chat
models of different sizes and an embedding model), so nearly every switch of model loads
one runner and evicts another. Worker tasks send, in random order: ``/api/generate``
streamed and not, ``/api/chat``, ``/v1/chat/completions`` streamed, ``/api/embed``, and
streams the client drops after a few lines. Now and then a runner is SIGKILLed.

Every request has a deadline; one that does not end by it counts as ``hung``. Errors are
counted by kind; a 500 or an error line is an error unless it is the runner-crash answer
to a request in flight while this bench killed a runner (what Ollama answers too). The front's RSS
and open file descriptors and the runners' RSS are sampled; at the end the bench checks
that no runner process, zombie or socket file is left behind, during the run and after the
server stops. Exits 1 on any error, hang, front RSS growth of 10 % or more, or leftover.

    .venv/bin/python -m bench.soak [--minutes 3] [--workers 4] [--kill-every 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench._server import running_server
from bench.crash_stress import runner_processes, runner_sockets
from ollamapy.testing.api import create_model
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf

__all__ = ["main"]

CHAT_MODELS = ("soak-small", "soak-large")
EMBED_MODEL = "soak-embed"
TEMPLATE = "{{- range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: "
CRASH = "model runner has unexpectedly stopped"
KINDS = ("generate-stream", "generate", "chat", "openai-stream", "embed", "drop")
OK_ENDS = ("done", "dropped")


@dataclass
class Outcome:
    kind: str
    model: str
    end: str
    """``done``, ``dropped`` (the client left on purpose), ``killed`` (its runner was killed
    under it), or an error: ``http <status>``, ``error line``, ``cut``, ``silent``, ``hung``."""
    message: str = ""


@dataclass
class Sample:
    at: float
    front_rss: int
    front_fds: int
    runner_rss: int
    runners: int


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    kills: list[tuple[float, int]] = field(default_factory=list)
    loads: int = 0
    problems: list[str] = field(default_factory=list)


class Soak:
    """The server under test and the traffic against it."""

    def __init__(self, url: str, tmpdir: Path, front: psutil.Process, session: aiohttp.ClientSession, deadline: float) -> None:
        self.url, self.tmpdir, self.front, self.session, self.deadline = url, tmpdir, front, session, deadline
        self.run = Run()
        self.seen: set[int] = set()  # every runner pid seen alive (one per load)

    def live_runners(self) -> list[psutil.Process]:
        live = []
        for proc in runner_processes(self.tmpdir):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    live.append(proc)
            except psutil.NoSuchProcess:
                pass
        return live

    def body(self, kind: str, rng: random.Random) -> tuple[str, str, dict[str, Any]]:
        """(path, model, body) for one request of ``kind``."""
        if kind == "embed":
            return "/api/embed", EMBED_MODEL, {"model": EMBED_MODEL, "input": ["the sky is blue", "grass is green"]}
        model = rng.choice(CHAT_MODELS)
        options = {"num_predict": rng.randint(16, 64), "temperature": 1.0, "seed": rng.randint(0, 9)}
        messages = [{"role": "user", "content": "tell me about the sea " * rng.randint(1, 20)}]
        if kind == "chat":
            return "/api/chat", model, {"model": model, "messages": messages, "stream": rng.random() < 0.5, "options": options}
        if kind == "openai-stream":
            body = {"model": model, "messages": messages, "stream": True, "max_tokens": options["num_predict"], "seed": options["seed"]}
            return "/v1/chat/completions", model, body
        prompt = "once upon a time " * rng.randint(1, 30)
        stream = kind != "generate"
        return "/api/generate", model, {"model": model, "prompt": prompt, "stream": stream, "options": options}

    async def request(self, kind: str, rng: random.Random) -> Outcome:
        path, model, body = self.body(kind, rng)
        self.seen.update(p.pid for p in self.live_runners())
        started = time.monotonic()
        outcome = await self._send(kind, path, model, body, rng)
        # killed under it: a runner died by our hand while it was in flight
        killed = any(started <= at <= time.monotonic() for at, _ in self.run.kills)
        if outcome.end not in OK_ENDS and CRASH in outcome.message and killed:
            outcome.end = "killed"
        return outcome

    async def _send(self, kind: str, path: str, model: str, body: dict[str, Any], rng: random.Random) -> Outcome:
        drop_after = rng.randint(1, 4) if kind == "drop" else None
        try:
            async with asyncio.timeout(self.deadline):
                async with self.session.post(f"{self.url}{path}", json=body) as resp:
                    if resp.status != 200:
                        return Outcome(kind, model, f"http {resp.status}", (await resp.text())[:300])
                    lines = 0
                    last = ""
                    async for raw in resp.content:
                        line = raw.decode().strip()
                        if not line:
                            continue
                        lines += 1
                        last = line
                        if drop_after is not None and lines >= drop_after:
                            resp.close()  # the client walks away mid-stream
                            return Outcome(kind, model, "dropped")
            return self._ending(kind, model, last)
        except aiohttp.ClientPayloadError as err:
            return Outcome(kind, model, "cut", str(err))
        except TimeoutError:
            return Outcome(kind, model, "hung")

    @staticmethod
    def _ending(kind: str, model: str, last: str) -> Outcome:
        if kind == "openai-stream":
            if last == "data: [DONE]":
                return Outcome(kind, model, "done")
            return Outcome(kind, model, "error line" if '"error"' in last else "silent", last[:300])
        try:
            final = json.loads(last)
        except json.JSONDecodeError:
            return Outcome(kind, model, "silent", last[:300])
        if "error" in final:
            return Outcome(kind, model, "error line", str(final["error"])[:300])
        if final.get("done") or "embeddings" in final:
            return Outcome(kind, model, "done")
        return Outcome(kind, model, "silent", last[:300])

    async def worker(self, seed: int, until: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < until:
            self.run.outcomes.append(await self.request(rng.choice(KINDS), rng))

    async def killer(self, every: float, until: float, rng: random.Random) -> None:
        while True:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * every)
            if time.monotonic() >= until:
                return
            live = self.live_runners()
            if live:
                victim = rng.choice(live)
                self.run.kills.append((time.monotonic(), victim.pid))
                victim.send_signal(signal.SIGKILL)

    def sample(self) -> Sample:
        runner_rss, runners = 0, 0
        for proc in self.live_runners():
            try:
                runner_rss += proc.memory_info().rss
                runners += 1
            except psutil.NoSuchProcess:
                pass
        return Sample(time.monotonic(), self.front.memory_info().rss, self.front.num_fds(), runner_rss, runners)

    async def sampler(self, until: float) -> None:
        while time.monotonic() < until:
            self.run.samples.append(self.sample())
            live = self.live_runners()
            self.seen.update(p.pid for p in live)
            if len(live) > 2:  # one runner, plus one being replaced at most
                self.run.problems.append(f"{len(live)} live runners at once")
            await asyncio.sleep(5)

    async def settled(self, patience: float = 15.0) -> str:
        """ "" once no zombie remains, at most one runner lives and each socket has a runner."""
        end = time.monotonic() + patience
        while True:
            procs = runner_processes(self.tmpdir)
            live = self.live_runners()
            zombies, sockets = len(procs) - len(live), len(runner_sockets(self.tmpdir))
            if len(live) <= 1 and not zombies and sockets <= len(live):
                return ""
            if time.monotonic() > end:
                return f"{len(live)} live runners, {zombies} zombies, {sockets} socket files"
            await asyncio.sleep(0.2)


async def setup_models(session: aiohttp.ClientSession, url: str, tmpdir: Path) -> None:
    small = write_tiny_gguf(tmpdir / "small.gguf", TinyModelSpec(seed=1))
    large = write_tiny_gguf(tmpdir / "large.gguf", TinyModelSpec(embedding_length=256, block_count=6, feed_forward_length=512, seed=2))
    embed = write_tiny_gguf(tmpdir / "embed.gguf", TinyModelSpec(pooling_type=1, seed=3))
    for name, path in zip((*CHAT_MODELS, EMBED_MODEL), (small, large, embed)):
        await create_model(session, name, path, base=url, template=TEMPLATE)


async def soak(args: argparse.Namespace, url: str, tmpdir: Path, front: psutil.Process) -> Run:
    async with aiohttp.ClientSession() as session:
        await setup_models(session, url, tmpdir)
        bench = Soak(url, tmpdir, front, session, args.deadline)
        warm = random.Random(args.seed)
        for kind in KINDS:  # every path and model once, before the first sample
            bench.run.outcomes.append(await bench.request(kind, warm))
        until = time.monotonic() + args.minutes * 60
        tasks = [asyncio.create_task(bench.worker(args.seed * 100 + i, until)) for i in range(args.workers)]
        tasks.append(asyncio.create_task(bench.killer(args.kill_every, until, random.Random(args.seed))))
        tasks.append(asyncio.create_task(bench.sampler(until)))
        await asyncio.gather(*tasks)
        leftover = await bench.settled()
        if leftover:
            bench.run.problems.append(f"after the traffic: {leftover}")
        bench.run.samples.append(bench.sample())
        bench.run.loads = len(bench.seen)
        return bench.run


def front_process(url: str) -> psutil.Process:
    """The server process: the ``ollamapy serve`` whose OLLAMA_HOST is ``url``'s."""
    host = url.removeprefix("http://")
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[-2:] == ["ollamapy", "serve"] or cmdline[-1:] == ["serve"]:
            try:
                if proc.environ().get("OLLAMA_HOST") == host:
                    return proc
            except psutil.Error:
                continue
    raise RuntimeError(f"no server process for {url}")


def report(run: Run, args: argparse.Namespace, after_stop: str, seconds: float) -> bool:
    by_end = collections.Counter(o.end for o in run.outcomes)
    errors = [o for o in run.outcomes if o.end not in (*OK_ENDS, "killed")]
    first, last = run.samples[0], run.samples[-1]
    growth = (last.front_rss - first.front_rss) / first.front_rss
    print(f"\nsoak: {args.minutes:g} min of traffic, {args.workers} workers, a runner SIGKILLed every ~{args.kill_every:g} s ({seconds:.0f} s in all)")
    print(f"requests: {len(run.outcomes)} ({', '.join(f'{k} {v}' for k, v in sorted(by_end.items()))})")
    by_kind = collections.Counter(o.kind for o in run.outcomes)
    print(f"by kind: {', '.join(f'{k} {by_kind[k]}' for k in KINDS)}")
    print(f"runner processes seen (≈ loads): {run.loads}; runners killed: {len(run.kills)}")
    if errors:
        print("errors by kind:")
        for (end, message), count in collections.Counter((o.end, o.message[:120]) for o in errors).most_common():
            print(f"  {count} × {end}: {message}")
    else:
        print("errors: none (no 500 other than the answers of killed runners, no hang, no cut or silent stream)")
    rss = [s.front_rss for s in run.samples]
    print(f"front RSS: start {first.front_rss / 2**20:.1f} MiB, end {last.front_rss / 2**20:.1f} MiB ({growth:+.1%}), max {max(rss) / 2**20:.1f} MiB")
    runner_rss = [s.runner_rss for s in run.samples if s.runners]
    if runner_rss:
        print(
            f"runner RSS (all live runners): start {runner_rss[0] / 2**20:.1f} MiB, end {runner_rss[-1] / 2**20:.1f} MiB, median {statistics.median(runner_rss) / 2**20:.1f} MiB"
        )
    print(f"front open fds: start {first.front_fds}, end {last.front_fds}, max {max(s.front_fds for s in run.samples)}")
    for problem in run.problems:
        print(f"problem: {problem}")
    print(f"after the server stopped: {after_stop or 'no runner process, no socket file'}")
    ok = not errors and not run.problems and not after_stop and growth < 0.10 and last.front_fds <= first.front_fds + 5
    print("PASS" if ok else "FAIL")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="traffic time (10 for the figures in bench/README.md)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent clients")
    parser.add_argument("--kill-every", type=float, default=40.0, help="mean seconds between runner kills")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds a request may take before it counts as hung")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ollamapy-soak-") as tmp:
        tmpdir = Path(tmp)
        env = {"TMPDIR": tmp, "OLLAMA_MAX_LOADED_MODELS": "1", "OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KEEP_ALIVE": "5m"}
        with running_server(env) as url:
            run = asyncio.run(soak(args, url, tmpdir, front_process(url)))
        left, sockets = [p.pid for p in runner_processes(tmpdir)], runner_sockets(tmpdir)
        after_stop = f"runner pids {left}, sockets {sockets}" if left or sockets else ""
    return 0 if report(run, args, after_stop, time.monotonic() - started) else 1


if __name__ == "__main__":
    sys.exit(main())
