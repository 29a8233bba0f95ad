"""The list of stored models as ``/api/tags`` answers it; ``/v1/models`` converts the same list.

A service both APIs share, so neither route module imports the other.
"""

from __future__ import annotations

from typing import Any

from ollamapy.api.types import ListModel, ListResponse
from ollamapy.store.model import details_from_config
from ollamapy.store.model_store import ModelStore
from ollamapy.supervisor.routes.http_util import rfc3339

__all__ = ["list_models"]


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
            )
        )
    return ListResponse(models=models).model_dump(exclude_none=True)
