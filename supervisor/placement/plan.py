"""Where a model runs: one GPU, a split across GPUs, partial offload, or the CPU.

``plan_placement`` is the policy, a pure function of an inventory and an estimate:

1. The single GPU with the most free memory that fits (discrete before integrated), where
   *fits* means every device's share ≤ 80 % of (free − reserve) — unless
   ``OLLAMA_SCHED_SPREAD`` is set.
2. Else the GPUs of one vendor together (2, 3, … of them, most free first; all of them
   under ``OLLAMA_SCHED_SPREAD``), ``tensor_split`` proportional to free memory.
3. Else partial offload: as many layers as fit on one vendor's GPUs, the rest on the CPU.
4. Else the CPU, when system memory allows.
5. Else an error naming what was needed and what was free (``InsufficientMemory``).

A placement that had to settle for less than the options asked for (an automatic partial
offload, or the CPU because no GPU had room) says so (``Placement.fits`` is False): the
scheduler then evicts idle runners and plans again before accepting it.
``reserve_loaded`` takes the memory of loaded runners out of an inventory, since a probe
may not show yet what a runner just loaded holds.

``num_gpu`` (a layer count; 0 = CPU) and ``main_gpu`` (an inventory index) override.
Layers are assigned to devices exactly as llama.cpp assigns them (the last ``n_gpu_layers``
layers are offloaded, the output layer last of all; each goes to the device whose
cumulative ``tensor_split`` range covers it), so the per-device figures are the ones the
runner will see. The choice reaches the runner through its environment
(``CUDA_VISIBLE_DEVICES``, or ``ROCR_VISIBLE_DEVICES`` + ``HIP_VISIBLE_DEVICES``) and its
load parameters (``Placement.load_spec_fields()``).

``placement_for`` is the seam the scheduler calls before a load: it resolves the automatic
settings from the environment (context tier, flash attention, KV cache type, overhead,
``OLLAMA_SCHED_SPREAD``) and applies the policy.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ollamapy import envconfig
from ollamapy.api.options import LoadOptions
from ollamapy.api.runner_protocol import KvCacheType
from ollamapy.cli.display import processor_label
from ollamapy.errors import InvalidRequest, OllamapyError
from ollamapy.kv_cache import KV_FALLBACK_WARNING
from ollamapy.store.gguf import GGUFInfo
from ollamapy.supervisor.placement.gpu_probe import GpuInfo, Inventory, Vendor
from ollamapy.supervisor.placement.memory_estimate import GIB, MemoryEstimate, estimate_memory
from ollamapy.units import format_bytes

log = logging.getLogger("ollamapy.placement")

__all__ = [
    "FIT_FRACTION",
    "DevicePlacement",
    "InsufficientMemory",
    "Placement",
    "default_num_ctx",
    "estimate_for",
    "placement_for",
    "plan_placement",
    "processor_label",
    "reserve_loaded",
    "resolve_flash_attention",
    "resolve_num_ctx",
]

FIT_FRACTION = 0.8
"""A model fits a GPU when its share is at most this fraction of (free − reserve)."""

SplitMode = Literal["none", "layer"]


class InsufficientMemory(OllamapyError):
    """The model fits on no device with the memory free now (500, as Ollama answers it);
    the scheduler evicts idle runners and plans again before letting it reach a user."""


_VENDOR_NAMES: dict[Vendor, str] = {"nvidia": "NVIDIA", "amd": "AMD"}


@dataclass(frozen=True)
class DevicePlacement:
    """What one device holds: llama.cpp layers (the output layer counts as one) and bytes."""

    id: str
    name: str
    layers: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Placement:
    """The plan for one runner: where its layers go and how to start it there.

    ``size``/``size_vram`` are what ``/api/ps`` reports (Ollama's rule: a fully offloaded
    model's size is its VRAM). ``devices`` lists the GPUs used, plus a ``cpu`` entry when
    layers stay on the CPU. ``env`` is merged into the runner's environment.
    """

    n_gpu_layers: int
    layers_total: int
    main_gpu: int
    split_mode: SplitMode
    tensor_split: tuple[float, ...] | None
    env: dict[str, str]
    size: int
    size_vram: int
    devices: tuple[DevicePlacement, ...]
    kv_bytes: int
    reason: str
    num_ctx: int
    num_parallel: int
    flash_attention: bool
    kv_cache_type: KvCacheType
    estimate: MemoryEstimate = field(repr=False, compare=False)
    fits: bool = True
    """Everything the options asked for is where they asked: False for an automatic
    partial offload, or the CPU because no GPU had room (what eviction could improve)."""
    cpu_backend: str | None = None
    """The CPU variant of llama.cpp the runner loads (``zen4``…), once the server knows it."""

    @property
    def processor(self) -> str:
        return processor_label(self.size, self.size_vram)

    def load_spec_fields(self) -> dict[str, Any]:
        """The ``runner_protocol.LoadSpec`` fields this plan decides."""
        return {
            "n_gpu_layers": self.n_gpu_layers,
            "main_gpu": self.main_gpu,
            "split_mode": self.split_mode,
            "tensor_split": list(self.tensor_split) if self.tensor_split else None,
            "flash_attn": self.flash_attention,
            "kv_cache_type": self.kv_cache_type,
        }

    def to_json(self) -> dict[str, Any]:
        """The ``placement`` object of ``/api/ps`` and ``/api/plan`` (Ollama clients ignore it)."""
        return {
            "processor": self.processor,
            "reason": self.reason,
            "size": self.size,
            "size_vram": self.size_vram,
            "kv_bytes": self.kv_bytes,
            "n_gpu_layers": self.n_gpu_layers,
            "layers_total": self.layers_total,
            "main_gpu": self.main_gpu,
            "split_mode": self.split_mode,
            "tensor_split": list(self.tensor_split) if self.tensor_split else None,
            "env": dict(self.env),
            "num_ctx": self.num_ctx,
            "num_parallel": self.num_parallel,
            "flash_attention": self.flash_attention,
            "kv_cache_type": self.kv_cache_type,
            "devices": [d.to_json() for d in self.devices],
            "cpu_backend": self.cpu_backend,
        }


# ---------------------------------------------------------------------------------------
# Layout: which layer goes where, and what each device then holds


@dataclass(frozen=True)
class _Layout:
    gpus: tuple[GpuInfo, ...]
    """In visible order (the order the runner numbers them)."""
    main: int
    n: int
    split: tuple[float, ...]
    layers: tuple[int, ...]
    loads: tuple[int, ...]
    cpu_layers: int
    cpu_bytes: int


def _budget(gpu: GpuInfo, estimate: MemoryEstimate) -> float:
    return FIT_FRACTION * max(gpu.free - estimate.reserve, 0)


def _layout(estimate: MemoryEstimate, gpus: Sequence[GpuInfo], main: GpuInfo, n: int, order: Sequence[GpuInfo]) -> _Layout:
    """Offload the last ``n`` (≥ 1) llama.cpp layers over ``gpus`` as llama.cpp would.

    Every GPU holding layers gets a compute graph, the main GPU the projector; the CPU
    keeps the input tensors, the host logits and the layers not offloaded.
    """
    visible = tuple(sorted(gpus, key=lambda g: order.index(g)))
    total_free = sum(g.free for g in visible)
    split = tuple(g.free / total_free if total_free else 1 / len(visible) for g in visible)
    bounds = list(itertools.accumulate(split))
    last = estimate.block_count  # the output layer
    start, active = max(last - n, 0), min(n, last + 1)
    layers, loads = [0] * len(visible), [0] * len(visible)
    cpu_layers = 0
    cpu_bytes = estimate.input_weights + estimate.logits
    for layer in range(last + 1):
        if start <= layer < start + active:
            device = min(bisect.bisect_right(bounds, (layer - start) / active), len(visible) - 1)
            layers[device] += 1
            loads[device] += estimate.layer_gpu_bytes(layer)
        else:
            cpu_layers += 1
            cpu_bytes += estimate.layer_cpu_bytes(layer)
    for device, count in enumerate(layers):
        if count:
            loads[device] += estimate.graph
    main_index = visible.index(main)
    loads[main_index] += estimate.projector
    return _Layout(visible, main_index, n, split, tuple(layers), tuple(loads), cpu_layers, cpu_bytes)


def _fits(layout: _Layout, estimate: MemoryEstimate) -> bool:
    return all(load <= _budget(gpu, estimate) for gpu, load in zip(layout.gpus, layout.loads))


def _visible_env(gpus: Sequence[GpuInfo]) -> dict[str, str]:
    """Restrict a runner to ``gpus`` (one vendor), by UUID when known."""
    ids = ",".join(g.id for g in gpus)
    if gpus[0].vendor == "nvidia":
        return {"CUDA_VISIBLE_DEVICES": ids}
    # ROCR selects the physical devices; HIP numbers what ROCR left, so a user's own
    # HIP_VISIBLE_DEVICES must not filter again.
    return {"ROCR_VISIBLE_DEVICES": ids, "HIP_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(gpus)))}


def _hide_gpus(inventory: Inventory) -> dict[str, str]:
    """Keep a CPU runner off every GPU (a GPU build would otherwise still allocate there)."""
    env: dict[str, str] = {}
    vendors = {g.vendor for g in inventory.gpus}
    if "nvidia" in vendors:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    if "amd" in vendors:
        env["ROCR_VISIBLE_DEVICES"] = "-1"
        env["HIP_VISIBLE_DEVICES"] = "-1"
    return env


# ---------------------------------------------------------------------------------------
# Building placements


def _base(estimate: MemoryEstimate) -> dict[str, Any]:
    return {
        "layers_total": estimate.layers_total,
        "kv_bytes": estimate.kv,
        "num_ctx": estimate.num_ctx,
        "num_parallel": estimate.num_parallel,
        "flash_attention": estimate.flash_attention,
        "kv_cache_type": estimate.kv_cache_type,
        "estimate": estimate,
    }


def _gpu_placement(estimate: MemoryEstimate, layout: _Layout, reason: str, *, fits: bool = True) -> Placement:
    full = layout.n >= estimate.layers_total
    size_vram = sum(layout.loads)
    devices = [DevicePlacement(g.id, g.name, layers, load) for g, layers, load in zip(layout.gpus, layout.layers, layout.loads)]
    if not full:
        devices.append(DevicePlacement("cpu", "CPU", layout.cpu_layers, layout.cpu_bytes))
    single = len(layout.gpus) == 1
    return Placement(
        n_gpu_layers=layout.n,
        main_gpu=0 if single else layout.main,
        split_mode="none" if single else "layer",
        tensor_split=None if single else tuple(round(s, 4) for s in layout.split),
        env=_visible_env(layout.gpus),
        size=size_vram if full else size_vram + layout.cpu_bytes,
        size_vram=size_vram,
        devices=tuple(devices),
        reason=reason,
        fits=fits,
        **_base(estimate),
    )


def _cpu_placement(estimate: MemoryEstimate, inventory: Inventory, system_free: int, why: str, *, fits: bool = True) -> Placement:
    need = estimate.cpu_only
    if need > system_free:
        message = f"model requires more system memory ({format_bytes(need)}) than is available ({format_bytes(system_free)})"
        if inventory.gpus:
            best = max(_budget(g, estimate) for g in inventory.gpus)
            message += (
                f", and no GPU has room for it: it needs {format_bytes(estimate.full_offload)} of VRAM and"
                f" {format_bytes(estimate.layer_gpu_bytes(0) + estimate.graph)} for a single layer,"
                f" the most any GPU can give is {format_bytes(int(best))}"
            )
        raise InsufficientMemory(message)
    return Placement(
        n_gpu_layers=0,
        main_gpu=0,
        split_mode="none",
        tensor_split=None,
        env=_hide_gpus(inventory),
        size=need,
        size_vram=0,
        devices=(DevicePlacement("cpu", "CPU", estimate.layers_total, need),),
        reason=f"CPU: {why}",
        fits=fits,
        **_base(estimate),
    )


def _vendor_groups(gpus: Sequence[GpuInfo]) -> list[list[GpuInfo]]:
    """GPUs per vendor, most free first; groups with discrete GPUs first, then most free."""
    groups: dict[Vendor, list[GpuInfo]] = {}
    for gpu in sorted(gpus, key=lambda g: (g.integrated, -g.free)):
        groups.setdefault(gpu.vendor, []).append(gpu)
    return sorted(groups.values(), key=lambda group: (all(g.integrated for g in group), -sum(g.free for g in group)))


def _full_candidates(gpus: Sequence[GpuInfo], main_gpu: int | None, spread: bool) -> list[tuple[list[GpuInfo], GpuInfo, str]]:
    """Device sets to try for a whole model, best first, each with its main GPU and a label."""
    groups = _vendor_groups(gpus)
    if main_gpu is not None:
        main = gpus[main_gpu]
        group = next(g for g in groups if main in g)
        others = [g for g in group if g is not main]
        if spread:
            return [([main, *others], main, "spread")]
        return [([main], main, "main")] + [([main, *others[: k - 1]], main, "split") for k in range(2, len(group) + 1)]
    if spread:
        return [(group, group[0], "spread") for group in groups]
    singles = sorted(gpus, key=lambda g: (g.integrated, -g.free))
    out = [([gpu], gpu, "single") for gpu in singles]
    for group in groups:
        out += [(group[:k], group[0], "split") for k in range(2, len(group) + 1)]
    return out


def _partial_candidates(gpus: Sequence[GpuInfo], main_gpu: int | None, estimate: MemoryEstimate) -> list[tuple[list[GpuInfo], GpuInfo]]:
    """Device sets for partial offload: each vendor's GPUs that can hold a layer and the graph."""
    least = estimate.graph + min((estimate.layer_gpu_bytes(i) for i in range(estimate.layers_total)), default=0)
    main = gpus[main_gpu] if main_gpu is not None else None
    out = []
    for group in _vendor_groups(gpus):
        if main is not None and main not in group:
            continue
        usable = [g for g in group if g is main or _budget(g, estimate) >= least]
        if usable:
            out.append((usable, main or usable[0]))
    return out


def _count(gpus: Sequence[GpuInfo]) -> str:
    return f"{len(gpus)} {_VENDOR_NAMES[gpus[0].vendor]} GPU{'s' if len(gpus) > 1 else ''}"


def _describe_fit(layout: _Layout, estimate: MemoryEstimate, label: str) -> str:
    names = ", ".join(f"{g.name} ({g.id})" for g in layout.gpus)
    need = format_bytes(sum(layout.loads))
    usable = format_bytes(int(sum(_budget(g, estimate) for g in layout.gpus)))
    count = _count(layout.gpus)
    if label == "single":
        return f"fits on one GPU, the one with the most free memory: {names} (needs {need} of {usable} usable)"
    if label == "main":
        return f"main_gpu: fits on {names} (needs {need} of {usable} usable)"
    if label == "spread":
        return f"OLLAMA_SCHED_SPREAD: spread across {count} in proportion to free memory (needs {need} of {usable} usable)"
    return f"too big for one GPU: split across {count} in proportion to free memory (needs {need} of {usable} usable)"


def plan_placement(
    inventory: Inventory,
    estimate: MemoryEstimate,
    *,
    num_gpu: int = -1,
    main_gpu: int | None = None,
    sched_spread: bool = False,
    system_free: int | None = None,
) -> Placement:
    """Choose devices for ``estimate`` on ``inventory`` (pure: reads no environment).

    ``num_gpu`` < 0 is automatic, 0 forces the CPU, N > 0 offloads N layers (honoured even
    when the estimate says they do not fit, as Ollama does for an explicit ``num_gpu``).
    ``main_gpu`` is an index into ``inventory.gpus``; out of range is an ``InvalidRequest``.
    ``system_free`` defaults to the inventory's. Raises ``InsufficientMemory`` when the model
    fits nowhere.
    """
    gpus = list(inventory.gpus)
    ram = inventory.system.free if system_free is None else system_free
    if main_gpu is not None and gpus and not 0 <= main_gpu < len(gpus):
        raise InvalidRequest(f"main_gpu {main_gpu} does not exist: {len(gpus)} GPU(s) found")
    if num_gpu == 0:
        return _cpu_placement(estimate, inventory, ram, "num_gpu is 0")
    if not gpus:
        return _cpu_placement(estimate, inventory, ram, "no GPU found")

    wanted = estimate.layers_total if num_gpu < 0 else min(num_gpu, estimate.layers_total)
    candidates = _full_candidates(gpus, main_gpu, sched_spread)
    for devices, main, label in candidates:
        layout = _layout(estimate, devices, main, wanted, gpus)
        if _fits(layout, estimate):
            reason = _describe_fit(layout, estimate, label)
            if num_gpu > 0:
                reason = f"num_gpu={num_gpu}: {wanted}/{estimate.layers_total} layers on GPU; {reason}"
            return _gpu_placement(estimate, layout, reason)
    if num_gpu > 0:
        devices, main, _ = candidates[0]
        layout = _layout(estimate, devices, main, wanted, gpus)
        reason = f"num_gpu={num_gpu}: {wanted}/{estimate.layers_total} layers on GPU as requested, more than the estimate says fits"
        return _gpu_placement(estimate, layout, reason)

    best: _Layout | None = None
    for devices, main in _partial_candidates(gpus, main_gpu, estimate):
        for n in range(estimate.layers_total - 1, 0, -1):
            layout = _layout(estimate, devices, main, n, gpus)
            if _fits(layout, estimate):
                if best is None or n > best.n:
                    best = layout
                break
    if best is None:
        smallest = format_bytes(estimate.layer_gpu_bytes(0) + estimate.graph)
        return _cpu_placement(estimate, inventory, ram, f"no GPU has room for even one layer ({smallest} with the compute graph)", fits=False)
    if best.cpu_bytes > ram:
        raise InsufficientMemory(
            f"model requires more system memory ({format_bytes(best.cpu_bytes)}) than is available ({format_bytes(ram)})"
            f" with {best.n}/{estimate.layers_total} layers on GPU; the whole model needs {format_bytes(estimate.full_offload)} of VRAM"
        )
    count = _count(best.gpus)
    usable = format_bytes(int(sum(_budget(g, estimate) for g in best.gpus)))
    reason = (
        f"partial offload: {best.n}/{estimate.layers_total} layers fit on {count} ({usable} usable,"
        f" the whole model needs {format_bytes(estimate.full_offload)}); the rest runs on the CPU"
    )
    return _gpu_placement(estimate, best, reason, fits=False)


def reserve_loaded(inventory: Inventory, loaded: Sequence[Placement]) -> Inventory:
    """``inventory`` as it is once every ``loaded`` runner holds what its plan gave it.

    A probe right after a load may not show a runner's memory yet (it allocates as it
    goes; mmapped weights count as free page cache), so, as Ollama does, each device's free
    memory is the smaller of what was probed and its total minus the loaded runners' plans.
    Loads are one at a time, so a runner's plan is counted from the moment it loads.
    """
    used: dict[str, int] = {}
    for placement in loaded:
        for device in placement.devices:
            used[device.id] = used.get(device.id, 0) + device.bytes
    gpus = tuple(g.model_copy(update={"free": min(g.free, max(g.total - used.get(g.id, 0), 0))}) for g in inventory.gpus)
    system = inventory.system
    ram = min(system.free, max(system.total - used.get("cpu", 0), 0))
    return inventory.model_copy(update={"gpus": gpus, "system": system.model_copy(update={"free": ram})})


# ---------------------------------------------------------------------------------------
# The seam: automatic settings from the environment, then the policy


def default_num_ctx(inventory: Inventory, gpu_overhead: int = 0) -> int:
    """Ollama's default context tier from total VRAM: ≥47 GiB → 262144, ≥23 GiB → 32768, else 4096."""
    vram = sum(max(g.total - gpu_overhead, 0) for g in inventory.gpus)
    if vram >= 47 * GIB:
        return 262144
    if vram >= 23 * GIB:
        return 32768
    return 4096


def resolve_num_ctx(info: GGUFInfo, requested: int | None, inventory: Inventory) -> int:
    """The context a runner gets: the request's, else ``OLLAMA_CONTEXT_LENGTH``, else the
    VRAM tier; clamped to the model's trained context and at least 4."""
    num_ctx = requested or envconfig.context_length() or default_num_ctx(inventory, envconfig.gpu_overhead())
    trained = info.context_length
    if trained:
        num_ctx = min(num_ctx, trained)
    return max(num_ctx, 4)


def resolve_flash_attention(inventory: Inventory, setting: bool | None) -> bool:
    """Whether the runner uses flash attention: where every device supports it (the CPU
    does), unless ``OLLAMA_FLASH_ATTENTION`` turns it off. Unset is Ollama's automatic
    mode, in which llama.cpp turns it on wherever it is supported."""
    return setting is not False and all(g.supports_flash_attention() for g in inventory.gpus)


def estimate_for(
    info: GGUFInfo,
    load_options: LoadOptions,
    num_parallel: int,
    inventory: Inventory,
    *,
    projector_paths: Sequence[Path] = (),
) -> MemoryEstimate:
    """The estimate for loading ``info`` with these options on this inventory."""
    requested_kv = envconfig.kv_cache_type()
    if requested_kv not in ("", "f16") and envconfig.flash_attention() is not True:
        # Ollama quantizes the KV cache only where flash attention was asked for, not where
        # its automatic mode turns it on.
        log.warning("OLLAMA_FLASH_ATTENTION must be enabled to use a quantized OLLAMA_KV_CACHE_TYPE (%s)", requested_kv)
        requested_kv = ""
    estimate = estimate_memory(
        info,
        num_ctx=resolve_num_ctx(info, load_options.num_ctx, inventory),
        num_parallel=num_parallel,
        num_batch=load_options.num_batch,
        kv_cache_type=requested_kv,
        flash_attention=resolve_flash_attention(inventory, envconfig.flash_attention()),
        projector_bytes=sum(p.stat().st_size for p in projector_paths),
        gpu_overhead=envconfig.gpu_overhead(),
    )
    if requested_kv not in ("", estimate.kv_cache_type):
        log.warning(KV_FALLBACK_WARNING, requested_kv, estimate.kv_cache_type)
    return estimate


def placement_for(
    info: GGUFInfo,
    load_options: LoadOptions,
    num_parallel: int,
    inventory: Inventory,
    *,
    projector_paths: Sequence[Path] = (),
) -> Placement:
    """Where to load ``info`` (the one call the scheduler makes before starting a runner).

    Blocking only for the projector files' sizes; call ``probe_inventory(refresh=True)``
    in a thread first for a fresh inventory.
    """
    estimate = estimate_for(info, load_options, num_parallel, inventory, projector_paths=projector_paths)
    return plan_placement(
        inventory,
        estimate,
        num_gpu=load_options.num_gpu,
        main_gpu=load_options.main_gpu,
        sched_spread=envconfig.sched_spread(),
    )
