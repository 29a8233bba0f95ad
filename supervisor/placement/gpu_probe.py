"""Which GPUs this machine has and how much memory each has free.

One interface, three backends: NVIDIA through NVML (``pynvml`` from nvidia-ml-py), AMD
through the ``amdsmi`` library when it is importable or else ``rocm-smi --json``, and the
CPU (system memory from psutil). A backend whose library or tool is missing contributes
nothing; a device that fails to answer is dropped with a warning, so one broken GPU does
not hide the others.

The user's visible-devices variables are honoured as the runtimes honour them:
``CUDA_VISIBLE_DEVICES`` for NVIDIA, ``ROCR_VISIBLE_DEVICES`` then ``HIP_VISIBLE_DEVICES``
(relative to what ROCR left) for AMD — indexes or UUIDs, an empty value hides every
device, and enumeration stops at the first entry that names no device (CUDA's rule).
NVML numbers devices in PCI bus order; CUDA does too under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
Runners are always pointed at devices by UUID when one is known, so the order only
matters for the indexes a user writes.

Probing blocks (NVML calls, a subprocess): the server calls it in a thread.
``probe_inventory()`` caches the answer; the scheduler refreshes it before each load.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol

import psutil
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ollamapy.supervisor.placement.memory_estimate import GIB
from ollamapy.units import format_bytes

__all__ = [
    "AmdBackend",
    "GpuBackend",
    "GpuInfo",
    "Inventory",
    "NvmlBackend",
    "SystemMemory",
    "Vendor",
    "describe",
    "filter_visible",
    "parse_byte_count",
    "probe",
    "probe_inventory",
    "probe_system_memory",
]

log = logging.getLogger("ollamapy.gpu")

Vendor = Literal["nvidia", "amd"]

IGPU_MEMORY_LIMIT = 1 * GIB
"""AMD devices with less VRAM than this are integrated GPUs (carved-out RAM) and skipped, as Ollama does."""
_ROCM_SMI_TIMEOUT = 10.0

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}  # fmt: skip
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


def parse_byte_count(value: Any) -> Any:
    """A byte count from an int or a string with a unit (``24 GiB``, ``8GB``, ``512 MiB``).

    GB/MB are decimal and GiB/MiB binary, as everywhere else. Anything else is passed
    through for pydantic to reject with its own message.
    """
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match and match.group(2).lower() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return value


ByteCount = Annotated[int, BeforeValidator(parse_byte_count), Field(ge=0)]


class GpuInfo(BaseModel):
    """One GPU as placement sees it; also the shape of a GPU in an ``--inventory`` file.

    ``index`` is the device's ordinal among its vendor's devices (NVML / ROCm order, before
    any visible-devices filtering); ``id`` is what a visible-devices variable should name
    (the UUID when known, else the index). Only ``vendor`` and ``total`` are required in
    an inventory file: ``free`` defaults to ``total``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: Vendor
    total: ByteCount
    free: ByteCount
    index: int = Field(0, ge=0)
    id: str = ""
    name: str = ""
    compute: str = ""
    """CUDA compute capability (``8.6``) or AMD graphics target (``gfx1100``)."""
    pci_id: str = ""
    driver: str = ""
    integrated: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if data.get("free") is None and "total" in data:
                data["free"] = data["total"]
            if not data.get("id"):
                data["id"] = str(data.get("index", 0))
            if not data.get("name"):
                data["name"] = {"nvidia": "NVIDIA GPU", "amd": "AMD GPU"}.get(str(data.get("vendor")), "GPU")
        return data

    @model_validator(mode="after")
    def _free_within_total(self) -> GpuInfo:
        if self.free > self.total:
            raise ValueError(f"free memory ({self.free}) exceeds total ({self.total})")
        return self

    @property
    def library(self) -> str:
        """The runtime llama.cpp uses for it, as Ollama names it in logs: ``CUDA`` or ``ROCm``."""
        return "CUDA" if self.vendor == "nvidia" else "ROCm"

    def supports_flash_attention(self) -> bool:
        """llama.cpp's flash attention runs on ROCm and on CUDA compute capability ≥ 6.0 except 7.2."""
        if self.vendor == "amd":
            return True
        try:
            major, minor = (int(part) for part in self.compute.split(".", 1))
        except ValueError:
            return False
        return major >= 6 and (major, minor) != (7, 2)


