"""Load llama.cpp's ggml backends into this process: every GPU backend installed, then the
one CPU variant this machine runs best.

llama-cpp-python is built with ``GGML_BACKEND_DL`` and ``GGML_CPU_ALL_VARIANTS``
(``packaging/cpu-cmake-args``): each backend is a loadable module ``libggml-<name>.so``
(the wheel installs them in ``site-packages/bin``), and the CPU backend comes as one module
per x86 generation (``cpu-haswell``, ``cpu-icelake``, ``cpu-sapphirerapids``…), each
exporting ``ggml_backend_score()``: 0 when this CPU lacks one of its instructions, else
higher for newer ones. Nothing is registered until a module is loaded, so every process
that computes with llama.cpp calls ``load_backends`` first.

llama.cpp's own ``ggml_backend_load_all`` loads the best score and trusts it. A variant can
still die here: the sapphirerapids one built by GCC 12 kills its process with SIGILL on
its first AMX matrix product (GCC 12's ``_tile_loadconfig`` declares that it reads 8 bytes,
so at -O3 the tile shapes written before it are dropped as dead stores, and a tile
instruction on an unconfigured tile is an invalid opcode); an OS that does not enable an
extension the CPU reports ends the same way. So the variants are checked best score
first, each in a child process that loads it alone and runs a tiny model through it
(``runner/cpu_check.py``), and the first whose check exits cleanly is the choice. The
choice is cached on disk, keyed by the variant files and the CPU, so a machine with one
build checks once.

``OLLAMAPY_CPU_BACKEND`` names the variant to load (the server sets it for its runners
from its own choice at start; set by hand it forces one, unchecked). A build without
``GGML_BACKEND_DL`` has its backends linked in and registered already; its CPU backend
is reported as ``built-in``.

``python -m ollamapy.runner.backends`` prints the choice as JSON (what the server runs at
start); the probe's child processes are ``ollamapy.runner.cpu_check``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamapy import envconfig

__all__ = [
    "BUILT_IN",
    "CPU_BACKEND_ENV",
    "CheckCommand",
    "CpuBackend",
    "choose_cpu_variant",
    "cpu_backend_name",
    "cpu_variants",
    "installed_modules",
    "libggml",
    "load_backends",
    "load_module",
    "main",
    "module_score",
    "select_cpu_backend",
]

log = logging.getLogger("ollamapy.runner")

CPU_BACKEND_ENV = "OLLAMAPY_CPU_BACKEND"
"""Names the CPU variant to load (the server sets it for its runners)."""
BUILT_IN = "built-in"
"""The CPU backend's name in a build that links its backends in."""

CheckCommand = Callable[[str], list[str]]
"""The command line of the check of one variant (by name)."""

_CHECK_TIMEOUT = 300.0
_CACHE_VERSION = 1


@dataclass(frozen=True)
class CpuBackend:
    """A CPU variant chosen for this machine, and how."""

    name: str
    score: int | None
    how: str
    """``checked``, ``checked earlier`` (from the cache), ``set by OLLAMAPY_CPU_BACKEND``
    or ``linked in``."""
    skipped: tuple[tuple[str, str], ...] = ()
    """Better-scoring variants that failed their check, with why."""

    def summary(self) -> str:
        """The log line's text: ``zen4 (score 2047, checked); skipped sapphirerapids: killed by SIGILL in the check``."""
        score = f"score {self.score}, " if self.score is not None else ""
        return "; ".join([f"{self.name} ({score}{self.how})", *(f"skipped {name}: {why}" for name, why in self.skipped)])

    def to_json(self) -> dict[str, Any]:
        """What the cache and ``python -m ollamapy.runner.backends`` hold; ``env`` is what a
        runner needs in its environment to load this variant without choosing again."""
        env = {} if self.name == BUILT_IN else {CPU_BACKEND_ENV: self.name}
        return {"name": self.name, "score": self.score, "how": self.how, "skipped": [list(s) for s in self.skipped],
                "summary": self.summary(), "env": env}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CpuBackend:
        skipped = tuple((str(name), str(why)) for name, why in data.get("skipped", []))
        score = data.get("score")
        return cls(name=str(data["name"]), score=None if score is None else int(score), how=str(data["how"]), skipped=skipped)


# -- what is installed ------------------------------------------------------------------


