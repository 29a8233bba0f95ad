"""Shared fixtures: the tiny GGUF models every serving test runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

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