class SystemMemory(BaseModel):
    """System RAM: ``free`` is what is available to a new process (page cache counts as free)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total: ByteCount
    free: ByteCount


class Inventory(BaseModel):
    """The devices a model could be placed on: usable GPUs in probe order, and system memory.

    In an inventory file, GPUs without an ``index`` are numbered per vendor in file order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpus: tuple[GpuInfo, ...] = ()
    system: SystemMemory

    @model_validator(mode="before")
    @classmethod
    def _number_gpus(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("gpus"), list):
            counters: dict[str, int] = {}
            gpus = []
            for gpu in data["gpus"]:
                if isinstance(gpu, dict) and "index" not in gpu:
                    vendor = str(gpu.get("vendor"))
                    gpu = {**gpu, "index": counters.get(vendor, 0)}
                    counters[vendor] = gpu["index"] + 1
                gpus.append(gpu)
            data = {**data, "gpus": gpus}
        return data

    @model_validator(mode="after")
    def _unique_ids(self) -> Inventory:
        seen = set()
        for gpu in self.gpus:
            if (gpu.vendor, gpu.id) in seen:
                raise ValueError(f"two {gpu.vendor} GPUs have the id {gpu.id!r}")
            seen.add((gpu.vendor, gpu.id))
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------------------
# Visible devices


def _select(devices: Sequence[GpuInfo], value: str | None, *, positional: bool = False) -> list[GpuInfo]:
    """Apply one visible-devices list to ``devices`` with CUDA's rules.

    Numbers name a device's ``index``, or (``positional``) its position in ``devices`` —
    for ``HIP_VISIBLE_DEVICES``, whose numbers count what ``ROCR_VISIBLE_DEVICES`` left.
    """
    if value is None:
        return list(devices)
    chosen: list[GpuInfo] = []
    for raw in value.split(","):
        token = raw.strip()
        if not token:
            break
        match: GpuInfo | None = None
        if re.fullmatch(r"[0-9]+", token):
            number = int(token)
            if positional:
                match = devices[number] if number < len(devices) else None
            else:
                match = next((d for d in devices if d.index == number), None)
        else:
            wanted = token.lower().removeprefix("gpu-")
            hits = [d for d in devices if d.id.lower().removeprefix("gpu-").startswith(wanted)]
            match = hits[0] if len(hits) == 1 else None
        if match is None or match in chosen:
            break
        chosen.append(match)
    return chosen


def filter_visible(devices: Sequence[GpuInfo], env: Mapping[str, str]) -> list[GpuInfo]:
    """The devices a runner started with ``env`` would see, in the order it would see them."""
    nvidia = [d for d in devices if d.vendor == "nvidia"]
    amd = _select([d for d in devices if d.vendor == "amd"], env.get("ROCR_VISIBLE_DEVICES"))
    amd = _select(amd, env.get("HIP_VISIBLE_DEVICES"), positional="ROCR_VISIBLE_DEVICES" in env)
    return _select(nvidia, env.get("CUDA_VISIBLE_DEVICES")) + amd


# ---------------------------------------------------------------------------------------
# Backends


