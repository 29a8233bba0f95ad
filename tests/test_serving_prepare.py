"""``prepare_load``: the automatic ``num_parallel`` is planned once per model, options and
probed inventory, not again on every request for a model that is already loaded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ollamapy.store.model import Model
from ollamapy.store.model_store import MEDIA_TYPE_CONFIG, Layer, Manifest
from ollamapy.store.names import ModelName
from ollamapy.supervisor import serving
from ollamapy.supervisor.placement.gpu_probe import Inventory, SystemMemory


def tiny_model(path: Path) -> Model:
    config = Layer(media_type=MEDIA_TYPE_CONFIG, digest="sha256:" + "0" * 64, size=2)
    return Model(
        name=ModelName.parse("tiny"),
        manifest=Manifest(config=config, layers=[]),
        config={},
        digest="0" * 64,
        modified_at=datetime.now(UTC),
        model_path=path,
        _capabilities=["completion"],
    )


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``num_parallel`` of every placement planned."""
    planned: list[int] = []
    real = serving.placement_for

    def counting(*args: Any, **kwargs: Any) -> Any:
        planned.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(serving, "placement_for", counting)
    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    return planned


def test_planned_once_while_the_inventory_is_unchanged(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, plans: list[int]) -> None:
    inventory = Inventory(system=SystemMemory(total=1 << 40, free=1 << 40))
    monkeypatch.setattr(serving, "probe_inventory", lambda: inventory)
    model = tiny_model(tiny_gguf)
    first = serving.prepare_load(model, {"num_ctx": 4096})
    again = serving.prepare_load(model, {"num_ctx": 4096})
    assert first.load.num_parallel == again.load.num_parallel == 4
    assert plans == [1, 4]
    serving.prepare_load(model, {"num_ctx": 2048})  # other load options: planned for them
    assert plans == [1, 4, 1, 4]


def test_planned_again_after_a_new_probe(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, plans: list[int]) -> None:
    current = [Inventory(system=SystemMemory(total=1 << 40, free=1 << 40))]
    monkeypatch.setattr(serving, "probe_inventory", lambda: current[0])
    model = tiny_model(tiny_gguf)
    assert serving.prepare_load(model, {"num_ctx": 4096}).load.num_parallel == 4
    current[0] = Inventory(system=SystemMemory(total=1 << 40, free=1 << 40))
    assert serving.prepare_load(model, {"num_ctx": 4096}).load.num_parallel == 4
    assert plans == [1, 4, 1, 4]


def test_an_explicit_setting_plans_nothing(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, plans: list[int]) -> None:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "2")
    monkeypatch.setattr(serving, "probe_inventory", lambda: Inventory(system=SystemMemory(total=1 << 40, free=1 << 40)))
    assert serving.prepare_load(tiny_model(tiny_gguf), {"num_ctx": 4096}).load.num_parallel == 2
    assert plans == []
