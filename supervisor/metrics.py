"""Prometheus metrics for ``GET /metrics``, and the same numbers for the dashboard.

Each application gets its own registry (tests build many apps). Counters and histograms
are fed where things happen (the request middleware, the completion stream, the
scheduler's load path); gauges about the scheduler and the GPUs are read at scrape time
by a custom collector, so they never drift from the truth.

The model-server gauges an endpoint picker reads (one series per name, so the totals
carry no labels; the per-model and per-runner breakdowns have names of their own):

* ``ollamapy_queued_requests``: requests waiting for a load or a slot (``OLLAMA_MAX_QUEUE``
  counts them); per model, ``ollamapy_requests_waiting{model}`` (those attached to a
  loaded runner).
* ``ollamapy_running_requests``: requests holding a slot; per model
  ``ollamapy_requests_running{model}``.
* ``ollamapy_kv_cache_utilization``: KV cells held by running sequences over the cells
  of every loaded runner (0–1); per runner ``ollamapy_runner_kv_cache_utilization{model}``.
* ``ollamapy_lora_requests_info``: the shape vLLM exports (labels
  ``running_lora_adapters``, ``waiting_lora_adapters``, ``max_lora``; the value is the
  time of the scrape), present even with no adapters.

KV and slot use live in the runners: ``refresh`` asks each one's ``/health`` (at once, with
a short timeout, keeping the last answer of a runner too busy to reply), so a scrape or a
dashboard poll costs one small request per runner. ``refresh`` also snapshots the token
counter and the time-to-first-token histogram into a rolling window, from which the
dashboard shows tokens/s and mean TTFT over the last minutes, as ``rate()`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ollamapy.api.runner_protocol import HealthResponse
from ollamapy.errors import OllamapyError
from ollamapy.supervisor.placement.gpu_probe import probe_inventory

if TYPE_CHECKING:
    from prometheus_client.metrics import MetricWrapperBase

    from ollamapy.supervisor.scheduler import LoadedRunner, Scheduler

__all__ = ["HEALTH_TIMEOUT", "WINDOW_SECONDS", "Metrics", "RunnerUsage"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HEALTH_TIMEOUT = 0.5
"""Seconds a scrape waits for one runner's ``/health`` before using its last answer."""
WINDOW_SECONDS = 300.0
"""How far back the dashboard's tokens/s and TTFT reach."""
_WINDOW_STEP = 2.0
"""Snapshots closer together than this are not kept (bounds the window to ~150 entries)."""


@dataclass(frozen=True)
class RunnerUsage:
    """One loaded runner's load as the scheduler and the runner itself see it."""

    model: str
    pid: int
    running: int
    """Requests holding one of its slots (the front's count)."""
    queued: int
    """Requests attached to it, waiting for a slot."""
    slots_used: int
    """Sequences in the runner's decode batch (the runner's count)."""
    slots: int
    kv_cells_used: int
    kv_cells: int
    adapters: int

    @property
    def kv_utilization(self) -> float:
        return self.kv_cells_used / self.kv_cells if self.kv_cells else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pid": self.pid,
            "running": self.running,
            "queued": self.queued,
            "slots_used": self.slots_used,
            "slots": self.slots,
            "kv_cells_used": self.kv_cells_used,
            "kv_cells": self.kv_cells,
            "kv_utilization": self.kv_utilization,
        }


@dataclass(frozen=True)
class _Snapshot:
    """Cumulative counters at one moment, per model: tokens generated, TTFT sum and count."""

    at: float
    tokens: dict[str, float]
    ttft_sum: dict[str, float]
    ttft_count: dict[str, float]


def _per_model(metric: MetricWrapperBase, suffix: str) -> dict[str, float]:
    """The ``suffix`` samples of a metric labelled by ``model``, by model."""
    return {s.labels["model"]: s.value for family in metric.collect() for s in family.samples if s.name.endswith(suffix)}


def _rates(old: _Snapshot, new: _Snapshot, model: str | None = None) -> dict[str, Any]:
    """Tokens/s and mean TTFT between two snapshots (all models, or one)."""

    def delta(field: str) -> float:
        a: dict[str, float] = getattr(old, field)
        b: dict[str, float] = getattr(new, field)
        names = b.keys() if model is None else [model]
        return sum(b.get(name, 0.0) - a.get(name, 0.0) for name in names)

    span = new.at - old.at
    count = delta("ttft_count")
    return {
        "tokens_per_second": delta("tokens") / span if span > 0 else 0.0,
        "ttft_seconds": delta("ttft_sum") / count if count else None,
        "requests": int(count),
    }


