"""Memory-aware scheduling: the real planner (``RunnerStarter.plan``) on simulated
inventories injected at the probing boundary, with fake runners (and, in the ``serving``
test, real ones).

The simulated probe never shows what a runner holds (free memory stays at total), so every
test also checks that the scheduler counts the loaded runners' plans itself.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ollamapy.api.options import LoadOptions
from ollamapy.errors import RunnerCrashed
from ollamapy.store.model import Model
from ollamapy.store.model_store import MEDIA_TYPE_CONFIG, Layer, Manifest
from ollamapy.store.names import ModelName
from ollamapy.supervisor import serving
from ollamapy.supervisor.placement.gpu_probe import GpuInfo, Inventory, SystemMemory
from ollamapy.supervisor.placement.plan import FIT_FRACTION, InsufficientMemory, Placement, placement_for
from ollamapy.supervisor.scheduler import LoadRequest, Scheduler
from ollamapy.supervisor.serving import RunnerStarter
from ollamapy.testing.tiny_gguf import write_tiny_gguf

GIB = 1 << 30
OOM = "llama runner process has terminated: exit status 1: ggml_backend_cuda_buffer_type_alloc_buffer: allocating 900.00 MiB on device 0: cudaMalloc failed: out of memory"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_GPU_OVERHEAD", "OLLAMA_SCHED_SPREAD", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_NUM_PARALLEL"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="module")
def gguf_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny models of the same size (distinct files, so distinct runners)."""
    root = tmp_path_factory.mktemp("sched-memory")
    return {name: write_tiny_gguf(root / f"{name}.gguf") for name in ("a", "b")}


def make_model(name: str, path: Path) -> Model:
    config = Layer(media_type=MEDIA_TYPE_CONFIG, digest="sha256:" + "0" * 64, size=2)
    return Model(
        name=ModelName.parse(name),
        manifest=Manifest(config=config, layers=[]),
        config={},
        digest=name,
        modified_at=datetime.now(UTC),
        model_path=path,
    )


