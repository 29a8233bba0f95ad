"""GPU probing with fakes at the boundary: a fake ``pynvml`` module, a fake ``rocm-smi``
executable on PATH printing recorded JSON, a fake ``amdsmi`` module; errors, missing
libraries and the visible-devices variables (indexes and UUIDs)."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from ollamapy.supervisor.placement import gpu_probe
from ollamapy.supervisor.placement.gpu_probe import (
    AmdBackend,
    GpuInfo,
    Inventory,
    NvmlBackend,
    describe,
    parse_byte_count,
    probe,
    probe_inventory,
)

GIB = 1 << 30
MIB = 1 << 20


# --- fake NVML ---------------------------------------------------------------------------


class FakeNvml:
    """Builds a module with pynvml's names over a list of device dicts."""

    def __init__(
        self,
        devices: list[dict[str, Any]],
        *,
        init_error: bool = False,
        count_error: bool = False,
        lost: tuple[int, ...] = (),
        names_as_bytes: bool = False,
    ) -> None:
        self.devices = devices
        self.shutdowns = 0
        module = types.ModuleType("pynvml")

        class NVMLError(Exception):
            pass

        class NVMLError_LibraryNotFound(NVMLError):
            pass

        class NVMLError_GpuIsLost(NVMLError):
            pass

        module.NVMLError = NVMLError
        module.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound

        def init() -> None:
            if init_error:
                raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")

        def shutdown() -> None:
            self.shutdowns += 1

        def count() -> int:
            if count_error:
                raise NVMLError("Unknown Error")
            return len(devices)

        def handle(index: int) -> int:
            return index

        def memory(h: int) -> Any:
            if h in lost:
                raise NVMLError_GpuIsLost("GPU is lost")
            d = devices[h]
            return types.SimpleNamespace(total=d["total"], free=d["free"], used=d["total"] - d["free"])

        def text(value: str) -> str | bytes:
            return value.encode() if names_as_bytes else value

        module.nvmlInit = init
        module.nvmlShutdown = shutdown
        module.nvmlSystemGetDriverVersion = lambda: text("550.54.15")
        module.nvmlDeviceGetCount = count
        module.nvmlDeviceGetHandleByIndex = handle
        module.nvmlDeviceGetName = lambda h: text(devices[h]["name"])
        module.nvmlDeviceGetUUID = lambda h: text(devices[h]["uuid"])
        module.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=text(devices[h]["bus"]))
        module.nvmlDeviceGetMemoryInfo = memory
        module.nvmlDeviceGetCudaComputeCapability = lambda h: devices[h]["cc"]
        self.module = module


NV_DEVICES = [
    {"name": "NVIDIA GeForce RTX 3090", "uuid": "GPU-aaaa1111-0000-0000-0000-000000000000", "bus": "00000000:01:00.0", "total": 24 * GIB, "free": 23 * GIB, "cc": (8, 6)},
    {"name": "NVIDIA GeForce RTX 3060", "uuid": "GPU-bbbb2222-0000-0000-0000-000000000000", "bus": "00000000:02:00.0", "total": 12 * GIB, "free": 11 * GIB, "cc": (8, 6)},
    {"name": "Tesla V100", "uuid": "GPU-cccc3333-0000-0000-0000-000000000000", "bus": "00000000:03:00.0", "total": 16 * GIB, "free": 16 * GIB, "cc": (7, 0)},
]


@pytest.fixture
def no_amd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No amdsmi module and a PATH without rocm-smi; returns the (empty) PATH directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    return bin_dir


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml(NV_DEVICES)
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    return fake


def test_nvml_reports_every_device(nvml: FakeNvml, no_amd: Path) -> None:
    inventory = probe(env={})
    assert [g.name for g in inventory.gpus] == [d["name"] for d in NV_DEVICES]
    first = inventory.gpus[0]
    assert first.vendor == "nvidia"
    assert first.index == 0
    assert first.id == "GPU-aaaa1111-0000-0000-0000-000000000000"
    assert (first.total, first.free) == (24 * GIB, 23 * GIB)
    assert first.compute == "8.6"
    assert first.pci_id == "00000000:01:00.0"
    assert first.driver == "550.54.15"
    assert first.library == "CUDA"
    assert nvml.shutdowns == 1
    assert inventory.system.total > 0 and 0 < inventory.system.free <= inventory.system.total


