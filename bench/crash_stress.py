"""Crash stress: SIGKILL the runner at random moments, under CPU load, and check every answer.

A real ollamapy server on loopback (``bench._server.running_server``) serves a model while
CPU hogs (``timeout``-bounded busy loops, one per core by default) compete for the cores.
Each trial picks a moment, kills the model's runner process with a signal there, and then
checks what a user would see:

* ``load``: while a runner starts (a request for an unloaded model is in flight);
* ``prompt``: while a long prompt is evaluated (the runner's ``/health`` shows it pending);
* ``decode``: mid-stream, after a random number of chunks;
* ``idle``: between requests, the next request sent right after the kill;
* ``concurrent``: two streams and an embedding in flight at once;
* ``expiry``: around the moment a 1 s ``keep_alive`` runs out.

Every stream must end with ``done: true`` or an error line, no answer may be a 500, the
next request must be answered, and no runner process (nor zombie) or socket file may be
left behind, during the run and after the server stops. Prints a table by kill moment and
exits 1 if anything went wrong.

    .venv/bin/python -m bench.crash_stress [--trials 60] [--model tiny|gemma3:270m]
        [--signal KILL|ABRT] [--hogs N] [--seed 0] [--budget 900]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench._server import MODEL as GEMMA
from bench._server import running_server
from ollamapy.testing.api import create_model
from ollamapy.testing.tiny_gguf import write_tiny_gguf

__all__ = ["main"]

MOMENTS = ("load", "prompt", "decode", "idle", "concurrent", "expiry")
ENDLESS = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}
"""A format the tiny model cannot finish early: its streams run to ``num_predict``."""
REQUEST_TIMEOUT = 120.0


@dataclass
class Model:
    """How the run talks to its model: name, load-time options every request repeats (so
    none triggers a reload), a long stream's body and a long prompt."""

    name: str
    options: dict[str, Any]
    long_stream: dict[str, Any]
    long_prompt: str


def tiny_model() -> Model:
    options = {"num_ctx": 8192, "temperature": 1.0, "seed": 1}
    # Long enough to be killed mid-stream, short enough that a stream retried on a fresh
    # runner (it was killed before its first chunk) ends in a few seconds.
    return Model("tiny", options, {"format": ENDLESS, "options": {**options, "num_predict": 1000}}, "the sky is blue and " * 1500)


def gemma_model() -> Model:
    options = {"num_ctx": 4096, "temperature": 1.0, "seed": 1}
    return Model(GEMMA, options, {"options": {**options, "num_predict": 400}}, "Tell me a story about the sea. " * 250)


@dataclass
class Answer:
    """One answer as the client saw it."""

    status: int
    end: str
    """``done``, ``error`` (an error line or body), ``silent`` (ended with neither), ``cut``
    (the connection broke), ``hung`` (no end within the timeout)."""
    message: str = ""


@dataclass
class Trial:
    moment: str
    answers: list[Answer] = field(default_factory=list)
    killed: bool = False
    next_ok: bool = False
    leftover: str = ""


