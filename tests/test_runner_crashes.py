"""A runner that dies at any moment: every answer is well formed and the next request is served.

asyncio learns that a runner died only when its child watcher reaps it, so for a while a
killed runner still looks loaded. Whatever the timing, a request that lost its runner
before its answer started runs again on a fresh load (the user sees a normal answer), a
stream under way ends with the crash as its error line, and no runner process, zombie or
socket file stays behind. A model that cannot load answers with the load error. These
tests kill real runners on the tiny GGUF at chosen moments (SIGKILL, and SIGABRT standing
in for an abort inside llama.cpp); ``bench/crash_stress.py`` kills at random moments,
under CPU load, many times over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from ollamapy.api.options import LoadOptions
from ollamapy.errors import RunnerCrashed
from ollamapy.store.model import Model
from ollamapy.store.model_store import MEDIA_TYPE_CONFIG, Layer, Manifest
from ollamapy.store.names import ModelName
from ollamapy.supervisor.app_keys import SCHEDULER
from ollamapy.supervisor.runner_process import CRASH_MESSAGE, RunnerProcess
from ollamapy.supervisor.scheduler import LoadedRunner, LoadRequest, Scheduler
from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import FakeReply, FakeRunnerFactory

ENDLESS = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}
"""A format the tiny model cannot finish: the stream runs until its runner dies."""
OPTIONS = {"num_ctx": 8192, "temperature": 1.0, "seed": 1}
"""Load-time options every request repeats, so that none of them reloads the model."""
LONG = {"format": ENDLESS, "options": {**OPTIONS, "num_predict": 100_000}}
SHORT = {"prompt": "the sky is", "stream": False, "options": {**OPTIONS, "num_predict": 3}}


# -- the scheduler and the service, on fakes --------------------------------------------


class _Unreaped:
    """A runner whose process died but was not reaped yet: ``has_exited`` still says no."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.closed = False

    def has_exited(self) -> bool:
        return self.closed

    async def close(self, timeout: float = 5.0) -> None:
        self.closed = True


async def test_a_runner_that_failed_a_request_is_dropped_before_it_is_reaped(tmp_path: Path) -> None:
    handles: list[_Unreaped] = []

    async def factory(_request: LoadRequest) -> _Unreaped:
        handles.append(_Unreaped(len(handles) + 1))
        return handles[-1]

    scheduler = Scheduler(factory)
    config = Layer(media_type=MEDIA_TYPE_CONFIG, digest="sha256:" + "0" * 64, size=2)
    model = Model(name=ModelName.parse("tiny"), manifest=Manifest(config=config, layers=[]), config={}, digest="tiny",
                  modified_at=datetime.now(UTC), model_path=tmp_path / "tiny.gguf")
    request = LoadRequest(model=model, options=LoadOptions(num_ctx=2048))
    with pytest.raises(RunnerCrashed):
        async with scheduler.lease(request, None):
            raise RunnerCrashed(CRASH_MESSAGE)
    assert handles[0].closed and scheduler.loaded() == []
    async with scheduler.lease(request, None) as runner:
        assert runner.handle is handles[1]


async def test_a_crash_before_the_first_chunk_is_retried_once_on_a_fresh_runner(
    fake_client: TestClient, fake_runners: FakeRunnerFactory, tiny_gguf: Path
) -> None:
    await create_model(fake_client, "tiny", tiny_gguf, template="{{ .Prompt }}")
    crashes = [FakeReply(fail_after=0)]
    fake_runners.reply = lambda _request: crashes.pop() if crashes else FakeReply()
    resp = await fake_client.post("/api/generate", json={"model": "tiny", "prompt": "x"})
    assert resp.status == 200
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert "".join(line["response"] for line in lines) == "Hello world!" and lines[-1]["done"] is True
    assert len(fake_runners.started) == 2 and fake_runners.started[0].has_exited()


# -- real runners -------------------------------------------------------------------------


@pytest.fixture
def client(two_slot_client: TestClient) -> TestClient:
    return two_slot_client


def _loaded(client: TestClient) -> LoadedRunner:
    (runner,) = client.app[SCHEDULER].loaded()
    return runner


def _process(runner: LoadedRunner) -> RunnerProcess:
    assert isinstance(runner.handle, RunnerProcess)
    return runner.handle


async def _load(client: TestClient) -> RunnerProcess:
    assert (await client.post("/api/generate", json={"model": "tiny", "prompt": "", "stream": False, "options": OPTIONS})).status == 200
    return _process(_loaded(client))


async def _served(client: TestClient) -> None:
    """The next request gets a normal answer."""
    resp = await client.post("/api/generate", json={"model": "tiny", **SHORT})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["done"] is True and body["eval_count"] == 3


def _runner_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "ollamapy.runner" in p.cmdline()]


def _left_behind(client: TestClient, socket_dir: Path) -> tuple[list[int], list[Path]]:
    """Runner processes and socket files that belong to no loaded runner."""
    loaded = client.app[SCHEDULER].loaded()
    pids = {r.handle.pid for r in loaded}
    sockets = {_process(r).socket_path for r in loaded}
    return [p.pid for p in _runner_children() if p.pid not in pids], [s for s in socket_dir.iterdir() if s not in sockets]