def test_nvml_old_bindings_returning_bytes_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(NV_DEVICES[:1], names_as_bytes=True).module)
    (gpu,) = NvmlBackend().probe()
    assert gpu.name == "NVIDIA GeForce RTX 3090"
    assert gpu.id.startswith("GPU-aaaa1111")


def test_missing_pynvml_means_no_nvidia_gpus(monkeypatch: pytest.MonkeyPatch, no_amd: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert probe(env={}).gpus == ()


def test_missing_nvml_library_means_no_nvidia_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(NV_DEVICES, init_error=True).module)
    assert NvmlBackend().probe() == []


def test_nvml_failing_to_list_devices(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNvml(NV_DEVICES, count_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    with caplog.at_level(logging.WARNING, logger="ollamapy.gpu"):
        assert NvmlBackend().probe() == []
    assert "failed to list devices" in caplog.text
    assert fake.shutdowns == 1


def test_device_that_fails_to_answer_is_dropped(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(NV_DEVICES, lost=(1,)).module)
    with caplog.at_level(logging.WARNING, logger="ollamapy.gpu"):
        gpus = NvmlBackend().probe()
    assert [g.index for g in gpus] == [0, 2]
    assert "dropping NVIDIA GPU 1" in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", [1]),
        ("2,0", [2, 0]),
        ("GPU-bbbb2222-0000-0000-0000-000000000000", [1]),
        ("GPU-cccc", [2]),  # a unique UUID prefix
        ("cccc3333", [2]),  # without the GPU- prefix
        ("0,GPU-cccc3333", [0, 2]),
        ("0,7,1", [0]),  # enumeration stops at the first entry naming no device
        ("0,0,1", [0]),  # so does a repeated device
        ("GPU-", []),  # ambiguous prefix
        ("", []),
        ("-1", []),
        (" 1 , 2 ", [1, 2]),
    ],
)
def test_cuda_visible_devices(nvml: FakeNvml, no_amd: Path, value: str, expected: list[int]) -> None:
    inventory = probe(env={"CUDA_VISIBLE_DEVICES": value})
    assert [g.index for g in inventory.gpus] == expected


def test_visible_indexes_name_physical_devices_even_after_a_device_was_dropped(monkeypatch: pytest.MonkeyPatch, no_amd: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(NV_DEVICES, lost=(0,)).module)
    assert [g.index for g in probe(env={"CUDA_VISIBLE_DEVICES": "2"}).gpus] == [2]


# --- fake rocm-smi -----------------------------------------------------------------------

# Recorded shapes: ``rocm-smi --showmeminfo vram --showproductname --showuniqueid --json``
# on ROCm 6.x (title-case keys) and 5.x (lower-case "Card series"), with an APU's iGPU.
ROCM_SMI_JSON = {
    "card1": {
        "Unique ID": "N/A",
        "VRAM Total Memory (B)": "67108864",
        "VRAM Total Used Memory (B)": "26079232",
        "Card Series": "Raphael",
        "Card Model": "0x164e",
        "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
        "Card SKU": "RAPHAEL",
        "Subsystem ID": "0x364e",
        "Device Rev": "0xc6",
        "Node ID": "2",
        "GUID": "52156",
        "GFX Version": "gfx1036",
    },
    "card0": {
        "Unique ID": "0x3d4595974090853c",
        "PCI Bus": "0000:03:00.0",
        "VRAM Total Memory (B)": "21458059264",
        "VRAM Total Used Memory (B)": "27856896",
        "Card Series": "Radeon RX 7900 XT",
        "Card Model": "0x744c",
        "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
        "Card SKU": "D70401XT",
        "Subsystem ID": "0x471e",
        "Device Rev": "0xcc",
        "Node ID": "1",
        "GUID": "26967",
        "GFX Version": "gfx1100",
    },
    "card2": {
        "Unique ID": "0x1f9de0957d137942",
        "VRAM Total Memory (B)": "68702699520",
        "VRAM Total Used Memory (B)": "10960896",
        "Card series": "AMD INSTINCT MI200 (MCM) OAM LC MBA HPE C2",
        "Card model": "0x7408",
        "Card vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
        "Card SKU": "D65201",
        "Node ID": "3",
        "GFX Version": "gfx90a",
    },
}