def runner_processes(tmpdir: Path) -> list[psutil.Process]:
    """Runner processes whose socket is under ``tmpdir`` (the server's), zombies included."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "ollamapy.runner" in cmdline and any(arg.startswith(str(tmpdir)) for arg in cmdline):
            found.append(proc)
    return found


def runner_sockets(tmpdir: Path) -> list[Path]:
    return list(tmpdir.glob("ollamapy-runners-*/*.sock"))


class Server:
    """The server under test: its URL, its runners (found by the socket directory in their
    command line) and the session the trials use."""

    def __init__(self, url: str, tmpdir: Path, session: aiohttp.ClientSession, model: Model) -> None:
        self.url = url
        self.tmpdir = tmpdir
        self.session = session
        self.model = model

    def runners(self) -> list[psutil.Process]:
        return runner_processes(self.tmpdir)

    def live_runners(self) -> list[psutil.Process]:
        alive = []
        for proc in self.runners():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        return alive

    def sockets(self) -> list[Path]:
        return runner_sockets(self.tmpdir)

    async def health(self, proc: psutil.Process) -> dict[str, Any] | None:
        """The runner's ``/health`` over its socket (None if it does not answer)."""
        try:
            cmdline = proc.cmdline()
            socket_path = cmdline[cmdline.index("--socket") + 1]
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path)) as runner,
                runner.get("http://runner/health", timeout=aiohttp.ClientTimeout(total=2)) as resp,
            ):
                return dict(await resp.json())
        except (TimeoutError, psutil.Error, ValueError, IndexError, aiohttp.ClientError, OSError):
            return None

    async def post(self, path: str, body: dict[str, Any], progress: asyncio.Queue[int] | None = None) -> Answer:
        """POST and read the answer to its end; stream lines are counted into ``progress``."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                async with self.session.post(f"{self.url}{path}", json={"model": self.model.name, **body}) as resp:
                    if resp.status != 200:
                        return Answer(resp.status, "error", await resp.text())
                    last: dict[str, Any] = {}
                    count = 0
                    async for line in resp.content:
                        if line.strip():
                            last = json.loads(line)
                            count += 1
                            if progress is not None:
                                progress.put_nowait(count)
            if "error" in last:
                return Answer(200, "error", str(last["error"]))
            return Answer(200, "done" if last.get("done") or "embeddings" in last else "silent", json.dumps(last)[:200])
        except aiohttp.ClientPayloadError as err:
            return Answer(200, "cut", str(err))
        except TimeoutError:
            return Answer(0, "hung")

    async def wait_for_runner(self, exclude: frozenset[int] = frozenset()) -> psutil.Process:
        async with asyncio.timeout(60):
            while True:
                fresh = [p for p in self.live_runners() if p.pid not in exclude]
                if fresh:
                    return fresh[0]
                await asyncio.sleep(0.005)


async def _until_lines(progress: asyncio.Queue[int], lines: int, reader: asyncio.Task[Answer]) -> bool:
    """Wait until a stream has sent ``lines`` lines (False if it ended first)."""
    while not reader.done():
        getter = asyncio.ensure_future(progress.get())
        await asyncio.wait([getter, reader], return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
        elif getter.result() >= lines:
            return True
    return False


def _kill(proc: psutil.Process | None, sig: signal.Signals) -> bool:
    if proc is None:
        return False
    try:
        proc.send_signal(sig)
        return True
    except psutil.NoSuchProcess:
        return False


async def _loaded(server: Server) -> psutil.Process:
    """Make sure the model is loaded; return its runner."""
    answer = await server.post("/api/generate", {"prompt": "", "stream": False, "options": server.model.options})
    assert answer.end == "done", answer
    return await server.wait_for_runner()


async def run_trial(server: Server, moment: str, sig: signal.Signals, rng: random.Random) -> Trial:
    """One kill at ``moment``, then the checks of the module docstring."""
    trial = Trial(moment)
    model = server.model
    short = {"prompt": "the sky is", "stream": False, "options": {**model.options, "num_predict": 3}}
    if moment == "load":
        await server.post("/api/generate", {"prompt": "", "keep_alive": 0})
        before = {p.pid for p in server.live_runners()}
        reader = asyncio.create_task(server.post("/api/generate", {"prompt": "the sky is", "options": {**model.options, "num_predict": 8}}))
        runner = await server.wait_for_runner(frozenset(before))
        await asyncio.sleep(rng.uniform(0, 0.3))
        trial.killed = _kill(runner, sig)
        trial.answers.append(await reader)
    elif moment == "prompt":
        runner = await _loaded(server)
        reader = asyncio.create_task(server.post("/api/generate", {"prompt": model.long_prompt, "raw": True, "options": {**model.options, "num_predict": 4}}))
        async with asyncio.timeout(60):
            while not reader.done() and not ((await server.health(runner)) or {}).get("prompt_tokens_pending"):
                await asyncio.sleep(0.005)
        trial.killed = _kill(runner, sig) if not reader.done() else False
        trial.answers.append(await reader)
    elif moment == "decode":
        runner = await _loaded(server)
        progress: asyncio.Queue[int] = asyncio.Queue()
        reader = asyncio.create_task(server.post("/api/generate", {"prompt": "the sky is", **model.long_stream}, progress))
        if await _until_lines(progress, rng.randint(1, 30), reader):
            trial.killed = _kill(runner, sig)
        trial.answers.append(await reader)
    elif moment == "idle":
        runner = await _loaded(server)
        trial.killed = _kill(runner, sig)
    elif moment == "concurrent":
        runner = await _loaded(server)
        progress = asyncio.Queue()
        readers = [
            asyncio.create_task(server.post("/api/generate", {"prompt": "the sky is", **model.long_stream}, progress)),
            asyncio.create_task(server.post("/api/chat", {"messages": [{"role": "user", "content": "hello"}], **model.long_stream})),
            asyncio.create_task(server.post("/api/embed", {"input": ["the sky is blue"] * 4, "options": model.options})),
        ]
        if await _until_lines(progress, rng.randint(1, 10), readers[0]):
            trial.killed = _kill(runner, sig)
        trial.answers.extend(await asyncio.gather(*readers))
    elif moment == "expiry":
        await server.post("/api/generate", {**short, "keep_alive": "1s"})
        runner = await server.wait_for_runner()
        await asyncio.sleep(rng.uniform(0.8, 1.2))
        trial.killed = _kill(runner, sig)
    trial.answers.append(await server.post("/api/generate", short))
    trial.next_ok = trial.answers[-1].status == 200 and trial.answers[-1].end == "done"
    trial.leftover = await _settled(server)
    return trial


async def _settled(server: Server, patience: float = 10.0) -> str:
    """What is left behind once things settle: more than one live runner, a zombie, or
    socket files without a runner ("" when clean)."""
    deadline = time.monotonic() + patience
    while True:
        live = server.live_runners()
        zombies = len(server.runners()) - len(live)
        sockets = len(server.sockets())
        problem = ""
        if len(live) > 1 or zombies or sockets > len(live):
            problem = f"{len(live)} live runners, {zombies} zombies, {sockets} sockets"
        if not problem or time.monotonic() > deadline:
            return problem
        await asyncio.sleep(0.1)


def report(trials: list[Trial], after_stop: str, sig: signal.Signals, model: str, hogs: int, seconds: float) -> bool:
    """Print the figures; True when every check held."""
    print(f"\n{len(trials)} trials, SIG{sig.name.removeprefix('SIG')} to the runner, model {model}, {hogs} CPU hogs, "
          f"{seconds:.0f} s, load average {os.getloadavg()[0]:.1f}")
    header = ("moment", "trials", "killed", "answers", "done", "error", "500s", "silent", "cut/hung", "next ok", "leftover")
    print("  ".join(f"{h:>10}" for h in header))
    rows: dict[str, list[Trial]] = collections.defaultdict(list)
    for trial in trials:
        rows[trial.moment].append(trial)
    totals = collections.Counter[str]()
    for moment in [*MOMENTS, "all"]:
        group = trials if moment == "all" else rows.get(moment, [])
        if not group:
            continue
        answers = [a for t in group for a in t.answers]
        row = {
            "trials": len(group),
            "killed": sum(t.killed for t in group),
            "answers": len(answers),
            "done": sum(a.end == "done" for a in answers),
            "error": sum(a.end == "error" for a in answers),
            "500s": sum(a.status == 500 for a in answers),
            "silent": sum(a.end == "silent" for a in answers),
            "cut/hung": sum(a.end in ("cut", "hung") for a in answers),
            "next ok": sum(t.next_ok for t in group),
            "leftover": sum(bool(t.leftover) for t in group),
        }
        if moment == "all":
            totals.update(row)
        print("  ".join(f"{v:>10}" for v in [moment, *row.values()]))
    messages = collections.Counter(f"{a.status} {a.message[:110]}" for t in trials for a in t.answers if a.end != "done")
    if messages:
        print("\nanswers that were not `done` (status, message):")
        for message, count in messages.most_common():
            print(f"  {count:4d} × {message}")
    for trial in trials:
        if trial.leftover:
            print(f"  leftover after a {trial.moment} trial: {trial.leftover}")
    print(f"after the server stopped: {after_stop or 'no runner process, no socket file'}")
    ok = (totals["500s"] == 0 and totals["silent"] == 0 and totals["cut/hung"] == 0 and totals["next ok"] == totals["trials"]
          and totals["leftover"] == 0 and not after_stop)
    print("verdict:", "every check held" if ok else "FAILED")
    return ok


async def run(args: argparse.Namespace, url: str, tmpdir: Path) -> list[Trial]:
    model = gemma_model() if args.model == GEMMA else tiny_model()
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.budget
    async with aiohttp.ClientSession() as session:
        if args.model != GEMMA:
            await create_model(session, model.name, write_tiny_gguf(tmpdir / "tiny.gguf"), base=url, template="{{ .Prompt }}")
        server = Server(url, tmpdir, session, model)
        moments = [MOMENTS[i % len(MOMENTS)] for i in range(args.trials)]
        rng.shuffle(moments)
        trials = []
        for number, moment in enumerate(moments, 1):
            if time.monotonic() > deadline:
                print(f"time budget spent after {number - 1} trials")
                break
            trial = await run_trial(server, moment, signal.Signals[f"SIG{args.signal}"], rng)
            trials.append(trial)
            bad = [a for a in trial.answers if a.status == 500 or a.end in ("silent", "cut", "hung")]
            mark = "!" if bad or not trial.next_ok or trial.leftover else "."
            print(f"{mark}", end="", flush=True)
        return trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60, help="kills (≥ 50 for the figures in bench/README.md)")
    parser.add_argument("--model", default="tiny", choices=["tiny", GEMMA])
    parser.add_argument("--signal", default="KILL", choices=["KILL", "ABRT"], help="ABRT stands in for an abort inside llama.cpp")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy-loop processes competing for the cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds; the run stops starting trials after it")
    args = parser.parse_args(argv)
    started = time.monotonic()
    hog_seconds = str(int(args.budget + 180))
    hogs = [subprocess.Popen(["timeout", hog_seconds, sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        with tempfile.TemporaryDirectory(prefix="ollamapy-crash-") as tmp:
            tmpdir = Path(tmp)
            env = {"TMPDIR": tmp, "OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KEEP_ALIVE": "5m"}
            with running_server(env) as url:
                trials = asyncio.run(run(args, url, tmpdir))
            left, sockets = [p.pid for p in runner_processes(tmpdir)], runner_sockets(tmpdir)
            after_stop = f"runner pids {left}, sockets {sockets}" if left or sockets else ""
    finally:
        for hog in hogs:
            hog.terminate()
            hog.wait()
    return 0 if report(trials, after_stop, signal.Signals[f"SIG{args.signal}"], args.model, args.hogs, time.monotonic() - started) else 1


if __name__ == "__main__":
    sys.exit(main())

