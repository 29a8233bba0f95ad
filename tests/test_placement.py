"""The placement policy as a table (1, 2, 4, 8 GPUs; NVIDIA and AMD; equal and mixed free
memory; fits one, needs a split, needs partial offload, fits nowhere; overrides), the
``ollama ps`` PROCESSOR label, and the seam the scheduler calls.

Most rows use one synthetic model, ``M``, with round numbers (MiB): 32 layers of 200
weights + 8 KV, an output layer of 250, input embeddings of 250 and a 200 compute graph.
On one GPU it needs 32 × 208 + 250 + 200 = 7106; on the CPU 7356. A GPU with F GiB free
gives 0.8 × (F × 1024 − 457) MiB: 24 → 19295, 12 → 9465, 8 → 6188, 6 → 4550, 4 → 2911,
3 → 2092, 2 → 1273, 0.5 → 44.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ollamapy.api.options import LoadOptions
from ollamapy.api.runner_protocol import LoadSpec
from ollamapy.errors import InvalidRequest, OllamapyError
from ollamapy.store.gguf import read_gguf
from ollamapy.supervisor.placement.gpu_probe import GpuInfo, Inventory, SystemMemory
from ollamapy.supervisor.placement.memory_estimate import MINIMUM_MEMORY, MemoryEstimate
from ollamapy.supervisor.placement.plan import (
    InsufficientMemory,
    default_num_ctx,
    placement_for,
    plan_placement,
    processor_label,
    reserve_loaded,
)
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf

MIB = 1 << 20
GIB = 1 << 30


def model(layers: int = 32, layer: int = 200, kv: int = 8, output: int = 250, inputs: int = 250, graph: int = 200, projector: int = 0, reserve: int = 457) -> MemoryEstimate:
    """A synthetic estimate; sizes in MiB."""
    return MemoryEstimate(
        num_ctx=4096,
        num_parallel=1,
        num_batch=512,
        kv_cache_type="f16",
        flash_attention=False,
        layer_weights=(layer * MIB,) * layers,
        layer_kv=(kv * MIB,) * layers,
        input_weights=inputs * MIB,
        output_gpu_weights=output * MIB,
        output_cpu_weights=output * MIB,
        graph=graph * MIB,
        logits=0,
        projector=projector * MIB,
        reserve=reserve * MIB,
    )


M = model()


def gpus(*specs: tuple[str, float]) -> tuple[GpuInfo, ...]:
    """GPUs from (vendor, free GiB); total = free, ids ``nv0``/``amd0``…, indexes per vendor."""
    out, counters = [], {"nvidia": 0, "amd": 0}
    for vendor, free in specs:
        index = counters[vendor]
        counters[vendor] += 1
        size = int(free * GIB)
        out.append(GpuInfo(vendor=vendor, index=index, id=f"{'nv' if vendor == 'nvidia' else 'amd'}{index}", total=size, free=size, compute="8.6"))
    return tuple(out)


def inventory(*specs: tuple[str, float], ram: float = 64) -> Inventory:
    return Inventory(gpus=gpus(*specs), system=SystemMemory(total=int(ram * GIB), free=int(ram * GIB)))


NV, AMD = "nvidia", "amd"

# (name, inventory, options, processor, n_gpu_layers, {device id: layers}, split_mode, tensor_split, env)
POLICY = [
    ("1 GPU, fits", inventory((NV, 24)), {}, "100% GPU", 33, {"nv0": 33}, "none", None, {"CUDA_VISIBLE_DEVICES": "nv0"}),
    # (6188 − 200) // 208 = 28 layers; CPU keeps 250 + 4 × 208 + 250 = 1332 of 7356 → 18 %
    ("1 GPU, partial", inventory((NV, 8)), {}, "18%/82% CPU/GPU", 28, {"nv0": 28, "cpu": 5}, "none", None, {"CUDA_VISIBLE_DEVICES": "nv0"}),
    # layer i goes to device ⌊i/33 ÷ ½⌋: 17 on the first, 15 + output on the second
    ("2 equal, split", inventory((NV, 6), (NV, 6)), {}, "100% GPU", 33, {"nv0": 17, "nv1": 16}, "layer", (0.5, 0.5), {"CUDA_VISIBLE_DEVICES": "nv0,nv1"}),
    ("2 mixed, the one with most free", inventory((NV, 8), (NV, 12)), {}, "100% GPU", 33, {"nv1": 33}, "none", None, {"CUDA_VISIBLE_DEVICES": "nv1"}),
    ("2 mixed, split by free", inventory((NV, 8), (NV, 4)), {}, "100% GPU", 33, {"nv0": 22, "nv1": 11}, "layer", (0.6667, 0.3333), {"CUDA_VISIBLE_DEVICES": "nv0,nv1"}),
    # two 4 GiB cards cannot hold 17 layers each (3736 > 2911); three can
    ("4 equal, needs 3", inventory((NV, 4), (NV, 4), (NV, 4), (NV, 4)), {}, "100% GPU", 33, {"nv0": 11, "nv1": 11, "nv2": 11}, "layer", (0.3333, 0.3333, 0.3333), {"CUDA_VISIBLE_DEVICES": "nv0,nv1,nv2"}),
    ("4 equal, OLLAMA_SCHED_SPREAD", inventory((NV, 4), (NV, 4), (NV, 4), (NV, 4)), {"sched_spread": True}, "100% GPU", 33, {"nv0": 9, "nv1": 8, "nv2": 8, "nv3": 8}, "layer", (0.25, 0.25, 0.25, 0.25), {"CUDA_VISIBLE_DEVICES": "nv0,nv1,nv2,nv3"}),
    # 2 GiB AMD cards hold 5 layers each (1240 ≤ 1273): six cards would need 6 on some
    ("8 AMD, needs 7", inventory(*[(AMD, 2)] * 8), {}, "100% GPU", 33, {f"amd{i}": n for i, n in enumerate([5, 5, 5, 4, 5, 5, 4])}, "layer", (0.1429,) * 7,
     {"ROCR_VISIBLE_DEVICES": ",".join(f"amd{i}" for i in range(7)), "HIP_VISIBLE_DEVICES": "0,1,2,3,4,5,6"}),
    ("8 AMD, spread", inventory(*[(AMD, 2)] * 8), {"sched_spread": True}, "100% GPU", 33, {f"amd{i}": n for i, n in enumerate([5, 4, 4, 4, 4, 4, 4, 4])}, "layer", (0.125,) * 8,
     {"ROCR_VISIBLE_DEVICES": ",".join(f"amd{i}" for i in range(8)), "HIP_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}),
    ("vendors: the group with most free", inventory((NV, 4), (NV, 4), (AMD, 8), (AMD, 8)), {}, "100% GPU", 33, {"amd0": 17, "amd1": 16}, "layer", (0.5, 0.5),
     {"ROCR_VISIBLE_DEVICES": "amd0,amd1", "HIP_VISIBLE_DEVICES": "0,1"}),
    # 9 layers per 3 GiB card (2072 ≤ 2092): 18 offloaded; CPU keeps 250 + 14 × 208 + 250 = 3412 of 7556
    ("2 GPUs, partial", inventory((NV, 3), (NV, 3)), {}, "45%/55% CPU/GPU", 18, {"nv0": 9, "nv1": 9, "cpu": 15}, "layer", (0.5, 0.5), {"CUDA_VISIBLE_DEVICES": "nv0,nv1"}),
    ("no room on any GPU: CPU", inventory((NV, 0.5)), {}, "100% CPU", 0, {"cpu": 33}, "none", None, {"CUDA_VISIBLE_DEVICES": "-1"}),
    ("no GPU: CPU", inventory(), {}, "100% CPU", 0, {"cpu": 33}, "none", None, {}),
    ("num_gpu 0", inventory((NV, 24), (AMD, 24)), {"num_gpu": 0}, "100% CPU", 0, {"cpu": 33}, "none", None,
     {"CUDA_VISIBLE_DEVICES": "-1", "ROCR_VISIBLE_DEVICES": "-1", "HIP_VISIBLE_DEVICES": "-1"}),
    ("num_gpu 10", inventory((NV, 24)), {"num_gpu": 10}, "69%/31% CPU/GPU", 10, {"nv0": 10, "cpu": 23}, "none", None, {"CUDA_VISIBLE_DEVICES": "nv0"}),
    ("num_gpu beyond the layers", inventory((NV, 24)), {"num_gpu": 999}, "100% GPU", 33, {"nv0": 33}, "none", None, {"CUDA_VISIBLE_DEVICES": "nv0"}),
    ("num_gpu honoured beyond the estimate", inventory((NV, 4)), {"num_gpu": 33}, "100% GPU", 33, {"nv0": 33}, "none", None, {"CUDA_VISIBLE_DEVICES": "nv0"}),
    ("main_gpu, fits there", inventory((NV, 24), (NV, 12)), {"main_gpu": 1}, "100% GPU", 33, {"nv1": 33}, "none", None, {"CUDA_VISIBLE_DEVICES": "nv1"}),
    ("main_gpu, split around it", inventory((NV, 6), (NV, 6), (NV, 6)), {"main_gpu": 2}, "100% GPU", 33, {"nv0": 17, "nv2": 16}, "layer", (0.5, 0.5), {"CUDA_VISIBLE_DEVICES": "nv0,nv2"}),
    ("OLLAMA_SCHED_SPREAD on a model that fits one", inventory((NV, 24), (NV, 24)), {"sched_spread": True}, "100% GPU", 33, {"nv0": 17, "nv1": 16}, "layer", (0.5, 0.5), {"CUDA_VISIBLE_DEVICES": "nv0,nv1"}),
]


@pytest.mark.parametrize(
    ("inv", "options", "processor", "n_gpu_layers", "layers", "split_mode", "tensor_split", "env"),
    [row[1:] for row in POLICY],
    ids=[row[0] for row in POLICY],
)
def test_policy(
    inv: Inventory,
    options: dict[str, Any],
    processor: str,
    n_gpu_layers: int,
    layers: dict[str, int],
    split_mode: str,
    tensor_split: tuple[float, ...] | None,
    env: dict[str, str],
) -> None:
    placement = plan_placement(inv, M, **options)
    assert placement.processor == processor
    assert placement.n_gpu_layers == n_gpu_layers
    assert {d.id: d.layers for d in placement.devices} == layers
    assert placement.split_mode == split_mode
    assert placement.tensor_split == tensor_split
    assert placement.env == env
    assert placement.layers_total == 33
    assert placement.kv_bytes == 32 * 8 * MIB
    # every device that holds layers holds them within what the policy allows, unless forced
    if "num_gpu" not in options:
        by_id = {g.id: g for g in inv.gpus}
        for device in placement.devices:
            if device.id in by_id:
                assert device.bytes <= 0.8 * (by_id[device.id].free - M.reserve)
    assert placement.size_vram == sum(d.bytes for d in placement.devices if d.id != "cpu")
    assert placement.size >= placement.size_vram


def test_main_gpu_is_numbered_among_the_visible_devices() -> None:
    placement = plan_placement(inventory((NV, 6), (NV, 6), (NV, 6)), M, main_gpu=2)
    assert placement.env == {"CUDA_VISIBLE_DEVICES": "nv0,nv2"}
    assert placement.main_gpu == 1  # nv2 is the runner's second device


def test_split_main_gpu_is_the_one_with_most_free() -> None:
    placement = plan_placement(inventory((NV, 4), (NV, 8)), M)
    assert placement.env == {"CUDA_VISIBLE_DEVICES": "nv0,nv1"}
    assert placement.tensor_split == (0.3333, 0.6667)
    assert placement.main_gpu == 1


def test_fully_offloaded_size_is_the_vram() -> None:
    placement = plan_placement(inventory((NV, 24)), M)
    assert placement.size == placement.size_vram == M.full_offload == 7106 * MIB
    assert "fits on one GPU" in placement.reason


def test_cpu_size_is_the_whole_model() -> None:
    placement = plan_placement(inventory(), M)
    assert placement.size == M.cpu_only == 7356 * MIB and placement.size_vram == 0
    assert placement.reason == "CPU: no GPU found"


def test_partial_offload_reason() -> None:
    placement = plan_placement(inventory((NV, 3), (NV, 3)), M)
    assert placement.reason.startswith("partial offload: 18/33 layers fit on 2 NVIDIA GPUs")


def test_reserve_is_kept_free() -> None:
    # 6300 MiB fits 80 % of 8 GiB (6554) but not 80 % of (8 GiB − 457 MiB) (6188)
    big = model(layers=30, layer=196, kv=0, output=230, graph=190)
    assert big.full_offload == 6300 * MIB
    assert plan_placement(inventory((NV, 8)), big).n_gpu_layers < 31
    # OLLAMA_GPU_OVERHEAD adds to the reserve
    assert plan_placement(inventory((NV, 24)), replace(big, reserve=MINIMUM_MEMORY + 16 * GIB)).n_gpu_layers < 31


def test_discrete_gpus_are_preferred_over_integrated() -> None:
    igpu = GpuInfo(vendor="amd", id="apu", total=32 * GIB, free=32 * GIB, integrated=True)
    (discrete,) = gpus((NV, 12))
    placement = plan_placement(Inventory(gpus=(igpu, discrete), system=SystemMemory(total=64 * GIB, free=64 * GIB)), M)
    assert placement.env == {"CUDA_VISIBLE_DEVICES": "nv0"}


def test_projector_goes_to_the_main_gpu() -> None:
    placement = plan_placement(inventory((NV, 24)), model(projector=900))
    assert placement.devices[0].bytes == (7106 + 900) * MIB


def test_fits_nowhere_names_what_was_needed_and_free() -> None:
    with pytest.raises(OllamapyError) as excinfo:
        plan_placement(inventory((NV, 0.5), ram=4), M)
    assert excinfo.value.status_code == 500
    message = str(excinfo.value)
    assert message.startswith("model requires more system memory (7.2 GiB) than is available (4.0 GiB)")
    assert "it needs 6.9 GiB of VRAM" in message
    assert "the most any GPU can give is 44.0 MiB" in message


def test_fits_nowhere_without_gpus() -> None:
    with pytest.raises(OllamapyError, match=r"^model requires more system memory \(7\.2 GiB\) than is available \(1\.0 GiB\)$"):
        plan_placement(inventory(ram=1), M)


def test_partial_offload_needs_the_rest_in_system_memory() -> None:
    with pytest.raises(OllamapyError, match=r"\(3\.3 GiB\) than is available \(2\.0 GiB\) with 18/33 layers on GPU"):
        plan_placement(inventory((NV, 3), (NV, 3), ram=2), M)


def test_fits_says_whether_eviction_could_do_better() -> None:
    assert plan_placement(inventory((NV, 12)), M).fits
    assert plan_placement(inventory(), M).fits  # no GPU: the CPU is all there is
    assert plan_placement(inventory((NV, 12)), M, num_gpu=0).fits  # asked for the CPU
    assert plan_placement(inventory((NV, 4)), M, num_gpu=20).fits  # asked for 20 layers
    assert not plan_placement(inventory((NV, 4)), M).fits  # automatic partial offload
    assert not plan_placement(inventory((NV, 0.5)), M).fits  # CPU for want of a GPU with room
    with pytest.raises(InsufficientMemory):
        plan_placement(inventory(ram=1), M)


def test_reserve_loaded_counts_plans_the_probe_does_not_show_yet() -> None:
    inv = inventory((NV, 12), (NV, 12), ram=16)
    first = plan_placement(inv, M)
    assert first.env == {"CUDA_VISIBLE_DEVICES": "nv0"}
    after = reserve_loaded(inv, [first])
    assert after.gpus[0].free == 12 * GIB - 7106 * MIB and after.gpus[1].free == 12 * GIB
    assert plan_placement(after, M).env == {"CUDA_VISIBLE_DEVICES": "nv1"}
    second = plan_placement(after, M)
    third = plan_placement(reserve_loaded(inv, [first, second]), M)
    assert third.fits and third.split_mode == "layer"  # what is left of both GPUs
    assert not plan_placement(reserve_loaded(inv, [first, second, third]), M).fits
    # a probe that already shows the runner's memory is not charged twice
    shown = Inventory(gpus=(replace_free(inv.gpus[0], 12 * GIB - 7106 * MIB), inv.gpus[1]), system=inv.system)
    assert reserve_loaded(shown, [first]).gpus[0].free == 12 * GIB - 7106 * MIB
    cpu = plan_placement(inventory(ram=16), M)
    assert reserve_loaded(inventory(ram=16), [cpu]).system.free == 16 * GIB - 7356 * MIB


def replace_free(gpu: GpuInfo, free: int) -> GpuInfo:
    return gpu.model_copy(update={"free": free})


def test_system_free_overrides_the_inventory() -> None:
    with pytest.raises(OllamapyError):
        plan_placement(inventory(ram=64), M, system_free=GIB)


def test_main_gpu_out_of_range() -> None:
    with pytest.raises(InvalidRequest, match="main_gpu 5 does not exist: 2 GPU"):
        plan_placement(inventory((NV, 8), (NV, 8)), M, main_gpu=5)


def test_placement_json() -> None:
    body = plan_placement(inventory((NV, 8), (NV, 4)), M).to_json()
    assert body["processor"] == "100% GPU"
    assert body["tensor_split"] == [0.6667, 0.3333]
    assert body["devices"][0] == {"id": "nv0", "name": "NVIDIA GPU", "layers": 22, "bytes": (22 * 208 + 200) * MIB}
    assert body["kv_bytes"] == 256 * MIB
    assert body["env"] == {"CUDA_VISIBLE_DEVICES": "nv0,nv1"}
    assert set(body) >= {"size", "size_vram", "reason", "n_gpu_layers", "main_gpu", "split_mode", "num_ctx", "flash_attention", "kv_cache_type"}


def test_load_spec_fields_build_a_runner_load_spec() -> None:
    placement = plan_placement(inventory((NV, 8), (NV, 4)), M)
    spec = LoadSpec(model_path="/m.gguf", **placement.load_spec_fields())
    assert (spec.n_gpu_layers, spec.split_mode, spec.tensor_split, spec.main_gpu) == (33, "layer", [0.6667, 0.3333], 0)


@pytest.mark.parametrize(
    ("size", "size_vram", "label"),
    [
        (0, 0, "100% CPU"),
        (100, 0, "100% CPU"),
        (100, 100, "100% GPU"),
        (100, 52, "48%/52% CPU/GPU"),
        (1000, 995, "1%/99% CPU/GPU"),  # 0.5 rounds away from zero, as Go's math.Round
        (1000, 5, "100%/0% CPU/GPU"),
        (3, 1, "67%/33% CPU/GPU"),
        (100, 150, "Unknown"),
        (0, 5, "Unknown"),
    ],
)
def test_processor_label(size: int, size_vram: int, label: str) -> None:
    assert processor_label(size, size_vram) == label


# --- the seam ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("totals", "overhead", "expected"),
    [((), 0, 4096), ((8,), 0, 4096), ((24,), 0, 32768), ((24,), 2 * GIB, 4096), ((24, 24), 0, 262144), ((24, 24), GIB, 32768)],
)
def test_default_context_tier(totals: tuple[int, ...], overhead: int, expected: int) -> None:
    inv = inventory(*[(NV, t) for t in totals])
    assert default_num_ctx(inv, overhead) == expected


@pytest.fixture(scope="module")
def tiny_info(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny model with heads of 32, so a quantized KV cache fits them."""
    return read_gguf(write_tiny_gguf(tmp_path_factory.mktemp("placement") / "tiny.gguf", TinyModelSpec(head_count=2)))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in ("OLLAMA_CONTEXT_LENGTH", "OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_GPU_OVERHEAD", "OLLAMA_SCHED_SPREAD"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_placement_for_resolves_automatic_settings(tiny_info: Any, clean_env: pytest.MonkeyPatch) -> None:
    placement = placement_for(tiny_info, LoadOptions(), 1, inventory((NV, 24)))
    assert placement.num_ctx == 4096  # 32768 tier, clamped to the trained context
    assert placement.flash_attention  # every GPU supports it
    assert placement.kv_cache_type == "f16"
    assert placement.processor == "100% GPU"
    assert placement.estimate.reserve == MINIMUM_MEMORY


def test_placement_for_reads_the_environment(tiny_info: Any, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OLLAMA_CONTEXT_LENGTH", "2048")
    clean_env.setenv("OLLAMA_FLASH_ATTENTION", "1")
    clean_env.setenv("OLLAMA_KV_CACHE_TYPE", "q8_0")
    clean_env.setenv("OLLAMA_GPU_OVERHEAD", str(GIB))
    clean_env.setenv("OLLAMA_SCHED_SPREAD", "1")
    placement = placement_for(tiny_info, LoadOptions(), 2, inventory((NV, 24), (NV, 24)))
    assert (placement.num_ctx, placement.num_parallel, placement.kv_cache_type) == (2048, 2, "q8_0")
    assert placement.estimate.reserve == GIB + MINIMUM_MEMORY
    assert placement.split_mode == "layer" and len(placement.tensor_split or ()) == 2


def test_placement_for_flash_attention_and_options(tiny_info: Any, clean_env: pytest.MonkeyPatch) -> None:
    # CPU only: automatic flash attention is on (the CPU supports it), but a quantized
    # cache needs flash attention asked for, as in Ollama
    clean_env.setenv("OLLAMA_KV_CACHE_TYPE", "q4_0")
    cpu = placement_for(tiny_info, LoadOptions(num_ctx=100_000), 1, inventory())
    assert (cpu.flash_attention, cpu.kv_cache_type, cpu.num_ctx) == (True, "f16", 4096)
    old = GpuInfo(vendor="nvidia", total=8 * GIB, free=8 * GIB, compute="7.2")
    jetson = placement_for(tiny_info, LoadOptions(num_ctx=512), 1, Inventory(gpus=(old,), system=SystemMemory(total=GIB, free=GIB)))
    assert not jetson.flash_attention
    clean_env.setenv("OLLAMA_FLASH_ATTENTION", "1")
    forced = placement_for(tiny_info, LoadOptions(num_ctx=512, num_gpu=1, main_gpu=0), 1, inventory((NV, 24)))
    assert (forced.flash_attention, forced.kv_cache_type, forced.n_gpu_layers) == (True, "q4_0", 1)
    assert not placement_for(tiny_info, LoadOptions(num_ctx=512), 1, Inventory(gpus=(old,), system=SystemMemory(total=GIB, free=GIB))).flash_attention
    clean_env.setenv("OLLAMA_FLASH_ATTENTION", "0")
    off = placement_for(tiny_info, LoadOptions(num_ctx=512), 1, inventory())
    assert (off.flash_attention, off.kv_cache_type) == (False, "f16")


def test_placement_for_counts_projector_files(tiny_info: Any, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    projector = tmp_path / "mmproj.gguf"
    projector.write_bytes(b"\0" * 4096)
    placement = placement_for(tiny_info, LoadOptions(num_ctx=512), 1, inventory((NV, 24)), projector_paths=[projector])
    assert placement.estimate.projector == 4096
