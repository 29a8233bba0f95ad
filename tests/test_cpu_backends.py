"""llama.cpp's CPU backend variants (``runner/backends.py``): what the installed build ships,
which one this machine gets, that one without AVX-512 computes the same text, that a
variant whose check dies is skipped, and that ``/api/ps`` names the variant runners load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.api.runner_protocol import CompletionRequest, LoadSpec
from ollamapy.runner.backends import CPU_BACKEND_ENV, choose_cpu_variant, cpu_variants, select_cpu_backend
from ollamapy.supervisor.placement.cpu_backend import CpuBackendProbe
from ollamapy.supervisor.runner_process import RunnerProcess

pytestmark = [pytest.mark.serving]

BASELINE = {"x64", "sse42"}
AVX512 = {"skylakex", "cannonlake", "cascadelake", "icelake", "cooperlake", "zen4", "sapphirerapids"}
SIGILL = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
PASS = [sys.executable, "-c", "pass"]


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as cpuinfo:
        return set(next(line for line in cpuinfo if line.startswith("flags")).split(":", 1)[1].split())


@pytest.fixture(scope="module")
def variants() -> dict[str, Path]:
    found = cpu_variants()
    if not found:
        pytest.skip("llama-cpp-python is built without GGML_BACKEND_DL: its one CPU backend is linked in")
    return found


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache for the choice, and no variant forced from outside."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(CPU_BACKEND_ENV, raising=False)
    return tmp_path / "cache"


def test_the_build_ships_a_baseline_variant_and_avx512_ones(variants: dict[str, Path]) -> None:
    assert variants.keys() >= BASELINE
    assert {"haswell", "skylakex", "icelake", "zen4"} <= variants.keys()
    assert all(path.is_file() and path.name == f"libggml-cpu-{name}.so" for name, path in variants.items())


def test_this_machine_gets_an_avx512_variant(variants: dict[str, Path]) -> None:
    if "avx512f" not in cpu_flags():
        pytest.skip("this CPU has no AVX-512")
    assert select_cpu_backend().name in AVX512


def test_a_variant_whose_check_dies_is_skipped_for_the_next(variants: dict[str, Path], own_cache: Path) -> None:
    checked: list[str] = []

    def check(name: str) -> list[str]:
        checked.append(name)
        return SIGILL if len(checked) == 1 else PASS

    choice = choose_cpu_variant(variants, check_command=check)
    crashed = checked[0]
    assert checked == [crashed, choice.name]
    assert choice.skipped == ((crashed, "killed by SIGILL in the check"),)
    assert choice.summary().endswith(f"; skipped {crashed}: killed by SIGILL in the check")
    # Best score first: the one that crashed outranks the one chosen.
    assert crashed not in BASELINE and choice.how == "checked"

    again = choose_cpu_variant(variants, check_command=check)  # from the cache: no second check
    assert len(checked) == 2
    assert (again.name, again.skipped, again.how) == (choice.name, choice.skipped, "checked earlier")


def test_an_unwritable_cache_only_means_checking_again(variants: dict[str, Path], own_cache: Path) -> None:
    own_cache.parent.mkdir(parents=True, exist_ok=True)
    own_cache.write_text("a file where the cache directory would go")
    checked: list[str] = []

    def check(name: str) -> list[str]:
        checked.append(name)
        return PASS

    first = choose_cpu_variant(variants, check_command=check)
    second = choose_cpu_variant(variants, check_command=check)
    assert first == second
    assert checked == [first.name, first.name]


def test_a_forced_variant_must_exist(variants: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_BACKEND_ENV, "haswell")
    assert choose_cpu_variant(variants).how == f"set by {CPU_BACKEND_ENV}"
    monkeypatch.setenv(CPU_BACKEND_ENV, "pentium")
    with pytest.raises(RuntimeError, match="OLLAMAPY_CPU_BACKEND=pentium: no such CPU backend"):
        choose_cpu_variant(variants)


def mapped_cpu_variants(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return {Path(line.split()[-1]).name for line in maps if "/libggml-cpu-" in line}


async def greedy_text(tiny_gguf: Path, variant: str) -> str:
    """The tiny model's greedy text from a runner forced to ``variant`` (checked to be the
    only CPU variant in the process)."""
    runner = await RunnerProcess.start(LoadSpec(model_path=str(tiny_gguf), num_ctx=256), model_name="tiny", env={CPU_BACKEND_ENV: variant})
    try:
        await runner.wait_until_ready(stall_timeout=60)
        assert mapped_cpu_variants(runner.pid) == {f"libggml-cpu-{variant}.so"}
        request = CompletionRequest(prompt="the sky is", temperature=0.0, num_predict=24)
        return "".join([chunk.content async for chunk in runner.completion(request)])
    finally:
        await runner.close()


def gpu_module_without_its_driver(directory: Path) -> Path:
    """A ``libggml-cuda.so`` that needs ``libcuda.so.1``, which is not there: what the CUDA
    image's module meets in a container started without ``--gpus``."""
    stub, module = directory / "libcuda.so.1", directory / "libggml-cuda.so"
    (directory / "stub.c").write_text("int cuInit(unsigned flags) { return 0; }\n")
    (directory / "module.c").write_text("int cuInit(unsigned flags);\nint ggml_backend_score(void) { return cuInit(0) + 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(stub), str(directory / "stub.c")], check=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(module), str(directory / "module.c"), str(stub)], check=True)
    stub.unlink()
    return module


def test_a_gpu_module_whose_driver_is_missing_is_left_out(variants: dict[str, Path], tiny_gguf: Path, tmp_path: Path) -> None:
    """The GPU images on a host without a GPU: the GPU module does not load (llama.cpp logs
    why), the CPU variant does, and the model generates on the CPU."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    module = gpu_module_without_its_driver(tmp_path)
    script = f"""
from pathlib import Path
from llama_cpp import Llama
from ollamapy.runner import backends
shipped = backends.installed_modules
backends.installed_modules = lambda: {{**shipped(), "cuda": Path({str(module)!r})}}
print("cpu backend", backends.load_backends().name)
llm = Llama(model_path={str(tiny_gguf)!r}, n_ctx=64, verbose=False)
print("generated", repr(llm.create_completion("the sky is", max_tokens=4, temperature=0.0)["choices"][0]["text"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"cpu backend {select_cpu_backend().name}" in done.stdout
    assert "generated '" in done.stdout and "generated ''" not in done.stdout
    assert "libcuda.so.1" in done.stderr  # the reason the module was left out


async def test_a_variant_without_avx512_generates_the_same_text(variants: dict[str, Path], tiny_gguf: Path) -> None:
    if not {"avx2", "fma", "f16c", "bmi2"} <= cpu_flags():
        pytest.skip("this CPU cannot run the haswell variant")
    chosen = select_cpu_backend().name
    assert chosen != "haswell"
    text = await greedy_text(tiny_gguf, "haswell")
    assert text and text == await greedy_text(tiny_gguf, chosen)


async def test_api_ps_and_plan_name_the_cpu_backend(two_slot_client: TestClient) -> None:
    response = await two_slot_client.post("/api/generate", json={"model": "tiny", "prompt": "the sky", "stream": False, "options": {"num_predict": 2}})
    assert response.status == 200, await response.text()
    (entry,) = (await (await two_slot_client.get("/api/ps")).json())["models"]
    expected = select_cpu_backend().name
    assert entry["placement"]["cpu_backend"] == expected
    assert entry["placement"]["env"][CPU_BACKEND_ENV] == expected
    plan = await (await two_slot_client.post("/api/plan", json={"model": "tiny"})).json()
    assert plan["placement"]["cpu_backend"] == expected


async def test_the_servers_probe_result_and_failure() -> None:
    found = {"name": "zen4", "summary": "zen4 (score 1984, checked)", "env": {CPU_BACKEND_ENV: "zen4"}}
    probe = CpuBackendProbe([sys.executable, "-c", f"print({json.dumps(json.dumps(found))})"])
    choice = await probe.result()
    assert choice is not None and (choice.name, choice.env) == ("zen4", {CPU_BACKEND_ENV: "zen4"})
    assert probe.known == choice

    failing = CpuBackendProbe([sys.executable, "-c", "import sys; sys.exit('error: no CPU backend runs here')"])
    assert await failing.result() is None  # runners then choose by themselves