class GpuBackend(Protocol):
    """A source of GPUs. ``probe`` returns every device it can see (before filtering);
    a missing library or tool means an empty list, never an exception."""

    name: str

    def probe(self) -> list[GpuInfo]: ...


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """NVIDIA GPUs through NVML (``pynvml``), imported when probing so tests can inject a fake."""

    name = "nvml"

    def probe(self) -> list[GpuInfo]:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            log.debug("pynvml is not installed: no NVIDIA GPUs")
            return []
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as err:
            log.debug("NVML unavailable (%s): no NVIDIA GPUs", err)
            return []
        try:
            try:
                driver = _text(nvml.nvmlSystemGetDriverVersion())
                count = nvml.nvmlDeviceGetCount()
            except nvml.NVMLError as err:
                log.warning("NVML failed to list devices: %s", err)
                return []
            devices = []
            for index in range(count):
                try:
                    devices.append(self._device(nvml, index, driver))
                except nvml.NVMLError as err:
                    log.warning("dropping NVIDIA GPU %d: it did not answer (%s)", index, err)
            return devices
        finally:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass

    @staticmethod
    def _device(nvml: Any, index: int, driver: str) -> GpuInfo:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        return GpuInfo(
            vendor="nvidia",
            index=index,
            id=_text(nvml.nvmlDeviceGetUUID(handle)),
            name=_text(nvml.nvmlDeviceGetName(handle)),
            total=int(memory.total),
            free=int(memory.free),
            compute=f"{major}.{minor}",
            pci_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId).lower(),
            driver=driver,
        )


def _amd_gpu(index: int, uid: str, name: str, total: int, used: int, **extra: Any) -> GpuInfo:
    uid = uid.strip().lower()
    return GpuInfo(
        vendor="amd",
        index=index,
        id=f"GPU-{uid.removeprefix('0x')}" if uid.startswith("0x") and len(uid) > 2 else str(index),
        name=name or "AMD GPU",
        total=total,
        free=max(total - used, 0),
        integrated=total < IGPU_MEMORY_LIMIT,
        **extra,
    )


class AmdBackend:
    """AMD GPUs through ``amdsmi`` when importable, else ``rocm-smi --json``.

    Devices are numbered in the order the tool lists them (KFD node order for rocm-smi),
    which is the order HIP numbers them. ``id`` is ROCR's UUID form ``GPU-<unique id>``.
    """

    name = "rocm"

    def probe(self) -> list[GpuInfo]:
        try:
            amdsmi = importlib.import_module("amdsmi")
        except ImportError:
            return self._probe_rocm_smi()
        return self._probe_amdsmi(amdsmi)

    @staticmethod
    def _probe_amdsmi(amdsmi: Any) -> list[GpuInfo]:
        try:
            amdsmi.amdsmi_init()
        except amdsmi.AmdSmiException as err:
            log.debug("amdsmi unavailable (%s): no AMD GPUs", err)
            return []
        try:
            try:
                handles = amdsmi.amdsmi_get_processor_handles()
            except amdsmi.AmdSmiException as err:
                log.warning("amdsmi failed to list devices: %s", err)
                return []
            devices = []
            for index, handle in enumerate(handles):
                try:
                    asic = amdsmi.amdsmi_get_gpu_asic_info(handle)
                    vram = amdsmi.amdsmi_get_gpu_vram_usage(handle)  # MB
                    devices.append(
                        _amd_gpu(
                            index,
                            str(asic.get("asic_serial", "")),
                            str(asic.get("market_name", "")),
                            int(vram["vram_total"]) << 20,
                            int(vram["vram_used"]) << 20,
                            compute=str(asic.get("target_graphics_version", "")),
                            pci_id=str(amdsmi.amdsmi_get_gpu_device_bdf(handle)).lower(),
                        )
                    )
                except (amdsmi.AmdSmiException, KeyError, TypeError, ValueError) as err:
                    log.warning("dropping AMD GPU %d: it did not answer (%s)", index, err)
            return devices
        finally:
            try:
                amdsmi.amdsmi_shut_down()
            except amdsmi.AmdSmiException:
                pass

    @staticmethod
    def _probe_rocm_smi() -> list[GpuInfo]:
        exe = shutil.which("rocm-smi")
        if exe is None:
            log.debug("neither amdsmi nor rocm-smi is available: no AMD GPUs")
            return []
        command = [exe, "--showmeminfo", "vram", "--showproductname", "--showuniqueid", "--showbus", "--json"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=_ROCM_SMI_TIMEOUT, check=False)
            cards = json.loads(done.stdout) if done.stdout.strip() else {}
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as err:
            log.warning("rocm-smi failed: %s", err)
            return []
        if done.returncode != 0 and not cards:
            log.warning("rocm-smi exited with status %d: %s", done.returncode, done.stderr.strip()[-500:])
            return []
        if not isinstance(cards, dict):
            log.warning("rocm-smi printed unexpected JSON")
            return []
        entries = [(key, value) for key, value in cards.items() if key.startswith("card") and isinstance(value, dict)]
        entries.sort(key=lambda kv: _card_order(*kv))
        devices = []
        for index, (key, card) in enumerate(entries):
            fields = {k.lower(): v for k, v in card.items()}
            try:
                total = int(fields["vram total memory (b)"])
                used = int(fields["vram total used memory (b)"])
            except (KeyError, TypeError, ValueError):
                log.warning("dropping AMD GPU %s: rocm-smi reported no VRAM size", key)
                continue
            name = str(fields.get("card series") or fields.get("device name") or fields.get("card model") or "")
            devices.append(
                _amd_gpu(
                    index,
                    str(fields.get("unique id", "")),
                    name,
                    total,
                    used,
                    compute=str(fields.get("gfx version", "")),
                    pci_id=str(fields.get("pci bus", "")).lower(),
                )
            )
        return devices


