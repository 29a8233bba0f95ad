"""The list of stored models as ``/api/tags`` answers it; ``/v1/models`` converts the same list.

A service both APIs share, so neither route module imports the other.
"""

from __future__ import annotations

import logging
from typing import Any

from ollamapy.api.types import ListModel, ListResponse
from ollamapy.errors import OllamapyError
from ollamapy.golang.timefmt import rfc3339
from ollamapy.store.model import details_from_config, load_model
from ollamapy.store.model_store import ModelStore
from ollamapy.store.names import ModelName

__all__ = ["list_models"]

log = logging.getLogger("ollamapy.server")


def _capabilities(store: ModelStore, name: ModelName) -> list[str] | None:
    """What ``/api/show`` lists for the model; None (field left out) if it cannot be read."""
    try:
        return load_model(store, name).capabilities()
    except (OllamapyError, OSError) as exc:
        log.warning("capabilities of %s: %s", name.display_shortest(), exc)
        return None


def list_models(store: ModelStore) -> dict[str, Any]:
    """Every stored model, newest first as the store lists them (blocking: run in a thread)."""
    models = []
    for item in store.list_models():
        short = item.name.display_shortest()
        models.append(
            ListModel(
                name=short,
                model=short,
                modified_at=rfc3339(item.modified_at),
                size=item.size,
                digest=item.digest,
                details=details_from_config(store.read_config(item.manifest)),
                capabilities=_capabilities(store, item.name),
            )
        )
    return ListResponse(models=models).model_dump(exclude_none=True)
