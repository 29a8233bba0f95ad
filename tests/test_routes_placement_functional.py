"""``POST /api/plan`` over real HTTP, and ``ollamapy plan`` against a live test server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from ollamapy.cli.plan import plan_command
from ollamapy.store.gguf import read_gguf
from ollamapy.supervisor.app import create_app
from ollamapy.supervisor.placement.gpu_probe import GpuInfo, Inventory, SystemMemory
from ollamapy.supervisor.placement.memory_estimate import estimate_memory
from ollamapy.supervisor.routes import placement as routes_placement

GIB = 1 << 30

TWO_CARDS = {
    "gpus": [
        {"vendor": "nvidia", "name": "RTX 4090", "total": "24 GiB"},
        {"vendor": "nvidia", "name": "RTX 4090", "total": "24 GiB", "free": "20 GiB"},
    ],
    "system": {"total": "64 GiB", "free": "48 GiB"},
}


def plan_app(models_dir: Path) -> web.Application:
    return create_app(models_dir)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("OLLAMA_CONTEXT_LENGTH", "OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_GPU_OVERHEAD", "OLLAMA_SCHED_SPREAD", "OLLAMA_NUM_PARALLEL"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path) -> TestClient:
    return await aiohttp_client(plan_app(models_dir))


async def create_tiny(client: TestClient, gguf: Path, name: str = "tiny", **extra: Any) -> None:
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    resp = await client.post(f"/api/blobs/{digest}", data=gguf.read_bytes())
    assert resp.status in (200, 201), await resp.text()
    resp = await client.post("/api/create", json={"model": name, "files": {"tiny.gguf": digest}, "stream": False, **extra})
    assert resp.status == 200, await resp.text()


async def plan(client: TestClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    resp = await client.post("/api/plan", json=body)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_plan_for_a_described_inventory(client: TestClient, tiny_gguf: Path) -> None:
    await create_tiny(client, tiny_gguf)
    body = await plan(client, {"model": "tiny", "inventory": TWO_CARDS})
    assert body["model"] == "tiny:latest"
    est, placement = body["estimate"], body["placement"]
    assert est["num_ctx"] == 4096  # 262144 tier for 48 GiB, clamped to the trained context
    assert est["flash_attention"] is False  # the described GPUs have no compute capability
    assert est["kv"] == 2 * 4096 * 128 * 2
    assert placement["processor"] == "100% GPU"
    assert placement["env"] == {"CUDA_VISIBLE_DEVICES": "0"}  # the card with most free
    assert placement["devices"] == [{"id": "0", "name": "RTX 4090", "layers": 3, "bytes": placement["size_vram"]}]
    assert placement["size"] == placement["size_vram"] == est["full_offload"]
    assert [g["free"] for g in body["inventory"]["gpus"]] == [24 * GIB, 20 * GIB]


async def test_context_parallel_and_options(client: TestClient, tiny_gguf: Path) -> None:
    await create_tiny(client, tiny_gguf, parameters={"num_ctx": 1024, "temperature": 0.2})
    body = await plan(client, {"model": "tiny", "inventory": TWO_CARDS})
    assert body["estimate"]["num_ctx"] == 1024  # the model's own parameter
    body = await plan(client, {"model": "tiny", "num_ctx": 512, "num_parallel": 3, "inventory": TWO_CARDS})
    assert (body["estimate"]["num_ctx"], body["estimate"]["num_parallel"]) == (512, 3)
    assert body["estimate"]["kv"] == 2 * 1536 * 128 * 2
    body = await plan(client, {"model": "tiny", "options": {"num_gpu": 0}, "inventory": TWO_CARDS})
    assert body["placement"]["processor"] == "100% CPU"
    body = await plan(client, {"model": "tiny", "options": {"main_gpu": 1}, "inventory": TWO_CARDS})
    assert body["placement"]["env"] == {"CUDA_VISIBLE_DEVICES": "1"}


async def test_inventory_without_system_memory_uses_the_servers(client: TestClient, tiny_gguf: Path) -> None:
    await create_tiny(client, tiny_gguf)
    body = await plan(client, {"model": "tiny", "inventory": {"gpus": []}})
    assert body["inventory"]["system"]["total"] > 0
    assert body["placement"]["reason"] == "CPU: no GPU found"


async def test_model_that_fits_nowhere(client: TestClient, tiny_gguf: Path) -> None:
    await create_tiny(client, tiny_gguf)
    inventory = {"gpus": [{"vendor": "amd", "total": "460 MiB"}], "system": {"total": "1 MiB", "free": "1 MiB"}}
    body = await plan(client, {"model": "tiny", "inventory": inventory})
    assert body["placement"] is None
    assert body["reason"].startswith("model requires more system memory (")
    assert "than is available (1.0 MiB)" in body["reason"]
    assert body["estimate"]["cpu_only"] > 0


async def test_without_inventory_the_server_probes(client: TestClient, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probed = Inventory(
        gpus=(GpuInfo(vendor="amd", id="GPU-1f9de0957d137942", name="MI250", total=64 * GIB, free=60 * GIB, compute="gfx90a"),),
        system=SystemMemory(total=512 * GIB, free=500 * GIB),
    )
    calls: list[bool] = []

    def fake_probe(*, refresh: bool = False) -> Inventory:
        calls.append(refresh)
        return probed

    monkeypatch.setattr(routes_placement, "probe_inventory", fake_probe)
    await create_tiny(client, tiny_gguf)
    body = await plan(client, {"model": "tiny"})
    assert calls == [True]
    assert body["estimate"]["flash_attention"] is True  # ROCm supports it
    assert body["placement"]["env"] == {"ROCR_VISIBLE_DEVICES": "GPU-1f9de0957d137942", "HIP_VISIBLE_DEVICES": "0"}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "nope", "inventory": TWO_CARDS}, 404, "model 'nope' not found"),
        ({"model": "tiny", "inventory": {"gpus": [{"vendor": "intel", "total": 1}]}}, 400, "invalid inventory: gpus.0.vendor: "),
        ({"model": "tiny", "inventory": {"gpus": [{"vendor": "nvidia", "total": "lots"}]}}, 400, "invalid inventory: gpus.0.total: "),
        ({"model": "tiny", "options": {"main_gpu": 7}, "inventory": TWO_CARDS}, 400, "main_gpu 7 does not exist: 2 GPU(s) found"),
        ({"model": "tiny", "options": {"num_gpu": "all"}, "inventory": TWO_CARDS}, 400, 'option "num_gpu" must be of type integer'),
        ({"model": "tiny", "num_ctx": 0}, 400, "invalid value for field 'num_ctx'"),
        ({"model": "tiny", "colour": "red"}, 400, "invalid value for field 'colour'"),
    ],
)
async def test_bad_requests(client: TestClient, tiny_gguf: Path, body: dict[str, Any], status: int, error: str) -> None:
    await create_tiny(client, tiny_gguf)
    answer = await plan(client, body, status)
    assert answer["error"].startswith(error)


async def test_missing_body(client: TestClient) -> None:
    assert await plan(client, {}, 400) == {"error": "invalid value for field 'model': Field required"}
    resp = await client.post("/api/plan", data=b"")
    assert resp.status == 400 and await resp.json() == {"error": "missing request body"}


# --- the CLI against a live server -------------------------------------------------------


@pytest.fixture
async def live_host(aiohttp_server: Any, models_dir: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any) -> str:
    server: TestServer = await aiohttp_server(plan_app(models_dir))
    await create_tiny(await aiohttp_client(server), tiny_gguf)
    host = f"127.0.0.1:{server.port}"
    monkeypatch.setenv("OLLAMA_HOST", host)
    return host


async def run_cli(*args: str) -> Result:
    """Run the command in a worker thread (it has its own event loop) while this loop serves."""
    return await asyncio.to_thread(CliRunner().invoke, plan_command, list(args))


async def test_cli_plan_with_inventory(live_host: str, tmp_path: Path) -> None:
    inventory = tmp_path / "two-cards.json"
    inventory.write_text(json.dumps(TWO_CARDS))
    result = await run_cli("tiny", "--num-ctx", "2048", "--parallel", "2", "--inventory", str(inventory))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Model" in out and "tiny" in out
    assert "2048 tokens × 2 parallel" in out
    assert "Memory estimate" in out and "KV cache" in out and "2.0 MiB" in out
    assert "RTX 4090" in out and "24.0 GiB" in out and "20.0 GiB" in out
    assert "Placement: 100% GPU" in out
    assert "3/3" in out
    assert "CUDA_VISIBLE_DEVICES=0" in out


async def test_cli_plan_partial_offload_shows_the_cpu_share(live_host: str, tmp_path: Path, tiny_gguf: Path) -> None:
    est = estimate_memory(read_gguf(tiny_gguf), num_ctx=4096)
    # room for everything but the output layer: 2 of 3 layers go to the GPU
    free = est.reserve + math.ceil((est.full_offload - 1) / 0.8)
    inventory = tmp_path / "small.json"
    inventory.write_text(json.dumps({"gpus": [{"vendor": "nvidia", "total": free}], "system": {"total": "8 GiB", "free": "8 GiB"}}))
    result = await run_cli("tiny", "--inventory", str(inventory))
    assert result.exit_code == 0, result.output
    assert "CPU/GPU" in result.output and "Placement: 100%" not in result.output
    assert "partial offload: 2/3 layers" in result.output.replace("\n", " ")
    assert "cpu" in result.output and "CPU" in result.output


async def test_cli_plan_that_fits_nowhere(live_host: str, tmp_path: Path) -> None:
    inventory = tmp_path / "none.json"
    inventory.write_text(json.dumps({"gpus": [], "system": {"total": 1024, "free": 1024}}))
    result = await run_cli("tiny", "--inventory", str(inventory))
    assert result.exit_code == 0, result.output
    assert "Placement: does not fit" in result.output
    assert "model requires more system memory" in result.output


async def test_cli_plan_errors(live_host: str, tmp_path: Path) -> None:
    result = await run_cli("nope")
    assert result.exit_code == 1
    assert result.output == "Error: model 'nope' not found\n"
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = await run_cli("tiny", "--inventory", str(bad))
    assert result.exit_code == 1 and "expected a JSON object" in result.output
    bad.write_text('{"gpus": [{"vendor": "nvidia"}]}')
    result = await run_cli("tiny", "--inventory", str(bad))
    assert result.exit_code == 1 and result.output.startswith("Error: invalid inventory: gpus.0.total")


async def test_cli_plan_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    result = await run_cli("tiny")
    assert result.exit_code == 1
    assert result.output == "Error: could not connect to ollamapy server, is it running? (start it with 'ollamapy serve')\n"
