"""Scheduler policy with fake runners: reuse, reload, keep_alive, eviction, queue bound."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ollamapy.api.options import LoadOptions
from ollamapy.errors import QueueFull, RunnerCrashed
from ollamapy.store.model import Model
from ollamapy.store.model_store import MEDIA_TYPE_CONFIG, Layer, Manifest
from ollamapy.store.names import ModelName
from ollamapy.supervisor.scheduler import LoadRequest, Scheduler, needs_reload


class FakeRunner:
    """Stands in for a runner process: records whether it was closed."""

    _next_pid = 1000

    def __init__(self, request: LoadRequest) -> None:
        FakeRunner._next_pid += 1
        self.pid = FakeRunner._next_pid
        self.request = request
        self.closed = False
        self.dead = False

    def has_exited(self) -> bool:
        return self.closed or self.dead

    async def close(self, timeout: float = 5.0) -> None:
        self.closed = True


class Factory:
    def __init__(self) -> None:
        self.started: list[FakeRunner] = []

    async def __call__(self, request: LoadRequest) -> FakeRunner:
        runner = FakeRunner(request)
        self.started.append(runner)
        return runner

    def names(self) -> list[str]:
        return [r.request.model.short_name for r in self.started]


def make_model(name: str) -> Model:
    config = Layer(media_type=MEDIA_TYPE_CONFIG, digest="sha256:" + "0" * 64, size=2)
    return Model(
        name=ModelName.parse(name),
        manifest=Manifest(config=config, layers=[]),
        config={},
        digest=name,
        modified_at=datetime.now(UTC),
        model_path=Path(f"/models/{name}.gguf"),
    )


def req(name: str, parallel: int = 1, **opts: object) -> LoadRequest:
    return LoadRequest(model=make_model(name), options=LoadOptions(num_ctx=2048, **opts), num_parallel=parallel)


async def use(scheduler: Scheduler, request: LoadRequest, keep_alive: float | None = None) -> None:
    async with scheduler.lease(request, keep_alive):
        pass


async def until(predicate: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_loaded_model_is_reused() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    await use(scheduler, req("a"))
    await use(scheduler, req("a"))
    assert factory.names() == ["a:latest"]
    assert len(scheduler.loaded()) == 1


async def test_load_option_change_reloads_but_runtime_and_smaller_ctx_do_not() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    await use(scheduler, req("a"))
    small = LoadRequest(model=make_model("a"), options=LoadOptions(num_ctx=1024))
    await use(scheduler, small)
    assert len(factory.started) == 1
    await use(scheduler, req("a", num_batch=64))
    assert len(factory.started) == 2 and factory.started[0].closed


def test_needs_reload_rules() -> None:
    base = LoadOptions(num_ctx=4096, num_gpu=10)
    assert not needs_reload(base, LoadOptions(num_ctx=2048, num_gpu=10))
    assert needs_reload(base, LoadOptions(num_ctx=8192, num_gpu=10))
    assert not needs_reload(base, LoadOptions(num_ctx=4096, num_gpu=-1))
    assert needs_reload(base, LoadOptions(num_ctx=4096, num_gpu=5))
    assert needs_reload(base, LoadOptions(num_ctx=4096, num_gpu=10, use_mmap=False))


async def test_keep_alive_expiry_unloads() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    await use(scheduler, req("a"), keep_alive=0.05)
    await until(lambda: factory.started[0].closed)
    assert scheduler.loaded() == []


async def test_keep_alive_zero_unloads_after_request_and_absent_keeps_duration() -> None:
    factory = Factory()
    scheduler = Scheduler(factory, default_keep_alive=300)
    await use(scheduler, req("a"), keep_alive=math.inf)
    await use(scheduler, req("a"))  # absent: keeps forever
    assert scheduler.loaded()[0].keep_alive == math.inf
    await use(scheduler, req("a"), keep_alive=0)
    assert factory.started[0].closed and scheduler.loaded() == []


async def test_unload_request_waits_for_in_flight() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    request = req("a")
    async with scheduler.lease(request, None):
        assert await scheduler.unload(request.model)
        assert not factory.started[0].closed
    assert factory.started[0].closed


async def test_eviction_picks_shortest_keep_alive_then_lru_forever_last() -> None:
    factory = Factory()
    scheduler = Scheduler(factory, max_loaded=3)
    await use(scheduler, req("forever"), keep_alive=math.inf)
    await use(scheduler, req("old"), keep_alive=60)
    await use(scheduler, req("new"), keep_alive=60)
    await use(scheduler, req("d"), keep_alive=60)  # evicts "old": same keep_alive as "new", used earlier
    assert {r.model.short_name for r in scheduler.loaded()} == {"forever:latest", "new:latest", "d:latest"}
    await use(scheduler, req("short"), keep_alive=1)  # evicts new (LRU among the 60 s ones)
    await use(scheduler, req("e"), keep_alive=60)  # evicts "short" (shortest keep_alive)
    names = {r.model.short_name for r in scheduler.loaded()}
    assert names == {"forever:latest", "d:latest", "e:latest"}


async def test_max_loaded_one_waits_for_busy_runner_to_drain() -> None:
    factory = Factory()
    scheduler = Scheduler(factory, max_loaded=1)
    first = req("a")
    async with scheduler.lease(first, None):
        other = asyncio.create_task(use(scheduler, req("b")))
        await asyncio.sleep(0.05)
        assert not other.done() and factory.names() == ["a:latest"]
    await other
    assert factory.names() == ["a:latest", "b:latest"] and factory.started[0].closed


async def test_load_waiting_for_a_busy_runner_proceeds_when_that_runner_dies() -> None:
    factory = Factory()
    scheduler = Scheduler(factory, max_loaded=1)
    with pytest.raises(RunnerCrashed):
        async with scheduler.lease(req("a"), None):
            other = asyncio.create_task(use(scheduler, req("b")))
            await until(lambda: scheduler.waiting == 1)
            factory.started[0].dead = True
            raise RunnerCrashed("model runner has unexpectedly stopped")
    await asyncio.wait_for(other, 5)
    assert factory.names() == ["a:latest", "b:latest"]


async def test_queue_bound_counts_requests_waiting_for_a_busy_runner() -> None:
    factory = Factory()
    scheduler = Scheduler(factory, max_queue=1)
    async with scheduler.lease(req("a"), None):
        waiter = asyncio.create_task(use(scheduler, req("a")))
        await until(lambda: scheduler.waiting == 1)
        with pytest.raises(QueueFull) as err:
            await use(scheduler, req("a"))
        assert err.value.status_code == 503
        assert str(err.value) == "server busy, please try again.  maximum pending requests exceeded"
    await waiter
    assert scheduler.waiting == 0


async def test_parallel_slots_serve_concurrently() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    request = req("a", parallel=2)
    async with scheduler.lease(request, None), scheduler.lease(request, None):
        assert scheduler.loaded()[0].ref_count == 2


async def test_dead_runner_is_replaced_on_next_request() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    await use(scheduler, req("a"))
    factory.started[0].dead = True
    await use(scheduler, req("a"))
    assert len(factory.started) == 2
    assert [r.handle for r in scheduler.loaded()] == [factory.started[1]]


async def test_cancelled_waiter_gives_its_claim_back() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    request = req("a")
    async with scheduler.lease(request, None):
        waiter = asyncio.create_task(use(scheduler, request))
        await until(lambda: scheduler.waiting == 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert scheduler.loaded()[0].ref_count == 1
    assert scheduler.loaded()[0].ref_count == 0


async def test_stop_closes_every_runner() -> None:
    factory = Factory()
    scheduler = Scheduler(factory)
    await use(scheduler, req("a"))
    await use(scheduler, req("b"))
    await scheduler.stop()
    assert all(r.closed for r in factory.started) and scheduler.loaded() == []