class _SchedulerCollector(Collector):
    """Scheduler, runner and device state, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        metrics = self.metrics
        scheduler = metrics.scheduler
        usage = metrics.usage()
        queued = scheduler.waiting
        yield GaugeMetricFamily("ollamapy_queue_pending", "Requests waiting for a load or a free runner slot (as ollamapy_queued_requests)", value=queued)
        yield GaugeMetricFamily("ollamapy_queued_requests", "Requests waiting for a load or a free runner slot, all models", value=queued)
        yield GaugeMetricFamily("ollamapy_running_requests", "Requests holding a runner slot, all models", value=sum(u.running for u in usage))
        yield GaugeMetricFamily("ollamapy_kv_cache_utilization", "KV cache cells in use over those of every loaded runner (0-1)", value=metrics.kv_utilization(usage))
        yield metrics.lora_info(usage)
        yield GaugeMetricFamily("ollamapy_models_loaded", "Runners (loaded models) alive", value=len(usage))
        per_runner = {
            "ollamapy_requests_running": ("Requests being served, per model", lambda u: u.running),
            "ollamapy_requests_waiting": ("Requests attached to a model but waiting for a slot", lambda u: u.queued),
            "ollamapy_runner_kv_cache_utilization": ("Fraction (0-1) of a runner's KV cache cells in use", lambda u: u.kv_utilization),
            "ollamapy_runner_kv_cells_used": ("KV cache cells held by a runner's running sequences", lambda u: u.kv_cells_used),
            "ollamapy_runner_kv_cells": ("KV cache cells of a runner (context of all its slots)", lambda u: u.kv_cells),
            "ollamapy_runner_slots_used": ("Sequences in a runner's decode batch", lambda u: u.slots_used),
            "ollamapy_runner_slots": ("Sequences a runner decodes at once (num_parallel)", lambda u: u.slots),
        }
        for name, (help_text, value) in per_runner.items():
            family = GaugeMetricFamily(name, help_text, labels=["model"])
            for u in usage:
                family.add_metric([u.model], value(u))
            yield family
        used = GaugeMetricFamily("ollamapy_gpu_memory_used_bytes", "GPU memory in use, as last probed", labels=["gpu", "name"])
        free = GaugeMetricFamily("ollamapy_gpu_memory_free_bytes", "GPU memory free, as last probed", labels=["gpu", "name"])
        for gpu in probe_inventory().gpus:
            used.add_metric([gpu.id, gpu.name], gpu.total - gpu.free)
            free.add_metric([gpu.id, gpu.name], gpu.free)
        yield used
        yield free


class Metrics:
    """The application's metrics; handlers and the scheduler call the ``observe_*`` methods."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.registry = CollectorRegistry()
        self.requests = Counter("ollamapy_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=self.registry)
        self.load_seconds = Histogram("ollamapy_model_load_seconds", "Time to start a runner and load its model", ["model"], buckets=_LOAD_BUCKETS, registry=self.registry)
        self.ttft_seconds = Histogram("ollamapy_time_to_first_token_seconds", "Request start to first generated text", ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.itl_seconds = Histogram("ollamapy_inter_token_latency_seconds", "Time between streamed chunks", ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.prompt_tokens = Counter("ollamapy_prompt_tokens", "Prompt tokens evaluated (cached included)", ["model"], registry=self.registry)
        self.generated_tokens = Counter("ollamapy_generated_tokens", "Tokens generated", ["model"], registry=self.registry)
        self.runner_restarts = Counter("ollamapy_runner_restarts", "Runners started again after one died", ["model"], registry=self.registry)
        self.registry.register(_SchedulerCollector(self))
        self._health: dict[int, HealthResponse] = {}
        """The last ``/health`` answer of each loaded runner, by pid."""
        self._polling: asyncio.Future[None] | None = None
        self._window: deque[_Snapshot] = deque([self._snapshot()])

    # SchedulerObserver
    def on_load(self, model: str, seconds: float) -> None:
        self.load_seconds.labels(model).observe(seconds)

    def on_restart(self, model: str) -> None:
        self.runner_restarts.labels(model).inc()

    # -- runner state -------------------------------------------------------------------

    async def refresh(self) -> None:
        """Ask every loaded runner for its slot and KV use, and snapshot the counters.

        Concurrent callers share one round of requests; a cancelled caller does not cancel it.
        """
        if self._polling is None or self._polling.done():
            self._polling = asyncio.ensure_future(self._poll_runners())
        await asyncio.shield(self._polling)
        self._sample()

    async def _poll_runners(self) -> None:
        runners = self.scheduler.loaded()
        answers = await asyncio.gather(*(self._ask(runner) for runner in runners))
        alive = {runner.handle.pid for runner in runners}
        for pid in list(self._health):
            if pid not in alive:
                del self._health[pid]
        for runner, answer in zip(runners, answers, strict=True):
            if answer is not None:
                self._health[runner.handle.pid] = answer

    @staticmethod
    async def _ask(runner: LoadedRunner) -> HealthResponse | None:
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError, OllamapyError):
            return await runner.handle.health(timeout=HEALTH_TIMEOUT)
        return None

    def usage(self) -> list[RunnerUsage]:
        """Each loaded runner's load, with its slot and KV use as of the last ``refresh``."""
        rows = []
        for runner in self.scheduler.loaded():
            health = self._health.get(runner.handle.pid)
            spec = runner.handle.spec
            rows.append(
                RunnerUsage(
                    model=runner.model.short_name,
                    pid=runner.handle.pid,
                    running=runner.active,
                    queued=runner.ref_count - runner.active,
                    slots_used=health.active_sequences if health else 0,
                    slots=spec.num_parallel,
                    kv_cells_used=health.kv_cells_used if health else 0,
                    kv_cells=health.kv_cells_total if health and health.kv_cells_total else spec.num_ctx,
                    adapters=len(runner.model.adapter_paths),
                )
            )
        return rows

    @staticmethod
    def kv_utilization(usage: list[RunnerUsage]) -> float:
        """KV cells in use over all runners' cells (0 with nothing loaded)."""
        total = sum(u.kv_cells for u in usage)
        return sum(u.kv_cells_used for u in usage) / total if total else 0.0

    def lora_info(self, usage: list[RunnerUsage]) -> GaugeMetricFamily:
        """vLLM's ``lora_requests_info``: models with adapters that are loaded (serving them
        needs no load) and those requests wait for; ``max_lora`` is how many models may be
        loaded at once. The value is the scrape time."""
        scheduler = self.scheduler
        running = [u.model for u in usage if u.adapters]
        waiting = [u.model for u in usage if u.adapters and u.queued]
        loading = scheduler.loading
        if loading is not None and loading.model.adapter_paths:
            waiting.append(loading.model.short_name)
        family = GaugeMetricFamily(
            "ollamapy_lora_requests_info",
            "LoRA adapters loaded and waited for (labels); the value is the time of the scrape",
            labels=["running_lora_adapters", "waiting_lora_adapters", "max_lora"],
        )
        family.add_metric([",".join(running), ",".join(waiting), str(scheduler.max_loaded)], time.time())
        return family

    # -- rolling window -----------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(
            at=time.time(),
            tokens=_per_model(self.generated_tokens, "_total"),
            ttft_sum=_per_model(self.ttft_seconds, "_sum"),
            ttft_count=_per_model(self.ttft_seconds, "_count"),
        )

    def _sample(self) -> None:
        """Add a snapshot (at most one per ``_WINDOW_STEP``); keep one at or before the
        window's start as its baseline."""
        window = self._window
        snapshot = self._snapshot()
        if len(window) > 1 and window[-1].at - window[-2].at < _WINDOW_STEP:
            window[-1] = snapshot  # the newest point stays current without crowding the series
        else:
            window.append(snapshot)
        while len(window) > 2 and window[1].at <= snapshot.at - WINDOW_SECONDS:
            window.popleft()

    def recent(self) -> dict[str, Any]:
        """Tokens/s and mean TTFT over the window (``series``: between successive snapshots)."""
        window = list(self._window)
        first, last = window[0], window[-1]
        return {
            "window_seconds": last.at - first.at,
            **_rates(first, last),
            "models": {model: _rates(first, last, model) for model in last.tokens.keys() | last.ttft_count.keys()},
            "series": [{"at": new.at, **_rates(old, new)} for old, new in itertools.pairwise(window)],
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)