class Probe:
    """The probing boundary: answers ``inventory`` however many runners are loaded."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def __call__(self, *, refresh: bool = False) -> Inventory:
        return self.inventory


class FakeRunner:
    _next_pid = 2000

    def __init__(self, request: LoadRequest) -> None:
        FakeRunner._next_pid += 1
        self.pid = FakeRunner._next_pid
        self.request = request
        self.closed = False

    @property
    def placement(self) -> Placement | None:
        return self.request.placement

    def has_exited(self) -> bool:
        return self.closed

    async def close(self, timeout: float = 5.0) -> None:
        self.closed = True


class Factory:
    """Starts fake runners where the scheduler planned them; ``fail`` answers a load with an error."""

    def __init__(self, fail: Callable[[LoadRequest], Exception | None] = lambda _: None) -> None:
        self.started: list[FakeRunner] = []
        self.fail = fail

    async def __call__(self, request: LoadRequest) -> FakeRunner:
        error = self.fail(request)
        if error is not None:
            raise error
        runner = FakeRunner(request)
        self.started.append(runner)
        return runner


class CountingPlanner(RunnerStarter):
    """The real planner, counting its plans (a plan means the request reached the memory check)."""

    def __init__(self, socket_dir: Path) -> None:
        super().__init__(socket_dir, load_timeout=5.0)
        self.plans = 0

    async def plan(self, request: LoadRequest, loaded: Sequence[Placement]) -> Placement:
        self.plans += 1
        return await super().plan(request, loaded)


@pytest.fixture
def requests(gguf_paths: dict[str, Path]) -> dict[str, LoadRequest]:
    return {name: LoadRequest(model=make_model(name, path), options=LoadOptions(num_ctx=512)) for name, path in gguf_paths.items()}


ROOMY = Inventory(gpus=(GpuInfo(vendor="nvidia", total=80 * GIB, id="big"),), system=SystemMemory(total=64 * GIB, free=64 * GIB))


def plan_on(request: LoadRequest, inventory: Inventory) -> Placement:
    """The real plan for one model alone on ``inventory`` (its estimate, sizes and reserve)."""
    assert request.model.gguf is not None
    return placement_for(request.model.gguf, request.options, request.num_parallel, inventory)


def one_model_gpu(request: LoadRequest) -> Inventory:
    """One GPU with room for one of the models (1.5 × its need usable) but not for two."""
    alone = plan_on(request, ROOMY)
    free = alone.estimate.reserve + math.ceil(1.5 * alone.size_vram / FIT_FRACTION)
    return Inventory(gpus=(GpuInfo(vendor="nvidia", total=free, id="GPU-0", name="Simulated"),), system=ROOMY.system)


@pytest.fixture
def simulate(monkeypatch: pytest.MonkeyPatch) -> Callable[[Inventory], None]:
    """Install an inventory at the probing boundary the real planner calls."""

    def install(inventory: Inventory) -> None:
        monkeypatch.setattr(serving, "probe_inventory", Probe(inventory))

    return install


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition the scheduler reaches by itself (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def on_gpu(runner: FakeRunner) -> bool:
    placement = runner.request.placement
    return placement is not None and placement.processor == "100% GPU"


async def test_model_that_does_not_fit_beside_an_idle_one_evicts_it_instead_of_going_to_cpu(
    requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None], tmp_path: Path
) -> None:
    simulate(one_model_gpu(requests["a"]))
    factory = Factory()
    scheduler = Scheduler(factory, planner=RunnerStarter(tmp_path, load_timeout=5.0))
    async with scheduler.lease(requests["a"], None):
        pass
    async with scheduler.lease(requests["b"], None):
        pass
    first, second = factory.started
    assert first.closed and on_gpu(first)
    assert on_gpu(second) and not second.closed
    assert [r.model.short_name for r in scheduler.loaded()] == ["b:latest"]


async def test_model_that_does_not_fit_beside_a_busy_one_waits_then_loads_on_gpu(
    requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None], tmp_path: Path
) -> None:
    simulate(one_model_gpu(requests["a"]))
    factory, planner = Factory(), CountingPlanner(tmp_path)
    scheduler = Scheduler(factory, planner=planner)
    async with scheduler.lease(requests["a"], None):
        second = asyncio.create_task(_use(scheduler, requests["b"]))
        await until(lambda: planner.plans == 2)  # b was planned beside a, and did not fit
        assert not second.done()
        assert len(factory.started) == 1 and not factory.started[0].closed
    await second
    first, loaded_second = factory.started
    assert first.closed and on_gpu(loaded_second)


async def test_back_to_back_loads_do_not_both_think_they_fit(requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None], tmp_path: Path) -> None:
    simulate(one_model_gpu(requests["a"]))
    factory = Factory()
    scheduler = Scheduler(factory, planner=RunnerStarter(tmp_path, load_timeout=5.0))
    release = asyncio.Event()

    async def hold(request: LoadRequest) -> None:
        async with scheduler.lease(request, None):
            await release.wait()

    tasks = [asyncio.create_task(hold(requests[name])) for name in ("a", "b")]
    await until(lambda: len(factory.started) == 1)
    assert not any(t.done() for t in tasks) and len(factory.started) == 1
    release.set()
    await asyncio.gather(*tasks)
    assert len(factory.started) == 2 and all(on_gpu(r) for r in factory.started)
    assert factory.started[0].closed and len(scheduler.loaded()) == 1


async def test_load_that_runs_out_of_memory_evicts_the_others_and_retries_once(
    requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None], tmp_path: Path
) -> None:
    simulate(Inventory(gpus=(GpuInfo(vendor="nvidia", total=24 * GIB, id="GPU-0"),), system=SystemMemory(total=64 * GIB, free=64 * GIB)))
    failures = iter([RunnerCrashed(OOM)])

    def fail(request: LoadRequest) -> Exception | None:
        return next(failures, None) if request.model.short_name == "b:latest" else None

    factory = Factory(fail)
    scheduler = Scheduler(factory, planner=RunnerStarter(tmp_path, load_timeout=5.0))
    async with scheduler.lease(requests["a"], None):
        pass
    async with scheduler.lease(requests["b"], None):
        pass
    first, second = factory.started
    assert first.closed and not second.closed
    assert [r.model.short_name for r in scheduler.loaded()] == ["b:latest"]


async def test_out_of_memory_with_nothing_else_loaded_is_the_users_error(
    requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None], tmp_path: Path
) -> None:
    simulate(Inventory(gpus=(GpuInfo(vendor="nvidia", total=24 * GIB, id="GPU-0"),), system=SystemMemory(total=64 * GIB, free=64 * GIB)))
    attempts: list[LoadRequest] = []

    def fail(request: LoadRequest) -> Exception:
        attempts.append(request)
        return RunnerCrashed(OOM)

    scheduler = Scheduler(Factory(fail), planner=RunnerStarter(tmp_path, load_timeout=5.0))
    with pytest.raises(RunnerCrashed, match="out of memory"):
        await _use(scheduler, requests["a"])
    assert len(attempts) == 1


async def test_cpu_only_checks_system_memory_and_evicts_before_refusing(
    requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None], tmp_path: Path
) -> None:
    cpu_need = plan_on(requests["a"], Inventory(system=ROOMY.system)).size
    simulate(Inventory(system=SystemMemory(total=cpu_need * 3 // 2, free=cpu_need * 3 // 2)))
    factory = Factory()
    scheduler = Scheduler(factory, planner=RunnerStarter(tmp_path, load_timeout=5.0))
    await _use(scheduler, requests["a"])
    await _use(scheduler, requests["b"])
    assert factory.started[0].closed and [r.model.short_name for r in scheduler.loaded()] == ["b:latest"]

    simulate(Inventory(system=SystemMemory(total=64 * GIB, free=cpu_need // 2)))
    await scheduler.stop()
    scheduler = Scheduler(factory, planner=RunnerStarter(tmp_path, load_timeout=5.0))
    with pytest.raises(InsufficientMemory) as err:
        await _use(scheduler, requests["a"])
    assert err.value.status_code == 500
    assert str(err.value).startswith("model requires more system memory (") and "than is available (" in str(err.value)


@pytest.mark.parametrize(("gpu_count", "expected"), [(0, 3), (1, 3), (2, 6)])
async def test_max_loaded_models_defaults_to_three_per_gpu(
    requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None], tmp_path: Path, gpu_count: int, expected: int
) -> None:
    gpus = tuple(GpuInfo(vendor="nvidia", total=24 * GIB, id=f"GPU-{i}", index=i) for i in range(gpu_count))
    simulate(Inventory(gpus=gpus, system=SystemMemory(total=64 * GIB, free=64 * GIB)))
    scheduler = Scheduler(Factory(), planner=RunnerStarter(tmp_path, load_timeout=5.0))
    await _use(scheduler, requests["a"])
    assert scheduler.max_loaded == expected
    assert Scheduler(Factory(), max_loaded=2).max_loaded == 2


@pytest.mark.serving
async def test_real_runners_second_model_evicts_the_first_when_memory_holds_one(
    requests: dict[str, LoadRequest], simulate: Callable[[Inventory], None]
) -> None:
    cpu_need = plan_on(requests["a"], Inventory(system=ROOMY.system)).size
    simulate(Inventory(system=SystemMemory(total=cpu_need * 3 // 2, free=cpu_need * 3 // 2)))
    with tempfile.TemporaryDirectory(prefix="om-") as sockets:  # short: a socket path has a length limit
        scheduler = Scheduler(RunnerStarter(Path(sockets), load_timeout=60.0))  # the factory is the planner
        try:
            async with scheduler.lease(requests["a"], None) as first:
                assert await first.handle.tokenize("hello")
            async with scheduler.lease(requests["b"], None) as second:
                assert await second.handle.tokenize("hello")
                assert first.handle.has_exited() and not second.handle.has_exited()
            assert [r.model.short_name for r in scheduler.loaded()] == ["b:latest"]
        finally:
            await scheduler.stop()


async def _use(scheduler: Scheduler, request: LoadRequest) -> None:
    async with scheduler.lease(request, None):
        pass
