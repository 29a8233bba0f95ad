"""Load llama.cpp's ggml backends into this process: every GPU backend installed, then the
one CPU variant this machine runs best.

llama-cpp-python is built with ``GGML_BACKEND_DL`` and ``GGML_CPU_ALL_VARIANTS``
(``packaging/cpu-cmake-args``): each backend is a loadable module ``libggml-<name>.so``
(the wheel installs them in ``site-packages/bin``), and the CPU backend comes as one module
per x86 generation (``cpu-haswell``, ``cpu-icelake``, ``cpu-sapphirerapids``…), each
exporting ``ggml_backend_score()``: 0 when this CPU lacks one of its instructions, else
higher for newer ones. Nothing is registered until a module is loaded, so every process
that computes with llama.cpp calls ``load_backends`` first.

``OLLAMAPY_CPU_BACKEND`` names the variant to load (say ``haswell``); without it the
best-scoring one is loaded. A build without ``GGML_BACKEND_DL`` has its backends linked in
and registered already; its CPU backend is reported as ``built-in``.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUILT_IN", "CPU_BACKEND_ENV", "CpuBackend", "cpu_variants", "installed_modules", "load_backends"]

log = logging.getLogger("ollamapy.runner")

CPU_BACKEND_ENV = "OLLAMAPY_CPU_BACKEND"
"""Names the CPU variant to load (the server sets it for its runners)."""
BUILT_IN = "built-in"
"""The CPU backend's name in a build that links its backends in."""

_MODULE = re.compile(r"^libggml-(?!base\.)(.+)\.so$")
_LIBGGML = re.compile(r"/libggml\.so(\.\d+)*$")


@dataclass(frozen=True)
class CpuBackend:
    """The CPU variant this process loaded, and why that one."""

    name: str
    score: int | None
    how: str
    """``best score``, ``set by OLLAMAPY_CPU_BACKEND`` or ``linked in``."""

    def summary(self) -> str:
        """One log line's worth: ``icelake (score 1982, best score)``."""
        score = f"score {self.score}, " if self.score is not None else ""
        return f"{self.name} ({score}{self.how})"


def installed_modules() -> dict[str, Path]:
    """The installed llama-cpp-python's backend modules by name (``cuda``, ``cpu-icelake``…)."""
    try:
        files = importlib.metadata.files("llama_cpp_python") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found: dict[str, Path] = {}
    for file in files:
        match = _MODULE.match(file.name)
        # a module may be installed twice (llama_cpp/lib and bin): load one copy only
        if match and match[1] not in found:
            found[match[1]] = Path(str(file.locate())).resolve()
    return found


def cpu_variants(modules: dict[str, Path] | None = None) -> dict[str, Path]:
    """The CPU backend modules by variant name (``haswell``…; ``cpu`` for a single one)."""
    modules = installed_modules() if modules is None else modules
    return {name.removeprefix("cpu-"): path for name, path in modules.items() if name == "cpu" or name.startswith("cpu-")}


def _libggml() -> ctypes.CDLL:
    """The libggml that libllama itself uses: the backend registry lives in it.

    llama-cpp-python ships ``libggml.so`` and ``libggml.so.0`` as two copies of one file,
    not links: loading the other copy by path would give a second registry that llama.cpp
    never reads. So find the copy libllama loaded among this process's mappings.
    """
    from llama_cpp import llama_cpp  # noqa: F401  (loads libllama and, with it, libggml)

    with open("/proc/self/maps") as maps:
        path = next((line.split()[-1] for line in maps if _LIBGGML.search(line.rstrip())), None)
    if path is None:
        from llama_cpp import _ggml

        return _ggml.libggml
    lib = ctypes.CDLL(path)
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_reg_count.argtypes = []
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    return lib


def _score(path: Path) -> int:
    """The module's own verdict on this CPU (the module is loaded, not registered)."""
    score = getattr(ctypes.CDLL(str(path)), "ggml_backend_score", None)
    if score is None:
        return 1  # no score function: ggml treats the module as supported
    score.restype = ctypes.c_int
    return int(score())


def _choose_cpu(variants: dict[str, Path]) -> CpuBackend:
    forced = os.environ.get(CPU_BACKEND_ENV)
    if forced:
        if forced not in variants:
            raise RuntimeError(f"{CPU_BACKEND_ENV}={forced}: no such CPU backend (installed: {', '.join(sorted(variants))})")
        return CpuBackend(forced, _score(variants[forced]), f"set by {CPU_BACKEND_ENV}")
    scores = {name: _score(path) for name, path in variants.items()}
    best = max(scores, key=lambda name: scores[name])
    if scores[best] <= 0:
        raise RuntimeError("no CPU backend variant supports this CPU")
    return CpuBackend(best, scores[best], "best score")


_lock = threading.Lock()
_loaded: CpuBackend | None = None


def load_backends() -> CpuBackend:
    """Register the backends in this process (once; later calls return the first result).

    Call before ``llama_backend_init`` and any model load.
    """
    global _loaded
    with _lock:
        if _loaded is None:
            ggml = _libggml()
            if ggml.ggml_backend_reg_count() > 0:
                _loaded = CpuBackend(BUILT_IN, None, "linked in")
            else:
                modules = installed_modules()
                for name, path in modules.items():
                    if not (name == "cpu" or name.startswith("cpu-")):
                        ggml.ggml_backend_load(os.fsencode(path))  # a GPU module without its driver logs why
                variants = cpu_variants(modules)
                if not variants:
                    raise RuntimeError("llama.cpp has no CPU backend: no libggml-cpu module is installed with llama-cpp-python")
                choice = _choose_cpu(variants)
                if not ggml.ggml_backend_load(os.fsencode(variants[choice.name])):
                    raise RuntimeError(f"the CPU backend {choice.name} does not run on this CPU")
                _loaded = choice
            log.info("cpu backend: %s", _loaded.summary())
        return _loaded
