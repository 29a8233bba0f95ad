"""The competitor: llama-server built from the llama.cpp sources that the installed
llama-cpp-python vendors, with the project's CPU flags (``packaging/cpu-cmake-args``).

Built once into ``$XDG_CACHE_HOME/ollamapy/llama-server/<version>-<flags hash>/`` (outside the
repository; about 15 minutes on 2 cores) and reused. Both sides then run the same ggml CPU
variant: the build makes every variant, and :func:`run_dir` lays out a directory holding
llama-server with only the variant ollamapy's own runtime selection picked, because
llama-server loads the highest-scoring variant it finds beside its executable, and the
highest-scoring one (AMX, say) is not always one the OS lets a process execute.

    .venv/bin/python -m bench.llama_server    # build (if needed) and print the binary's path
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["build", "run_dir"]

REPO = Path(__file__).resolve().parent.parent
EXTRA_ARGS = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]


def project_cmake_args() -> list[str]:
    """The CPU flags the project builds llama.cpp with (the setup and packaging scripts read the same file)."""
    return (REPO / "packaging" / "cpu-cmake-args").read_text().split()


def cache_dir() -> Path:
    version = importlib.metadata.version("llama-cpp-python")
    flags = hashlib.sha256(" ".join(project_cmake_args() + EXTRA_ARGS).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ollamapy" / "llama-server" / f"{version}-{flags}"


def build() -> Path:
    """The build directory's ``bin/`` (llama-server, its libraries, every CPU variant)."""
    cache = cache_dir()
    bin_dir = cache / "build" / "bin"
    if (bin_dir / "llama-server").exists():
        return bin_dir
    version = importlib.metadata.version("llama-cpp-python")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", tmp],
            check=True,
        )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        shutil.rmtree(cache / "src", ignore_errors=True)
        shutil.move(str(next(Path(tmp).glob("llama_cpp_python-*")) / "vendor" / "llama.cpp"), cache / "src")
    build_dir = cache / "build"
    subprocess.run(["cmake", "-S", str(cache / "src"), "-B", str(build_dir), *project_cmake_args(), *EXTRA_ARGS], check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(os.cpu_count() or 1)], check=True)
    return bin_dir


def run_dir(variant: str) -> Path:
    """A directory whose llama-server can load only CPU variant ``variant`` (e.g. ``icelake``).

    Hard links, not symlinks: ggml searches the directory of the resolved executable.
    """
    bin_dir = build()
    target = bin_dir.parent / f"run-{variant}"
    if target.exists():
        return target
    wanted = bin_dir / f"libggml-cpu-{variant}.so"
    if not wanted.exists():
        raise FileNotFoundError(f"{wanted} was not built")
    staging = Path(tempfile.mkdtemp(dir=bin_dir.parent))
    for entry in bin_dir.iterdir():
        if entry.is_file() and (entry == wanted or not entry.name.startswith("libggml-cpu-")):
            os.link(entry, staging / entry.name)
    staging.rename(target)
    return target


if __name__ == "__main__":
    print(build() / "llama-server")
