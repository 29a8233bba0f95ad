"""``ollamapy serve``: logging, start-up housekeeping, and the HTTP listener."""

from __future__ import annotations

import logging

from aiohttp import web

from ollamapy import __version__, envconfig
from ollamapy.registry import ensure_keypair
from ollamapy.store.model_store import ModelStore
from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.app_keys import STORE

__all__ = ["run_server", "startup_prune"]

log = logging.getLogger("ollamapy.server")


def _configure_logging() -> None:
    logging.addLevelName(envconfig.TRACE, "TRACE")
    logging.basicConfig(
        level=envconfig.debug_level(),
        format="time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s",
    )


def startup_prune(store: ModelStore) -> None:
    """Rename legacy blob files, then prune unreferenced blobs unless OLLAMA_NOPRUNE."""
    store.fix_blobs()
    if envconfig.noprune():
        log.info("OLLAMA_NOPRUNE set: skipping blob pruning")
        return
    store.prune()


def run_server() -> None:
    """Serve the API on OLLAMA_HOST until SIGINT/SIGTERM, then exit 0 with no runner left."""
    _configure_logging()
    log.info(envconfig.describe_config())
    log.info("registry key: %s", ensure_keypair(envconfig.home_dir()))
    host = envconfig.host()
    app = create_app()

    startup_prune(app[STORE])
    log.info("Listening on %s (version %s, Ollama API %s)", host.netloc, __version__, envconfig.api_version())
    # SIGTERM/SIGINT: stop listening, give in-flight streams the grace period, then end
    # them with an error line; the app's cleanup terminates every runner.
    web.run_app(
        app,
        host=host.bind_host,
        port=host.port,
        print=None,
        access_log=None,
        handle_signals=True,
        # the grace period is the app's own drain (on_shutdown); by then nothing is in flight
        shutdown_timeout=2.0,
    )