def installed_modules() -> dict[str, Path]:
    """The installed llama-cpp-python's backend modules by name (``cuda``, ``cpu-icelake``…),
    from the distribution's file list (the wheel puts them in ``site-packages/bin``)."""
    try:
        files = importlib.metadata.files("llama_cpp_python") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found: dict[str, Path] = {}
    for file in files:
        name = file.name
        if name.startswith("libggml-") and name.endswith(".so") and name != "libggml-base.so":
            # a module may be installed twice (llama_cpp/lib and bin): load one copy only
            found.setdefault(name[len("libggml-") : -len(".so")], Path(str(file.locate())).resolve())
    return found


def cpu_variants(modules: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """The CPU backend modules by variant name (``haswell``…; ``cpu`` for a single one)."""
    modules = installed_modules() if modules is None else modules
    return {name.removeprefix("cpu-"): path for name, path in modules.items() if _is_cpu(name)}


def _is_cpu(module: str) -> bool:
    return module == "cpu" or module.startswith("cpu-")


# -- the native side ----------------------------------------------------------------------


def libggml() -> ctypes.CDLL:
    """The ggml functions libllama itself calls: the backend registry lives in its libggml.

    llama-cpp-python ships ``libggml.so`` and ``libggml.so.0`` as two copies of one file,
    not links, and ``llama_cpp._ggml`` loads the first: a backend loaded through that copy
    goes into a second registry that llama.cpp never reads. Symbols looked up through
    libllama's handle resolve in the libraries it loaded, so they are the right ones.
    """
    from llama_cpp import llama_cpp

    lib = ctypes.CDLL(llama_cpp._lib._name)
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_reg_count.argtypes = []
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    return lib


def module_score(path: Path) -> int:
    """The module's own verdict on this CPU (loads the module into this process, registers nothing)."""
    score = getattr(ctypes.CDLL(str(path)), "ggml_backend_score", None)
    if score is None:
        return 1  # no score function: ggml counts the module as supported
    score.restype = ctypes.c_int
    return int(score())


def load_module(ggml: ctypes.CDLL, path: Path) -> bool:
    """Register the backend of module ``path``; False when it does not load or scores 0 here."""
    return bool(ggml.ggml_backend_load(os.fsencode(path)))


# -- choosing -------------------------------------------------------------------------------


def _check_command(name: str) -> list[str]:
    return [sys.executable, "-m", "ollamapy.runner.cpu_check", "check", name]


def _died(returncode: int, where: str) -> str | None:
    """Why a child failed, or None when it exited cleanly."""
    if returncode < 0:
        try:
            signame = signal.Signals(-returncode).name
        except ValueError:
            signame = f"signal {-returncode}"
        return f"killed by {signame} {where}"
    return None if returncode == 0 else f"exit status {returncode} {where}"


def _scores(variants: Mapping[str, Path]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Every variant's score, read in child processes (one that dies loading a module is skipped)."""
    scores: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    left = list(variants)
    while left:
        done = subprocess.run(
            [sys.executable, "-m", "ollamapy.runner.cpu_check", "scores", *left],
            capture_output=True, text=True, timeout=_CHECK_TIMEOUT, check=False,
        )
        for line in done.stdout.splitlines():
            name, score = json.loads(line)
            scores[name] = int(score)
        left = [name for name in left if name not in scores]
        why = _died(done.returncode, "while loading")
        if why is None:
            break
        if left:  # the first one not reported is the one it died on
            skipped.append((left.pop(0), why))
        else:
            raise RuntimeError(f"reading the CPU backends' scores failed: {why}: {done.stderr.strip()[-500:]}")
    return scores, skipped


def _run_check(command: list[str]) -> str | None:
    """Why the check failed, or None when it passed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_CHECK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return f"its check took over {_CHECK_TIMEOUT:.0f} s"
    why = _died(done.returncode, "in the check")
    if why is not None and done.returncode > 0:
        lines = done.stderr.strip().splitlines()
        why += f" ({lines[-1]})" if lines else ""
    return why


def _probe(variants: Mapping[str, Path], check_command: CheckCommand) -> CpuBackend:
    """The best-scoring variant whose check passes."""
    log.info("checking llama.cpp's CPU backends (%d variants)", len(variants))
    scores, skipped = _scores(variants)
    for name in sorted((n for n, s in scores.items() if s > 0), key=lambda n: scores[n], reverse=True):
        why = _run_check(check_command(name))
        if why is None:
            return CpuBackend(name, scores[name], "checked", tuple(skipped))
        log.warning("cpu backend %s: %s; trying the next best", name, why)
        skipped.append((name, why))
    failures = "; ".join(f"{name}: {why}" for name, why in skipped) or "none supports this CPU"
    raise RuntimeError(f"no CPU backend of llama.cpp runs on this machine ({failures})")


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ollamapy"


def _cpu_identity() -> str:
    """What decides which variants run: the CPU's model and flags, and the kernel."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = [line.strip() for line in cpuinfo if line.startswith(("model name", "flags"))]
    except OSError:
        lines = [platform.processor()]
    return "\n".join(dict.fromkeys(lines)) + "\n" + platform.release()


def _cache_file(variants: Mapping[str, Path]) -> Path:
    files = [(name, path.stat().st_size, path.stat().st_mtime_ns) for name, path in sorted(variants.items())]
    key = json.dumps([_CACHE_VERSION, files, _cpu_identity()])
    return _cache_dir() / f"cpu-backend-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _read_cache(variants: Mapping[str, Path]) -> CpuBackend | None:
    try:
        choice = CpuBackend.from_json(json.loads(_cache_file(variants).read_text()))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None
    return dataclasses.replace(choice, how="checked earlier") if choice.name in variants else None


def _write_cache(variants: Mapping[str, Path], choice: CpuBackend) -> None:
    try:
        path = _cache_file(variants)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, delete=False) as out:
            json.dump(choice.to_json(), out)
        os.replace(out.name, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home directory
        log.info("not caching the CPU backend choice: %s", exc)


@contextlib.contextmanager
def _probe_lock(variants: Mapping[str, Path]) -> Iterator[None]:
    """An exclusive lock beside the cache file, when the cache directory is writable:
    processes starting together on a fresh machine probe one at a time, and the later
    ones find the first one's choice in the cache."""
    fd = None
    try:
        lock = _cache_file(variants).with_suffix(".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except (OSError, RuntimeError):
        pass  # probe unlocked
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def choose_cpu_variant(variants: Mapping[str, Path], *, check_command: CheckCommand = _check_command) -> CpuBackend:
    """The variant to load among ``variants``: the one ``OLLAMAPY_CPU_BACKEND`` names, else
    the cached choice for these files on this CPU, else the best one whose check passes
    (``check_command`` makes the check's command line; the choice is then cached)."""
    forced = envconfig.cpu_backend()
    if forced:
        if forced not in variants:
            raise RuntimeError(f"{CPU_BACKEND_ENV}={forced}: no such CPU backend (installed: {', '.join(sorted(variants))})")
        return CpuBackend(forced, None, f"set by {CPU_BACKEND_ENV}")
    cached = _read_cache(variants)
    if cached is not None:
        return cached
    with _probe_lock(variants):
        cached = _read_cache(variants)  # probed by another process while this one waited
        if cached is not None:
            return cached
        choice = _probe(variants, check_command)
        _write_cache(variants, choice)
    return choice


_lock = threading.RLock()
_loaded: CpuBackend | None = None


def select_cpu_backend() -> CpuBackend:
    """The CPU backend this process loads (or loaded): ``built-in`` for a build that links
    its backends in, else ``choose_cpu_variant`` over the installed variants."""
    with _lock:
        if _loaded is not None:
            return _loaded
        if libggml().ggml_backend_reg_count() > 0:
            return CpuBackend(BUILT_IN, None, "linked in")
        variants = cpu_variants()
        if not variants:
            raise RuntimeError("llama.cpp has no CPU backend: no libggml-cpu module is installed with llama-cpp-python")
        return choose_cpu_variant(variants)


def cpu_backend_name() -> str:
    """The chosen CPU variant's name (``zen4``…, or ``built-in``), for benchmarks that run
    another llama.cpp program with the same variant."""
    return select_cpu_backend().name


def load_backends() -> CpuBackend:
    """Register the backends in this process (once; later calls return the first result)
    and log the CPU variant. Call before ``llama_backend_init`` and any model load."""
    global _loaded
    with _lock:
        if _loaded is None:
            choice = select_cpu_backend()
            if choice.name != BUILT_IN:
                ggml = libggml()
                modules = installed_modules()
                for name, path in modules.items():
                    if not _is_cpu(name):
                        load_module(ggml, path)  # one without its driver or device logs why and is left out
                path = cpu_variants(modules)[choice.name]
                if not load_module(ggml, path):
                    raise RuntimeError(f"the CPU backend {choice.name} does not run on this CPU (see llama.cpp's log above)")
                if choice.score is None:
                    choice = dataclasses.replace(choice, score=module_score(path))
            _loaded = choice
            log.info("cpu backend: %s", choice.summary())
        return _loaded


def main() -> int:
    """``python -m ollamapy.runner.backends``: print the choice for this machine as JSON."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        choice = select_cpu_backend()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(choice.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
