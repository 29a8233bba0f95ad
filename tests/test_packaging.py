"""The wheel installs everything under the ``ollamapy`` namespace, nothing generic at top level."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    mapping = {"ollamapy": ROOT / "ollamapy", "ollamapy.runner": ROOT / "runner", "ollamapy.supervisor": ROOT / "supervisor"}
    found = set()
    for prefix, base in mapping.items():
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((prefix, *rel)))
    assert found == listed


@pytest.mark.slow
def test_wheel_installs_under_ollamapy_namespace(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("ollamapy-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"ollamapy", next(t for t in tops if t.endswith(".dist-info"))}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    # Dependencies come from the test environment's site-packages as a plain path entry, so
    # its .pth files (among them the editable install's finder) are not processed.
    site_dir = next(venv.glob("lib/python*/site-packages"))
    (site_dir / "deps.pth").write_text(str(Path(aiohttp.__file__).resolve().parent.parent) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], check=True)
    code = (
        "import importlib.util, ollamapy.runner, ollamapy.supervisor.app, ollamapy.cli.main;"
        "assert importlib.util.find_spec('runner') is None and importlib.util.find_spec('supervisor') is None;"
        "print(ollamapy.__file__)"
    )
    result = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(venv) in result.stdout
    version = subprocess.run([str(venv / "bin" / "ollamapy"), "--version"], capture_output=True, text=True, check=True).stdout
    assert "0.1.0" in version
