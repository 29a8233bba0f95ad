"""Typed keys for what the aiohttp application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from ollamapy.store import ModelStore

__all__ = ["STORE"]

STORE: web.AppKey[ModelStore] = web.AppKey("store", ModelStore)