def _card_order(key: str, card: dict[str, Any]) -> tuple[int, int]:
    """Sort rocm-smi cards by KFD node (HIP's order), then card number."""
    node = str(next((v for k, v in card.items() if k.lower() == "node id"), ""))
    number = key.removeprefix("card")
    return (int(node) if node.isdigit() else 1 << 30, int(number) if number.isdigit() else 0)


# ---------------------------------------------------------------------------------------
# Probing


def probe_system_memory() -> SystemMemory:
    """System RAM from psutil (``available`` is what a new process can use)."""
    memory = psutil.virtual_memory()
    return SystemMemory(total=int(memory.total), free=int(memory.available))


_DEFAULT_BACKENDS: tuple[GpuBackend, ...] = (NvmlBackend(), AmdBackend())


def probe(env: Mapping[str, str] | None = None, backends: Sequence[GpuBackend] = _DEFAULT_BACKENDS) -> Inventory:
    """Probe every backend and the system memory now (blocking); apply the visible-devices variables."""
    found: list[GpuInfo] = []
    for backend in backends:
        devices = backend.probe()
        log.debug("%s: %d GPU(s)", backend.name, len(devices))
        found.extend(devices)
    visible = filter_visible(found, os.environ if env is None else env)
    for gpu in visible:
        if gpu.vendor == "amd" and gpu.integrated:
            log.info("skipping %s (%s): integrated GPU with %s of VRAM", gpu.id, gpu.name, format_bytes(gpu.total))
    usable = tuple(g for g in visible if not (g.vendor == "amd" and g.integrated))
    return Inventory(gpus=usable, system=probe_system_memory())


_cache_lock = threading.Lock()
_cached: Inventory | None = None


def probe_inventory(*, refresh: bool = False) -> Inventory:
    """The machine's inventory, probed once and cached; ``refresh=True`` probes again.

    The first probe logs what was found (``describe``). The scheduler refreshes before
    each load, since free memory changes as other processes come and go.
    """
    global _cached
    with _cache_lock:
        if _cached is None or refresh:
            first = _cached is None
            _cached = probe()
            if first:
                for line in describe(_cached):
                    log.info("%s", line)
        return _cached


def describe(inventory: Inventory) -> list[str]:
    """Start-up log lines in the style of Ollama's ``inference compute`` lines."""
    lines = []
    for gpu in inventory.gpus:
        name = f"{gpu.library}{gpu.index}"
        lines.append(
            f"inference compute id={gpu.id} library={gpu.library} compute={gpu.compute} name={name} "
            f'description="{gpu.name}" driver={gpu.driver} pci_id={gpu.pci_id} '
            f'total="{format_bytes(gpu.total)}" available="{format_bytes(gpu.free)}"'
        )
    if not inventory.gpus:
        lines.append("no compatible GPUs were discovered")
    lines.append(
        f"inference compute id=cpu library=cpu description=cpu "
        f'total="{format_bytes(inventory.system.total)}" available="{format_bytes(inventory.system.free)}"'
    )
    return lines
