"""The scheduler: which runner serves a request, when runners load, expire and are evicted.

Policy (Ollama's scheduler, with ollamapy's deliberate deviations):

* A request for a loaded model whose load-time options match attaches at once; a smaller
  ``num_ctx`` than the loaded one also attaches (it fits; Ollama would reload).
* Requests waiting for a load *or* for a busy runner's slot count toward
  ``OLLAMA_MAX_QUEUE``; beyond it ``QueueFull`` (503). Ollama only counts the former.
* One load at a time. At most ``max_loaded`` runners (``OLLAMA_MAX_LOADED_MODELS``; 0 =
  3 per GPU, 3 without one); to make room, evict among idle runners the one with the
  shortest keep_alive (forever last), ties least recently used; if none is idle, wait for
  one to drain (as long as the request waits: its client leaving ends the wait).
* Memory decides too, when the factory also plans placements (``LoadPlanner``): the plan
  sees free memory minus what the loaded runners' plans hold. While other runners are
  loaded, a model that would not fit whole where its options ask (it would go partly or
  wholly to the CPU, or nowhere) evicts as above and is planned again; only with nothing
  else loaded does it take the best partial fit, or fail with "model requires more system
  memory … than is available". A load that fails for lack of memory unloads every other
  runner and is retried once.
* ``keep_alive``: absent keeps the runner's duration, ``0`` unloads after the request,
  ``inf`` never expires. Expiry terminates and reaps the process.
* A runner that died is dropped; the next request starts a fresh one. Death is noticed
  by the process (``has_exited``) or by a request the runner failed (``RunnerCrashed``
  out of a lease): from then on no request attaches to it, and it is closed (reaped, its
  socket removed) when its last request leaves. Requests that fail this way before their
  answer started are retried by the inference service on a fresh load.

The runner boundary is the ``RunnerHandle`` protocol (``supervisor.runner_handle``); the
factory that starts one, and with it the placement policy, is injected, so tests drive the
scheduler with fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from ollamapy.api.options import LoadOptions
from ollamapy.errors import OllamapyError, QueueFull, RunnerCrashed
from ollamapy.store.model import Model
from ollamapy.supervisor.placement.plan import InsufficientMemory, Placement
from ollamapy.supervisor.runner_handle import RunnerHandle

__all__ = [
    "FOREVER_EXPIRY",
    "LoadPlanner",
    "LoadRequest",
    "LoadedRunner",
    "RunnerFactory",
    "Scheduler",
    "SchedulerObserver",
    "needs_reload",
]

log = logging.getLogger("ollamapy.scheduler")

FOREVER_EXPIRY = 10_000_000_000.0
"""Unix time reported as ``expires_at`` for runners kept forever (year 2286)."""

MODELS_PER_GPU = 3
"""The automatic ``max_loaded``: this many per GPU, or this many without a GPU."""

# A runner's last stderr line is llama.cpp's own text: the only sign that a load ran out of
# memory (allocation failures on any backend, or the plan's own refusal).
_OUT_OF_MEMORY = re.compile(r"(?i)out of memory|failed to allocate|unable to allocate|cannot allocate memory")


RunnerFactory = Callable[["LoadRequest"], Awaitable[RunnerHandle]]
"""Starts a runner for the request and returns it once it is ready to serve."""


@runtime_checkable
class LoadPlanner(Protocol):
    """Plans where a model would load now; a runner factory that implements it makes the
    scheduler memory-aware (the real one probes devices, tests inject inventories)."""

    async def plan(self, request: LoadRequest, loaded: Sequence[Placement]) -> Placement:
        """Devices for ``request`` given the free memory probed now minus what ``loaded``
        runners' plans hold; ``InsufficientMemory`` when it fits nowhere."""
        ...

    async def gpu_count(self) -> int:
        """How many GPUs there are (for the automatic ``max_loaded``)."""
        ...


class SchedulerObserver(Protocol):
    """Told about loads and restarts (the metrics implement it)."""

    def on_load(self, model: str, seconds: float) -> None: ...

    def on_restart(self, model: str) -> None: ...