def write_rocm_smi(bin_dir: Path, stdout: str, *, status: int = 0, stderr: str = "") -> Path:
    """A fake ``rocm-smi`` (a Python script, PATH holds nothing else) that records its
    arguments and prints ``stdout``."""
    script = bin_dir / "rocm-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(bin_dir / 'args.txt')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({status})\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def no_nvidia(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)


def test_rocm_smi_devices(no_amd: Path, no_nvidia: None) -> None:
    write_rocm_smi(no_amd, json.dumps(ROCM_SMI_JSON))
    inventory = probe(env={})
    # KFD node order (HIP's numbering); the 64 MiB iGPU is dropped.
    assert [(g.index, g.name) for g in inventory.gpus] == [(0, "Radeon RX 7900 XT"), (2, "AMD INSTINCT MI200 (MCM) OAM LC MBA HPE C2")]
    rx = inventory.gpus[0]
    assert rx.vendor == "amd" and rx.library == "ROCm"
    assert rx.id == "GPU-3d4595974090853c"
    assert rx.total == 21458059264
    assert rx.free == 21458059264 - 27856896
    assert rx.compute == "gfx1100"
    assert rx.pci_id == "0000:03:00.0"
    args = (no_amd / "args.txt").read_text().split()
    assert {"--showmeminfo", "vram", "--showproductname", "--json"} <= set(args)


def test_integrated_gpu_is_reported_when_asked_for_by_the_backend(no_amd: Path) -> None:
    write_rocm_smi(no_amd, json.dumps(ROCM_SMI_JSON))
    gpus = AmdBackend().probe()
    assert [(g.name, g.integrated) for g in gpus][1] == ("Raphael", True)
    assert gpus[1].id == "1"  # no unique id: the index


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ROCR_VISIBLE_DEVICES": "GPU-1f9de0957d137942"}, [2]),
        ({"ROCR_VISIBLE_DEVICES": "2,0"}, [2, 0]),
        ({"HIP_VISIBLE_DEVICES": "2"}, [2]),
        ({"ROCR_VISIBLE_DEVICES": "0,2", "HIP_VISIBLE_DEVICES": "1"}, [2]),  # HIP counts what ROCR left
        ({"ROCR_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, [0, 2]),  # the NVIDIA variable leaves AMD alone
    ],
)
def test_rocm_visible_devices(no_amd: Path, no_nvidia: None, env: dict[str, str], expected: list[int]) -> None:
    write_rocm_smi(no_amd, json.dumps(ROCM_SMI_JSON))
    assert [g.index for g in probe(env=env).gpus] == expected


@pytest.mark.parametrize(
    ("stdout", "status", "message"),
    [
        ("", 2, "rocm-smi exited with status 2"),
        ("not json", 0, "rocm-smi failed"),
        ("[1, 2]", 0, "unexpected JSON"),
    ],
)
def test_rocm_smi_errors(no_amd: Path, caplog: pytest.LogCaptureFixture, stdout: str, status: int, message: str) -> None:
    write_rocm_smi(no_amd, stdout, status=status, stderr="ERROR: GPU[0] : Unable to get memory")
    with caplog.at_level(logging.WARNING, logger="ollamapy.gpu"):
        assert AmdBackend().probe() == []
    assert message in caplog.text


