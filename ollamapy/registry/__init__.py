"""Pull and push models over the Docker Registry v2 protocol, as Ollama does.

:func:`pull_model` / :func:`push_model` are the progress-event generators behind
``/api/pull`` and ``/api/push``; a :class:`TransferManager` (one per server) holds the HTTP
session and lets concurrent pulls share downloads; :func:`ensure_keypair` creates the
ed25519 identity that signs token requests.
"""

from __future__ import annotations

from ollamapy.registry.auth import ensure_keypair, public_key
from ollamapy.registry.client import RegistryClient, RegistryError, RegistryNotFound
from ollamapy.registry.download import DigestMismatch
from ollamapy.registry.manager import TransferManager
from ollamapy.registry.pull import pull_model
from ollamapy.registry.push import push_model
from ollamapy.registry.transfer import TransferSettings

__all__ = [
    "DigestMismatch",
    "RegistryClient",
    "RegistryError",
    "RegistryNotFound",
    "TransferManager",
    "TransferSettings",
    "ensure_keypair",
    "public_key",
    "pull_model",
    "push_model",
]