@dataclass(frozen=True)
class LoadRequest:
    """What must be loaded: the model and its resolved load-time options."""

    model: Model
    options: LoadOptions
    num_parallel: int = 1
    placement: Placement | None = field(default=None, compare=False)
    """The scheduler's plan for this load, when a ``LoadPlanner`` made one; the factory
    starts the runner there (without one it plans for itself)."""

    @property
    def key(self) -> str:
        """Runners are shared by every name of the same weights + adapters (e.g. copies)."""
        parts = [str(self.model.model_path), *map(str, self.model.adapter_paths), *map(str, self.model.projector_paths)]
        return "|".join(parts)


@dataclass(eq=False)
class LoadedRunner:
    """A loaded model and its bookkeeping; guarded by the scheduler's event loop."""

    request: LoadRequest
    handle: RunnerHandle
    keep_alive: float
    slots: asyncio.Semaphore
    ref_count: int = 0
    """Requests attached: holding a slot or waiting for one."""
    active: int = 0
    """Requests holding a slot (being served)."""
    last_used: float = field(default_factory=time.monotonic)
    expires_at: float | None = None
    """Wall-clock expiry while idle with a timer; None while in use or forever."""
    timer: asyncio.TimerHandle | None = None
    loaded_at: float = field(default_factory=time.time)
    crashed: bool = False
    """A request found the runner dead (its process may not be reaped yet)."""

    @property
    def model(self) -> Model:
        return self.request.model

    @property
    def options(self) -> LoadOptions:
        return self.request.options

    def expiry_for_ps(self) -> float:
        if math.isinf(self.keep_alive):
            return FOREVER_EXPIRY
        if self.expires_at is not None:
            return self.expires_at
        return time.time() + self.keep_alive


def needs_reload(loaded: LoadOptions, wanted: LoadOptions) -> bool:
    """True when load-time options differ in a way the loaded runner cannot serve.

    A smaller ``num_ctx`` fits in the loaded context, and ``num_gpu < 0`` (auto) accepts
    whatever the loaded runner uses.
    """
    ignore: set[str] = set()
    if wanted.num_ctx is not None and loaded.num_ctx is not None and wanted.num_ctx <= loaded.num_ctx:
        ignore.add("num_ctx")
    if wanted.num_gpu < 0:
        ignore.add("num_gpu")
    return loaded.model_dump(exclude=ignore) != wanted.model_dump(exclude=ignore)


def _out_of_memory(err: OllamapyError) -> bool:
    return isinstance(err, InsufficientMemory) or bool(_OUT_OF_MEMORY.search(str(err)))


