"""Shared fixtures: the tiny GGUF models every serving test runs on, and an application
on fake runners for handler tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.supervisor.app import create_app
from ollamapy.testing.access_log import AccessLines, capture_access_log
from ollamapy.testing.api import create_model
from ollamapy.testing.fake_runner import FakeRunnerFactory
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~500 KB random-weight llama GGUF (F32) that llama.cpp loads in milliseconds."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_embed_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model marked as an embedding model (mean pooling)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-embed.gguf", TinyModelSpec(pooling_type=1, name="tiny-embed"))


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model store, exported as OLLAMA_MODELS for code that reads the environment."""
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    return root


@pytest.fixture
def fake_runners() -> FakeRunnerFactory:
    """The runner factory of ``fake_client``: script its ``reply``, inspect what it ``started``."""
    return FakeRunnerFactory()


@pytest.fixture
async def fake_client(aiohttp_client: Any, models_dir: Path, fake_runners: FakeRunnerFactory) -> TestClient:
    """The whole application over an empty store, its runners ``fake_runners`` (no llama.cpp)."""
    client: TestClient = await aiohttp_client(create_app(models_dir, runner_factory=fake_runners))
    return client


@pytest.fixture
async def two_slot_client(aiohttp_client: Any, models_dir: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The whole application with real runners of two slots and the tiny model ``tiny``
    (template ``{{ .Prompt }}``) in its store."""
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "2")
    client: TestClient = await aiohttp_client(create_app(models_dir))
    await create_model(client, "tiny", tiny_gguf, template="{{ .Prompt }}")
    return client


@pytest.fixture
def access_log() -> Iterator[AccessLines]:
    """The ``ollamapy.access`` lines written during the test."""
    with capture_access_log() as lines:
        yield lines
