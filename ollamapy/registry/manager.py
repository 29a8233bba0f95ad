"""The registry side of one server: settings, one HTTP session, the downloads in flight."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from ollamapy.registry.client import RegistryClient, new_session
from ollamapy.registry.download import Downloads
from ollamapy.registry.transfer import TransferSettings
from ollamapy.store.names import ModelName

__all__ = ["TransferManager"]


class TransferManager:
    """Shared by every pull and push of a server, so concurrent pulls can share downloads.

    The session is created on first use (inside the running loop) and closed by
    :meth:`close`, which the server calls when it stops.
    """

    def __init__(self, settings: TransferSettings | None = None) -> None:
        self.settings = settings or TransferSettings()
        self.downloads = Downloads(self.settings)
        self._session: aiohttp.ClientSession | None = None

    def client(self, name: ModelName, *, insecure: bool, key_dir: Path) -> RegistryClient:
        """A client for ``name``'s repository; ``key_dir`` holds ``id_ed25519`` for token requests."""
        if self._session is None or self._session.closed:
            self._session = new_session()
        return RegistryClient(self._session, name, insecure=insecure, key_dir=key_dir)

    async def close(self) -> None:
        """Cancel the downloads in flight (their part files stay) and close the session."""
        await self.downloads.close()
        if self._session is not None:
            await self._session.close()
