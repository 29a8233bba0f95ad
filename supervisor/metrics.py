"""Prometheus metrics for ``GET /metrics``.

Each application gets its own registry (tests build many apps). Counters and histograms
are fed where things happen (the request middleware, the completion stream, the
scheduler's load path); gauges about the scheduler and the GPUs are read at scrape time
by a custom collector, so they never drift from the truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ollamapy.supervisor.placement.gpu_probe import probe_inventory

if TYPE_CHECKING:
    from ollamapy.supervisor.scheduler import Scheduler

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _SchedulerCollector(Collector):
    """Scheduler and device state, read at scrape time."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[GaugeMetricFamily]:
        scheduler = self.scheduler
        yield GaugeMetricFamily("ollamapy_queue_pending", "Requests waiting for a load or a free runner slot", value=scheduler.waiting)
        loaded = scheduler.loaded()
        yield GaugeMetricFamily("ollamapy_models_loaded", "Runners (loaded models) alive", value=len(loaded))
        running = GaugeMetricFamily("ollamapy_requests_running", "Requests being served, per model", labels=["model"])
        waiting = GaugeMetricFamily("ollamapy_requests_waiting", "Requests attached to a model but waiting for a slot", labels=["model"])
        for runner in loaded:
            running.add_metric([runner.model.short_name], runner.active)
            waiting.add_metric([runner.model.short_name], runner.ref_count - runner.active)
        yield running
        yield waiting
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
        self.registry = CollectorRegistry()
        self.requests = Counter("ollamapy_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=self.registry)
        self.load_seconds = Histogram("ollamapy_model_load_seconds", "Time to start a runner and load its model", ["model"], buckets=_LOAD_BUCKETS, registry=self.registry)
        self.ttft_seconds = Histogram("ollamapy_time_to_first_token_seconds", "Request start to first generated text", ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.itl_seconds = Histogram("ollamapy_inter_token_latency_seconds", "Time between streamed chunks", ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.prompt_tokens = Counter("ollamapy_prompt_tokens", "Prompt tokens evaluated (cached included)", ["model"], registry=self.registry)
        self.generated_tokens = Counter("ollamapy_generated_tokens", "Tokens generated", ["model"], registry=self.registry)
        self.runner_restarts = Counter("ollamapy_runner_restarts", "Runners started again after one died", ["model"], registry=self.registry)
        self.registry.register(_SchedulerCollector(scheduler))

    def observe_tokens(self, model: str, prompt: int, generated: int) -> None:
        self.prompt_tokens.labels(model).inc(prompt)
        self.generated_tokens.labels(model).inc(generated)

    # SchedulerObserver
    def on_load(self, model: str, seconds: float) -> None:
        self.load_seconds.labels(model).observe(seconds)

    def on_restart(self, model: str) -> None:
        self.runner_restarts.labels(model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