def test_rocm_smi_card_without_memory_is_dropped(no_amd: Path) -> None:
    cards = {"card0": {"Card Series": "Broken", "Node ID": "1"}, "card1": ROCM_SMI_JSON["card0"]}
    write_rocm_smi(no_amd, json.dumps(cards))
    assert [g.name for g in AmdBackend().probe()] == ["Radeon RX 7900 XT"]


def test_no_rocm_smi_on_path_means_no_amd_gpus(no_amd: Path) -> None:
    assert AmdBackend().probe() == []


# --- fake amdsmi -------------------------------------------------------------------------


def fake_amdsmi(devices: list[dict[str, Any]], *, init_error: bool = False) -> types.ModuleType:
    module = types.ModuleType("amdsmi")

    class AmdSmiException(Exception):
        pass

    def init() -> None:
        if init_error:
            raise AmdSmiException("driver not loaded")

    def vram(h: int) -> dict[str, int]:
        if devices[h].get("broken"):
            raise AmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")
        return {"vram_total": devices[h]["total_mb"], "vram_used": devices[h]["used_mb"]}

    module.AmdSmiException = AmdSmiException
    module.amdsmi_init = init
    module.amdsmi_shut_down = lambda: None
    module.amdsmi_get_processor_handles = lambda: list(range(len(devices)))
    module.amdsmi_get_gpu_asic_info = lambda h: {
        "market_name": devices[h]["name"],
        "asic_serial": devices[h]["serial"],
        "target_graphics_version": devices[h]["gfx"],
    }
    module.amdsmi_get_gpu_vram_usage = vram
    module.amdsmi_get_gpu_device_bdf = lambda h: f"0000:0{h + 1}:00.0"
    return module


AMDSMI_DEVICES = [
    {"name": "AMD Instinct MI210", "serial": "0xD6C3F1A17A5F0F5B", "gfx": "gfx90a", "total_mb": 65520, "used_mb": 10},
    {"name": "AMD Instinct MI210", "serial": "0x11", "gfx": "gfx90a", "total_mb": 65520, "used_mb": 0, "broken": True},
    {"name": "AMD Radeon PRO W7900", "serial": "0x22", "gfx": "gfx1100", "total_mb": 49136, "used_mb": 1136},
]


def test_amdsmi_is_preferred_over_rocm_smi(monkeypatch: pytest.MonkeyPatch, no_amd: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_rocm_smi(no_amd, json.dumps(ROCM_SMI_JSON))
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(AMDSMI_DEVICES))
    with caplog.at_level(logging.WARNING, logger="ollamapy.gpu"):
        gpus = AmdBackend().probe()
    assert [g.name for g in gpus] == ["AMD Instinct MI210", "AMD Radeon PRO W7900"]
    assert gpus[0].id == "GPU-d6c3f1a17a5f0f5b"
    assert (gpus[0].total, gpus[0].free) == (65520 * MIB, 65510 * MIB)
    assert gpus[1].index == 2 and gpus[1].compute == "gfx1100" and gpus[1].pci_id == "0000:03:00.0"
    assert "dropping AMD GPU 1" in caplog.text
    assert not (no_amd / "args.txt").exists()


def test_amdsmi_without_driver_means_no_amd_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(AMDSMI_DEVICES, init_error=True))
    assert AmdBackend().probe() == []


def test_mixed_vendors(monkeypatch: pytest.MonkeyPatch, nvml: FakeNvml, no_amd: Path) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(AMDSMI_DEVICES[:1]))
    inventory = probe(env={"CUDA_VISIBLE_DEVICES": "0"})
    assert [(g.vendor, g.index) for g in inventory.gpus] == [("nvidia", 0), ("amd", 0)]


# --- describe, cache ---------------------------------------------------------------------


