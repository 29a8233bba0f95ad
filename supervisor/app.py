"""The aiohttp application factory and its route table.

``create_app`` builds one application holding the store (and, once serving lands, the
scheduler) under typed keys; ``setup_routes`` is the one flat route table, grouped like
Ollama's ``GenerateRoutes``.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ollamapy import envconfig
from ollamapy.store import ModelStore
from ollamapy.supervisor.app_keys import STORE
from ollamapy.supervisor.http_util import json_response
from ollamapy.supervisor.middleware import error_middleware
from ollamapy.supervisor.routes_models import setup_model_routes

__all__ = ["create_app", "setup_routes"]


async def root_handler(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain")


async def version_handler(request: web.Request) -> web.Response:
    return json_response({"version": envconfig.api_version()})


def setup_routes(app: web.Application) -> None:
    # health and version
    app.router.add_get("/", root_handler)
    app.router.add_get("/api/version", version_handler)
    # model management
    setup_model_routes(app)


def create_app(models_dir: Path | None = None) -> web.Application:
    """Build the application over the store at ``models_dir`` (default ``OLLAMA_MODELS``)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=0)
    root = models_dir or envconfig.models_dir()
    root.mkdir(parents=True, exist_ok=True)
    app[STORE] = ModelStore(root)
    setup_routes(app)
    return app
