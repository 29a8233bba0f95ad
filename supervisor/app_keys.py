"""Typed keys for what the aiohttp application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from ollamapy.store.model_store import ModelStore
from ollamapy.supervisor.inference import Inference
from ollamapy.supervisor.metrics import Metrics
from ollamapy.supervisor.placement.cpu_backend import CpuBackendProbe
from ollamapy.supervisor.scheduler import Scheduler

__all__ = ["CPU_BACKEND", "INFERENCE", "METRICS", "SCHEDULER", "STORE"]

STORE: web.AppKey[ModelStore] = web.AppKey("store", ModelStore)
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler", Scheduler)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
INFERENCE: web.AppKey[Inference] = web.AppKey("inference", Inference)
"""Generate, chat and embed over this application's store and scheduler."""
CPU_BACKEND: web.AppKey[CpuBackendProbe] = web.AppKey("cpu_backend", CpuBackendProbe)
"""The CPU variant of llama.cpp for this server's runners, probed at start (real runners only)."""
