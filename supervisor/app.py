"""The aiohttp application factory and its route table.

``create_app`` builds one application holding the store and the scheduler under typed
keys; ``setup_routes`` is the one flat route table, grouped like Ollama's
``GenerateRoutes``. A cleanup context starts the probe for llama.cpp's CPU variant
(real runners only; in the background), owns the runners' private socket directory and
terminates every runner when the application stops.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ollamapy import envconfig
from ollamapy.store.model_store import ModelStore
from ollamapy.supervisor.app_keys import CPU_BACKEND, INFERENCE, METRICS, SCHEDULER, STORE
from ollamapy.supervisor.cors import setup_browser_safety
from ollamapy.supervisor.dashboard import setup_dashboard_routes
from ollamapy.supervisor.inference import Inference
from ollamapy.supervisor.lifecycle import StreamTracker
from ollamapy.supervisor.metrics import Metrics
from ollamapy.supervisor.middleware import access_middleware, error_middleware
from ollamapy.supervisor.placement.cpu_backend import CpuBackendProbe
from ollamapy.supervisor.routes.anthropic import setup_anthropic_routes
from ollamapy.supervisor.routes.embed import setup_embed_routes
from ollamapy.supervisor.routes.http_util import STREAMS, json_response
from ollamapy.supervisor.routes.inference import setup_inference_routes
from ollamapy.supervisor.routes.models import setup_model_routes
from ollamapy.supervisor.routes.openai import setup_openai_routes
from ollamapy.supervisor.routes.placement import setup_placement_routes
from ollamapy.supervisor.routes.registry import setup_registry_routes
from ollamapy.supervisor.scheduler import RunnerFactory, Scheduler
from ollamapy.supervisor.serving import RunnerStarter

__all__ = ["create_app", "setup_routes"]


async def root_handler(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain")


async def version_handler(request: web.Request) -> web.Response:
    return json_response({"version": envconfig.api_version()})


async def ready_handler(request: web.Request) -> web.Response:
    """ollamapy's readiness check: 503 while the scheduler cannot serve (``/`` is liveness)."""
    scheduler = request.app[SCHEDULER]
    problem = scheduler.readiness()
    if problem is not None:
        return json_response({"status": "not ready", "error": problem}, status=503)
    return json_response({"status": "ready", "models": [r.model.short_name for r in scheduler.loaded()]})


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh()  # the runners' slot and KV use
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_routes(app: web.Application) -> None:
    # health and version
    app.router.add_get("/", root_handler)
    app.router.add_get("/api/version", version_handler)
    # model management
    setup_model_routes(app)
    setup_registry_routes(app)
    # inference
    setup_inference_routes(app)
    setup_embed_routes(app)
    # OpenAI and Anthropic compatibility
    setup_openai_routes(app)
    setup_anthropic_routes(app)
    # ollamapy's own
    setup_placement_routes(app)
    app.router.add_get("/api/ready", ready_handler)
    app.router.add_get("/metrics", metrics_handler)
    setup_dashboard_routes(app)


def create_app(models_dir: Path | None = None, *, runner_factory: RunnerFactory | None = None) -> web.Application:
    """Build the application over the store at ``models_dir`` (default ``OLLAMA_MODELS``).

    ``runner_factory`` starts runners (default: real runner processes); tests pass
    ``ollamapy.testing.fake_runner.FakeRunnerFactory`` to serve without llama.cpp.
    """
    app = web.Application(middlewares=[access_middleware, error_middleware], client_max_size=0)
    setup_browser_safety(app, listen_host=envconfig.host().bind_host)
    root = models_dir or envconfig.models_dir()
    root.mkdir(parents=True, exist_ok=True)
    store = app[STORE] = ModelStore(root)
    socket_dir = Path(tempfile.mkdtemp(prefix="ollamapy-runners-"))
    cpu_backend = app[CPU_BACKEND] = CpuBackendProbe()
    factory = runner_factory or RunnerStarter(socket_dir, load_timeout=envconfig.load_timeout(), cpu_backend=cpu_backend)
    scheduler = Scheduler(
        factory,
        max_queue=envconfig.max_queue(),
        max_loaded=envconfig.max_loaded_models(),  # 0: 3 per GPU, counted by the scheduler
        default_keep_alive=envconfig.keep_alive(),
        load_timeout=envconfig.load_timeout(),
    )
    app[SCHEDULER] = scheduler
    metrics = app[METRICS] = scheduler.observer = Metrics(scheduler)
    app[INFERENCE] = Inference(store, scheduler, metrics)

    app[STREAMS] = StreamTracker()

    async def drain_streams(app: web.Application) -> None:
        await app[STREAMS].drain(envconfig.shutdown_grace())

    async def runners_lifecycle(app: web.Application) -> AsyncIterator[None]:
        if runner_factory is None:
            cpu_backend.start()  # in the background: the server listens meanwhile
        yield
        await cpu_backend.stop()
        await app[SCHEDULER].stop()
        shutil.rmtree(socket_dir, ignore_errors=True)

    app.on_shutdown.append(drain_streams)
    app.cleanup_ctx.append(runners_lifecycle)
    setup_routes(app)
    return app