def test_describe_lines(nvml: FakeNvml, no_amd: Path) -> None:
    lines = describe(probe(env={"CUDA_VISIBLE_DEVICES": "0"}))
    assert lines[0] == (
        "inference compute id=GPU-aaaa1111-0000-0000-0000-000000000000 library=CUDA compute=8.6 name=CUDA0 "
        'description="NVIDIA GeForce RTX 3090" driver=550.54.15 pci_id=00000000:01:00.0 '
        'total="24.0 GiB" available="23.0 GiB"'
    )
    assert lines[-1].startswith("inference compute id=cpu library=cpu")


def test_describe_without_gpus() -> None:
    inventory = Inventory(system={"total": 32 * GIB, "free": 30 * GIB})
    assert describe(inventory) == [
        "no compatible GPUs were discovered",
        'inference compute id=cpu library=cpu description=cpu total="32.0 GiB" available="30.0 GiB"',
    ]


def test_probe_inventory_caches_and_refreshes(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def fake_probe() -> Inventory:
        calls.append(1)
        return Inventory(system={"total": 8 * GIB, "free": (8 - len(calls)) * GIB})

    monkeypatch.setattr(gpu_probe, "_cached", None)
    monkeypatch.setattr(gpu_probe, "probe", fake_probe)
    with caplog.at_level(logging.INFO, logger="ollamapy.gpu"):
        first = probe_inventory()
        assert probe_inventory() is first
        refreshed = probe_inventory(refresh=True)
    assert len(calls) == 2
    assert refreshed.system.free == 6 * GIB
    assert caplog.text.count("inference compute id=cpu") == 1  # logged at start only


# --- inventory files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024),
        ("24 GiB", 24 * GIB),
        ("24GB", 24 * 10**9),
        ("1.5 GiB", 3 * GIB // 2),
        ("512 MiB", 512 * MIB),
        ("8 mb", 8 * 10**6),
        ("100", 100),
        ("12 parsecs", "12 parsecs"),  # left for pydantic to reject
    ],
)
def test_parse_byte_count(value: Any, expected: Any) -> None:
    assert parse_byte_count(value) == expected


def test_inventory_file_defaults() -> None:
    inventory = Inventory.model_validate(
        {
            "gpus": [
                {"vendor": "nvidia", "total": "24 GiB"},
                {"vendor": "amd", "total": "48 GiB", "free": "40 GiB", "name": "W7900"},
                {"vendor": "nvidia", "total": "24 GiB", "id": "GPU-x"},
            ],
            "system": {"total": "64 GiB", "free": "60 GiB"},
        }
    )
    nv0, amd0, nv1 = inventory.gpus
    assert (nv0.index, nv0.id, nv0.name, nv0.free) == (0, "0", "NVIDIA GPU", 24 * GIB)
    assert (amd0.index, amd0.id, amd0.name, amd0.free) == (0, "0", "W7900", 40 * GIB)
    assert (nv1.index, nv1.id) == (1, "GPU-x")


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        ([{"vendor": "intel", "total": "8 GiB"}], "vendor"),
        ([{"vendor": "nvidia"}], "total"),
        ([{"vendor": "nvidia", "total": "8 GiB", "free": "9 GiB"}], "exceeds total"),
        ([{"vendor": "nvidia", "total": "-1"}], "total"),
        ([{"vendor": "nvidia", "total": "8 GiB", "id": "a"}, {"vendor": "nvidia", "total": "8 GiB", "id": "a"}], "id 'a'"),
        ([{"vendor": "nvidia", "total": "8 GiB", "color": "green"}], "color"),
    ],
)
def test_bad_inventory_files(gpus: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Inventory.model_validate({"gpus": gpus, "system": {"total": 1, "free": 1}})


@pytest.mark.parametrize(
    ("vendor", "compute", "supported"),
    [("nvidia", "8.6", True), ("nvidia", "6.0", True), ("nvidia", "7.2", False), ("nvidia", "5.2", False), ("nvidia", "", False), ("amd", "gfx1100", True)],
)
def test_flash_attention_support(vendor: str, compute: str, supported: bool) -> None:
    assert GpuInfo(vendor=vendor, total=GIB, compute=compute).supports_flash_attention() is supported