class Scheduler:
    """Owns the loaded runners. All state is touched only from the event loop's thread.

    ``max_loaded`` 0 is automatic (``MODELS_PER_GPU`` per GPU, counted at the first load).
    ``planner`` defaults to the factory when it is a ``LoadPlanner``; without one the
    scheduler counts runners only.
    """

    def __init__(
        self,
        runner_factory: RunnerFactory,
        *,
        planner: LoadPlanner | None = None,
        max_queue: int = 512,
        max_loaded: int = 0,
        default_keep_alive: float = 300.0,
        load_timeout: float = math.inf,
    ) -> None:
        self._factory = runner_factory
        if planner is None and isinstance(runner_factory, LoadPlanner):
            planner = runner_factory
        self._planner = planner
        self.observer: SchedulerObserver | None = None
        self.load_timeout = load_timeout
        self.max_queue = max_queue
        self._auto_max_loaded = max_loaded <= 0
        self.max_loaded = MODELS_PER_GPU if self._auto_max_loaded else max_loaded
        self.default_keep_alive = default_keep_alive
        self._loaded: dict[str, LoadedRunner] = {}
        self._load_lock = asyncio.Lock()  # one load (and its evictions) at a time
        self._changed = asyncio.Condition()  # notified when a runner goes idle or unloads
        self._waiting = 0  # requests waiting for a load or a slot (bounded by max_queue)
        self._closing = False
        self._expiring: set[asyncio.Task[None]] = set()  # keep_alive expiries under way
        self.loading: LoadRequest | None = None
        self.loading_since: float | None = None

    # -- public API -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(self, request: LoadRequest, keep_alive: float | None) -> AsyncIterator[LoadedRunner]:
        """Attach to (loading if needed) a runner and hold one of its slots for the body."""
        if self._closing:
            raise OllamapyError("server is shutting down")
        if self._waiting >= self.max_queue:
            raise QueueFull()
        self._waiting += 1
        runner: LoadedRunner | None = None
        try:
            runner = await self._attach(request, keep_alive)
            await runner.slots.acquire()
            runner.active += 1
        except BaseException:  # cancelled or failed while waiting: give the claim back
            if runner is not None:
                await self._detach(runner)
            raise
        finally:
            self._waiting -= 1
        try:
            yield runner
        except RunnerCrashed:
            self._drop(runner)
            raise
        finally:
            runner.active -= 1
            runner.slots.release()
            await self._detach(runner)

    def loaded(self) -> list[LoadedRunner]:
        return sorted(self._loaded.values(), key=lambda r: r.expiry_for_ps(), reverse=True)

    def find_loaded(self, model: Model) -> LoadedRunner | None:
        for runner in self._loaded.values():
            if runner.model.name == model.name or runner.model.digest == model.digest:
                return runner
        return None

    async def unload(self, model: Model) -> bool:
        """keep_alive 0 for a loaded model: unload now if idle, else after its requests."""
        runner = self.find_loaded(model)
        if runner is None:
            return False
        runner.keep_alive = 0
        if runner.ref_count == 0:
            await self._unload(runner)
        return True

    async def stop(self) -> None:
        """Terminate every runner (server shutdown)."""
        self._closing = True
        await asyncio.gather(*(self._unload(r) for r in list(self._loaded.values())), return_exceptions=True)

    @property
    def waiting(self) -> int:
        return self._waiting

    def readiness(self) -> str | None:
        """Why the scheduler cannot serve now (None when it can): stopped, or a load stuck
        longer than the load timeout."""
        if self._closing:
            return "scheduler is not running"
        if self.loading_since is not None and time.monotonic() - self.loading_since > self.load_timeout:
            return f"loading {self.loading.model.short_name if self.loading else 'a model'} is stuck"
        return None

    # -- attach / detach ----------------------------------------------------------------

    async def _attach(self, request: LoadRequest, keep_alive: float | None) -> LoadedRunner:
        while True:
            runner = self._usable(request)
            if runner is None:
                async with self._load_lock:
                    runner = self._usable(request)
                    if runner is None:
                        runner = await self._load(request, keep_alive)
            if self._dead(runner):
                continue  # died between load and attach: go round again
            self._claim(runner, keep_alive)
            return runner

    def _usable(self, request: LoadRequest) -> LoadedRunner | None:
        runner = self._loaded.get(request.key)
        if runner is None or self._dead(runner) or needs_reload(runner.options, request.options):
            return None
        return runner

    @staticmethod
    def _dead(runner: LoadedRunner) -> bool:
        return runner.crashed or runner.handle.has_exited()

    def _drop(self, runner: LoadedRunner) -> None:
        """A request found ``runner`` dead: attach nothing more to it; the last request
        leaving closes it (``_detach``)."""
        if runner.crashed:
            return
        runner.crashed = True
        log.warning("runner for %s (pid %d) failed a request; dropping it", runner.model.short_name, runner.handle.pid)
        if self._loaded.get(runner.request.key) is runner:
            del self._loaded[runner.request.key]
            if self.observer is not None:
                self.observer.on_restart(runner.model.short_name)

    def _claim(self, runner: LoadedRunner, keep_alive: float | None) -> None:
        runner.ref_count += 1
        runner.last_used = time.monotonic()
        if keep_alive is not None:
            runner.keep_alive = keep_alive
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        runner.expires_at = None

    async def _detach(self, runner: LoadedRunner) -> None:
        runner.ref_count -= 1
        runner.last_used = time.monotonic()
        if runner.ref_count > 0:
            return
        if self._dead(runner):
            log.warning("runner for %s (pid %d) has exited", runner.model.short_name, runner.handle.pid)
            await self._unload(runner)
        elif runner.keep_alive <= 0:
            await self._unload(runner)
        elif not math.isinf(runner.keep_alive) and self._loaded.get(runner.request.key) is runner:
            loop = asyncio.get_running_loop()
            runner.expires_at = time.time() + runner.keep_alive
            runner.timer = loop.call_later(runner.keep_alive, self._start_expiry, runner)
        async with self._changed:
            self._changed.notify_all()

    def _start_expiry(self, runner: LoadedRunner) -> None:
        # The loop keeps only a weak reference to a task: hold it until it is done.
        task = asyncio.ensure_future(self._expire(runner))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, runner: LoadedRunner) -> None:
        if runner.ref_count == 0:
            log.info("keep_alive expired for %s", runner.model.short_name)
            await self._unload(runner)

    # -- loading and eviction (under _load_lock) -----------------------------------------------

    async def _load(self, request: LoadRequest, keep_alive: float | None) -> LoadedRunner:
        stale = self._loaded.get(request.key)
        if stale is not None:  # exited, or loaded with options that need a reload
            if stale.handle.has_exited() and self.observer is not None:
                self.observer.on_restart(request.model.short_name)
            await self._wait_idle(stale)
            await self._unload(stale)
        if self._auto_max_loaded and self._planner is not None:
            self.max_loaded = MODELS_PER_GPU * max(await self._planner.gpu_count(), 1)
            self._auto_max_loaded = False
        while len(self._loaded) >= max(self.max_loaded, 1):
            await self._evict_one()
        request = await self._make_room(request)
        try:
            handle = await self._start(request)
        except OllamapyError as err:
            if not self._loaded or not _out_of_memory(err):
                raise
            log.warning("loading %s ran out of memory (%s); unloading the other models and retrying once", request.model.short_name, err)
            while self._loaded:
                await self._evict_one()
            handle = await self._start(await self._make_room(request))
        runner = LoadedRunner(
            request=request,
            handle=handle,
            keep_alive=self.default_keep_alive if keep_alive is None else keep_alive,
            slots=asyncio.Semaphore(max(request.num_parallel, 1)),
        )
        self._loaded[request.key] = runner
        log.info("loaded %s (pid %d, num_ctx %s)", request.model.short_name, handle.pid, request.options.num_ctx)
        return runner

    async def _start(self, request: LoadRequest) -> RunnerHandle:
        self.loading, self.loading_since = request, time.monotonic()
        try:
            handle = await self._factory(request)
            if self.observer is not None:
                self.observer.on_load(request.model.short_name, time.monotonic() - self.loading_since)
            return handle
        finally:
            self.loading = self.loading_since = None

    async def _make_room(self, request: LoadRequest) -> LoadRequest:
        """Plan ``request`` beside the loaded runners, evicting until it fits or nothing
        else is loaded (then the best plan stands, or its ``InsufficientMemory``)."""
        if self._planner is None:
            return request
        while True:
            try:
                placement = await self._planner.plan(request, self._placements())
            except InsufficientMemory as err:
                if not self._loaded:
                    raise
                log.info("%s does not fit beside the loaded models (%s); evicting", request.model.short_name, err)
            else:
                if placement.fits or not self._loaded:
                    return replace(request, placement=placement)
                log.info("%s would not fit whole (%s); evicting", request.model.short_name, placement.reason)
            await self._evict_one()

    def _placements(self) -> list[Placement]:
        """What the loaded runners were planned to hold (the plan travels with the request)."""
        out = []
        for runner in self._loaded.values():
            placement = runner.request.placement or runner.handle.placement
            if placement is not None:
                out.append(placement)
        return out

    def eviction_candidate(self) -> LoadedRunner | None:
        """Idle runner with the shortest keep_alive (forever last), ties least recently used."""
        idle = [r for r in self._loaded.values() if r.ref_count == 0]
        if not idle:
            return None
        return min(idle, key=lambda r: (r.keep_alive, r.last_used))

    async def _evict_one(self) -> None:
        """Unload the eviction candidate, or, when every runner is busy, wait for the next
        change (a request leaving, a runner gone): callers check again what they need,
        since a runner that died or expired meanwhile may have made the room."""
        victim = self.eviction_candidate()
        if victim is None:
            async with self._changed:
                await self._changed.wait()
            return
        log.info("evicting %s to make room", victim.model.short_name)
        await self._unload(victim)

    async def _wait_idle(self, runner: LoadedRunner) -> None:
        while runner.ref_count > 0 and not self._dead(runner):
            async with self._changed:
                await self._changed.wait()

    async def _unload(self, runner: LoadedRunner) -> None:
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        if self._loaded.get(runner.request.key) is runner:
            del self._loaded[runner.request.key]
        try:
            await runner.handle.close()
        finally:
            async with self._changed:
                self._changed.notify_all()