async def _assert_nothing_left_behind(client: TestClient, socket_dir: Path) -> None:
    """Only the loaded runners' processes and sockets exist: no other runner, zombie or socket.
    A runner leaves the table when its unload starts and its socket goes once the process is
    reaped, so this waits for unloads under way; one that never finishes fails here."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while _left_behind(client, socket_dir) != ([], []):
                await asyncio.sleep(0.02)
    assert _left_behind(client, socket_dir) == ([], [])


async def _stream_lines(resp: ClientResponse) -> list[dict[str, Any]]:
    assert resp.status == 200, await resp.text()
    return [json.loads(line) for line in (await resp.text()).splitlines() if line.strip()]


def _kill(runner: RunnerProcess, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(runner.pid, sig)



@pytest.mark.serving
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT], ids=["SIGKILL", "SIGABRT"])
async def test_killed_between_requests_the_next_request_is_served(client: TestClient, sig: signal.Signals) -> None:
    runner = await _load(client)
    _kill(runner, sig)  # the next request goes out before anybody noticed the death
    await _served(client)
    assert _loaded(client).handle is not runner
    await _assert_nothing_left_behind(client, runner.socket_path.parent)


@pytest.mark.serving
async def test_killed_while_loading_the_request_is_answered_by_a_fresh_load(client: TestClient) -> None:
    request = asyncio.create_task(client.post("/api/generate", json={"model": "tiny", **SHORT}))
    async with asyncio.timeout(60):
        while not (children := _runner_children()):
            await asyncio.sleep(0.005)
    children[0].kill()
    resp = await request
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["done"] is True
    await _assert_nothing_left_behind(client, _process(_loaded(client)).socket_path.parent)


@pytest.mark.serving
async def test_killed_during_prompt_evaluation_the_request_is_answered_by_a_fresh_load(client: TestClient) -> None:
    runner = await _load(client)
    body = {"model": "tiny", "prompt": "the sky is blue and " * 800, "stream": False, "options": {**OPTIONS, "num_predict": 2}}
    request = asyncio.create_task(client.post("/api/generate", json=body))
    async with asyncio.timeout(60):
        while not (await runner.health()).prompt_tokens_pending:
            assert not request.done(), "the prompt was evaluated before the test looked"
            await asyncio.sleep(0.005)
    _kill(runner)
    resp = await request
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["done"] is True
    await _assert_nothing_left_behind(client, runner.socket_path.parent)


@pytest.mark.serving
async def test_two_streams_and_an_embedding_in_flight(client: TestClient) -> None:
    runner = await _load(client)
    generate = await client.post("/api/generate", json={"model": "tiny", "prompt": "the sky is", **LONG})
    chat = await client.post("/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **LONG})
    for resp in (generate, chat):  # both are decoding
        assert json.loads(await resp.content.readline())["done"] is False
    embed = asyncio.create_task(client.post("/api/embed", json={"model": "tiny", "input": "the sky is blue", "options": OPTIONS}))
    _kill(runner)
    for resp in (generate, chat):
        assert (await _stream_lines(resp))[-1]["error"].startswith(CRASH_MESSAGE)
    answer = await embed
    assert answer.status == 200, await answer.text()
    assert len((await answer.json())["embeddings"]) == 1
    await _served(client)
    await _assert_nothing_left_behind(client, runner.socket_path.parent)


@pytest.mark.serving
async def test_killed_while_idle_under_a_keep_alive_timer(client: TestClient) -> None:
    resp = await client.post("/api/generate", json={"model": "tiny", **SHORT, "keep_alive": "1s"})
    assert resp.status == 200
    runner = _process(_loaded(client))
    _kill(runner)
    async with asyncio.timeout(30):  # the timer fires on a dead runner, and unloads it
        while client.app[SCHEDULER].loaded():
            await asyncio.sleep(0.02)
    await _assert_nothing_left_behind(client, runner.socket_path.parent)
    await _served(client)


@pytest.mark.serving
async def test_a_model_that_cannot_load_answers_with_the_load_error(client: TestClient, tiny_gguf: Path, tmp_path: Path) -> None:
    # One layer more than the file has tensors for: the store accepts it, llama.cpp does not.
    data = bytearray(tiny_gguf.read_bytes())
    value_at = data.index(b"llama.block_count") + len(b"llama.block_count") + 4  # after the key and its type
    struct.pack_into("<I", data, value_at, struct.unpack_from("<I", data, value_at)[0] + 1)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data)
    await create_model(client, "broken", broken, template="{{ .Prompt }}")
    resp = await client.post("/api/generate", json={"model": "broken", "prompt": "x"})
    assert resp.status == 500  # as Ollama answers a failed load
    assert (await resp.json())["error"].startswith("llama runner process has terminated: exit status")
    assert _runner_children() == [] and client.app[SCHEDULER].loaded() == []
    runner = await _load(client)  # the server still serves other models
    await _assert_nothing_left_behind(client, runner.socket_path.parent)

