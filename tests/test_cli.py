"""The ``ollamapy`` command line against a fake server, and the formatting it borrows from
Ollama (``HumanBytes``, ``HumanTime``, ``HumanNumber``, tablewriter layout, the progress
bars, the word wrap and the timing block). ``test_cli_run_functional.py`` drives ``run``
and the REPL against a real server."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyte
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from test_client import GEMMA_SHOW, FakeOllama, free_port

from ollamapy import __version__
from ollamapy.cli.display import (
    ProgressView,
    ResponseWriter,
    format_embedding,
    format_metrics,
    format_ps,
    format_transfer_eta,
    human_bytes,
    human_duration,
    human_number,
    human_time,
    render_table,
    render_tool_calls,
)
from ollamapy.cli.main import main
from ollamapy.golang import format_float

NOT_RUNNING = "Error: could not connect to ollamapy server, is it running? (start it with 'ollamapy serve')\n"


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama(models={"gemma3:270m": GEMMA_SHOW})


@contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """Serve ``app`` on a loopback port in a thread of its own (the CLI runs its own event
    loop); yield the address for ``OLLAMA_HOST``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app)

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture
def served(fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    """The fake server, with ``OLLAMA_HOST`` pointing at it."""
    with serving(fake.app()) as host:
        monkeypatch.setenv("OLLAMA_HOST", host)
        yield fake


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# --- list ----------------------------------------------------------------------------


def test_list_prints_ollamas_table(served: FakeOllama) -> None:
    now = datetime.now(UTC)
    served.list_entries = [
        {"name": "gemma3:270m", "digest": "e7d4" + "0" * 60, "size": 291_554_930, "modified_at": iso(now - timedelta(days=15))},
        {"name": "llama3.2:latest", "digest": "a80c4f17acd5" + "1" * 52, "size": 2_019_393_189,
         "modified_at": iso(now - timedelta(seconds=90))},
    ]
    result = run("list")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "NAME" + " " * 15 + "ID" + " " * 14 + "SIZE" + " " * 6 + "MODIFIED" + " " * 11 + "\n"
        "gemma3:270m" + " " * 8 + "e7d400000000" + " " * 4 + "291 MB" + " " * 4 + "2 weeks ago" + " " * 11 + "\n"
        "llama3.2:latest" + " " * 4 + "a80c4f17acd5" + " " * 4 + "2.0 GB" + " " * 4 + "About a minute ago" + " " * 4 + "\n"
    )
    only = run("ls", "LLAMA")  # the alias, and a case-insensitive prefix
    assert only.stdout.splitlines()[1:] == [
        "llama3.2:latest    a80c4f17acd5    2.0 GB    About a minute ago    "
    ]


def test_list_shows_no_size_for_remote_models(served: FakeOllama) -> None:
    served.list_entries = [{"name": "gpt-oss:120b-cloud", "remote_model": "gpt-oss:120b", "digest": "c" * 64,
                            "size": 384, "modified_at": "0001-01-01T00:00:00Z"}]
    assert run("list").stdout.splitlines()[1] == "gpt-oss:120b-cloud    cccccccccccc    -       Never       "


def test_list_without_models_prints_the_header(served: FakeOllama) -> None:
    assert run("list").stdout == "NAME    ID    SIZE    MODIFIED \n"


def test_list_without_server_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    result = run("list")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", NOT_RUNNING)


# --- show ----------------------------------------------------------------------------

SHOW_INFO = (
    "  Model\n"
    "    architecture        gemma3     \n"
    "    parameters          268.10M    \n"
    "    context length      32768      \n"
    "    embedding length    640        \n"
    "    quantization        Q4_K_M     \n"
    "\n"
    "  Capabilities\n"
    "    completion    \n"
    "\n"
    "  Parameters\n"
    '    stop           "<end_of_turn>"    \n'
    "    temperature    1                  \n"
    "    top_k          64                 \n"
    "    top_p          0.95               \n"
    "\n"
)
SHOW_LICENSE = (
    "  License\n"
    "    Gemma Terms of Use                  \n"
    "    Last modified: February 21, 2024    \n"
    "    ...                                 \n"
    "\n"
)
SHOW_METADATA = (
    "  Metadata\n"
    "    gemma3.context_length           32768                 \n"
    "    gemma3.embedding_length         640                   \n"
    "    general.architecture            gemma3                \n"
    "    general.file_type               15                    \n"
    "    general.parameter_count         2.68098176e+08        \n"
    "    tokenizer.ggml.add_bos_token    true                  \n"
    "    tokenizer.ggml.model            llama                 \n"
    "    tokenizer.ggml.tokens           [<pad> ...+2 more]    \n"
    "\n"
)


def test_show_prints_ollamas_sections(served: FakeOllama) -> None:
    result = run("show", "gemma3:270m")
    assert result.exit_code == 0, result.output
    assert result.stdout == SHOW_INFO + SHOW_LICENSE
    assert served.received[-1] == ("POST", "/api/show", {"model": "gemma3:270m"})


def test_show_verbose_adds_metadata(served: FakeOllama) -> None:
    result = run("show", "-v", "gemma3:270m")
    assert result.stdout == SHOW_INFO + SHOW_METADATA + SHOW_LICENSE
    assert served.received[-1] == ("POST", "/api/show", {"model": "gemma3:270m", "verbose": True})


def test_show_without_model_info_falls_back_to_details(served: FakeOllama) -> None:
    served.models["old"] = {"details": {"family": "llama", "parameter_size": "8.0B", "quantization_level": "Q4_0"}}
    assert run("show", "old").stdout == (
        "  Model\n"
        "    architecture    llama    \n"
        "    parameters      8.0B     \n"
        "    quantization    Q4_0     \n"
        "\n"
    )


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--modelfile", GEMMA_SHOW["modelfile"] + "\n"),
        ("--license", GEMMA_SHOW["license"] + "\n"),
        ("--parameters", GEMMA_SHOW["parameters"] + "\n"),
        ("--template", "{{ .Prompt }}"),  # printed as is, without a newline
        ("--system", ""),
    ],
)
def test_show_one_field(served: FakeOllama, flag: str, expected: str) -> None:
    result = run("show", "gemma3:270m", flag)
    assert (result.exit_code, result.stdout) == (0, expected)


def test_show_errors(served: FakeOllama) -> None:
    both = run("show", "gemma3:270m", "--license", "--modelfile")
    assert (both.exit_code, both.stderr) == (
        1, "Error: only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified\n"
    )
    assert served.received == []
    missing = run("show", "missing")
    assert (missing.exit_code, missing.stdout, missing.stderr) == (1, "", "Error: model 'missing' not found\n")
    served.models["flux"] = {**GEMMA_SHOW, "capabilities": ["image"]}
    assert run("show", "flux").stderr == "Error: image generation models are not currently supported\n"


# --- cp, rm --------------------------------------------------------------------------


def test_cp_and_rm(served: FakeOllama) -> None:
    copied = run("cp", "gemma3:270m", "mine")
    assert (copied.exit_code, copied.stdout) == (0, "copied 'gemma3:270m' to 'mine'\n")
    removed = run("rm", "mine", "gemma3:270m")
    assert (removed.exit_code, removed.stdout) == (0, "deleted 'mine'\ndeleted 'gemma3:270m'\n")
    assert served.models == {}


def test_cp_and_rm_errors(served: FakeOllama) -> None:
    assert run("cp", "nope", "x").stderr == 'Error: model "nope" not found\n'
    partly = run("rm", "gemma3:270m", "nope", "never-reached")
    assert (partly.exit_code, partly.stdout, partly.stderr) == (
        1, "deleted 'gemma3:270m'\n", "Error: model 'nope' not found\n"
    )
    assert [body for _, path, body in served.received if path == "/api/delete"] == [{"model": "gemma3:270m"}, {"model": "nope"}]


# --- create --------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 64)
    (tmp_path / "Modelfile").write_text("FROM ./tiny.gguf\nPARAMETER temperature 0.5\nSYSTEM You are terse.\n")
    return tmp_path


def test_create_uploads_the_gguf_then_creates(served: FakeOllama, model_dir: Path) -> None:
    digest = "sha256:" + hashlib.sha256((model_dir / "tiny.gguf").read_bytes()).hexdigest()
    result = run("create", "mine", "-f", str(model_dir / "Modelfile"))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "gathering model components",
        f"copying file {digest} 100%",
        "parsing GGUF",
        "using existing layer sha256:" + "1" * 64,
        "creating new layer sha256:" + "2" * 64,
        "writing manifest",
        "success",
    ]
    assert served.blobs[digest] == (model_dir / "tiny.gguf").read_bytes()
    assert served.received[-1] == (
        "POST",
        "/api/create",
        {"model": "mine", "files": {"tiny.gguf": digest}, "system": "You are terse.", "parameters": {"temperature": 0.5}},
    )


def test_create_skips_blobs_the_server_has(served: FakeOllama, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(model_dir)  # ./Modelfile is the default
    assert run("create", "mine").exit_code == 0
    zeros = "0000000000000000000"
    served.create_events = [
        {"status": "parsing GGUF"},
        {"status": "quantizing F32 model to Q4_K_M", "digest": zeros, "total": 6, "completed": 0},
        {"status": "quantizing F32 model to Q4_K_M", "digest": zeros, "total": 6, "completed": 6},
        {"status": "creating new layer sha256:" + "3" * 64},
        {"status": "success"},
    ]
    again = run("create", "mine", "--quantize", "q4_K_M")
    assert again.exit_code == 0, again.output
    assert len(served.blob_posts) == 1
    assert served.received[-1][2]["quantize"] == "q4_K_M"
    assert again.stderr.splitlines()[2:] == [
        "parsing GGUF",
        # Ollama's bar at its default 80 columns: the bar takes what the texts leave
        "quantizing F32 model to Q4_K_M 100% \u2595" + "\u2588" * 9 + "\u258f    6 B",
        "creating new layer sha256:" + "3" * 64,
        "success",
    ]


def test_create_reports_modelfile_errors_before_contacting_the_server(
    served: FakeOllama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "Bad"
    bad.write_text("FROM x\nFOO bar\n")
    result = run("create", "mine", "-f", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: (line 2): command must be one of "from", ')
    assert run("create", "mine", "-f", str(tmp_path / "absent")).stderr == "Error: specified Modelfile wasn't found\n"
    monkeypatch.chdir(tmp_path)  # no ./Modelfile: FROM . finds no weights either
    assert run("create", "mine").stderr.endswith("Error: no Modelfile or safetensors files found\n")
    assert run("create", "bad name!", "-f", str(bad)).stderr == "Error: invalid model name: bad name!\n"
    assert served.received == []


def test_create_server_errors(served: FakeOllama, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text("FROM gemma3:270m\nPARAMETER num_ctx 4096\n")
    served.create_refusal = (404, "model 'gemma3:270m' not found")
    refused = run("create", "mine", "-f", str(tmp_path / "Modelfile"))
    assert (refused.exit_code, refused.stderr.splitlines()[-1]) == (1, "Error: 404 Not Found: model 'gemma3:270m' not found")
    served.create_refusal = None
    served.create_events = [{"status": "parsing GGUF"}, {"error": "template error: unexpected EOF"}]
    (tmp_path / "Modelfile").write_text("FROM gemma3:270m\nTEMPLATE {{ .Prompt\n")
    failed = run("create", "mine", "-f", str(tmp_path / "Modelfile"))
    assert failed.exit_code == 1
    assert failed.stderr.splitlines() == [
        "gathering model components",
        "parsing GGUF",
        "Error: template error: unexpected EOF",
    ]


def test_model_management_against_the_real_server(
    models_dir: Path, tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ollamapy.supervisor.app import create_app

    (tmp_path / "Modelfile").write_text(f"FROM {tiny_gguf}\nPARAMETER temperature 0.5\nSYSTEM You are terse.\n")
    with serving(create_app(models_dir)) as host:
        monkeypatch.setenv("OLLAMA_HOST", host)
        created = run("create", "tiny", "-f", str(tmp_path / "Modelfile"))
        assert created.exit_code == 0, created.output
        assert created.stderr.splitlines()[-2:] == ["writing manifest", "success"]
        listed = run("list").stdout.splitlines()
        assert listed[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
        assert listed[1].startswith("tiny:latest    ") and len(listed) == 2
        shown = run("show", "tiny").stdout
        assert "    architecture        llama    \n" in shown
        assert "  Parameters\n    temperature    0.5    \n" in shown
        assert "  System\n    You are terse.    \n" in shown
        assert run("cp", "tiny", "copy").stdout == "copied 'tiny' to 'copy'\n"
        assert run("rm", "copy", "tiny").stdout == "deleted 'copy'\ndeleted 'tiny'\n"
        assert run("show", "tiny").stderr == "Error: model 'tiny' not found\n"
        assert run("list").stdout == "NAME    ID    SIZE    MODIFIED \n"


# --- ps, stop, rm of a loaded model -------------------------------------------------------


def test_ps_prints_ollamas_table(served: FakeOllama) -> None:
    now = datetime.now(UTC)
    served.ps_models = [
        {"name": "gemma3:270m", "model": "gemma3:270m", "digest": "e7d4" + "0" * 60, "size": 549_000_000,
         "size_vram": 0, "context_length": 4096, "expires_at": iso(now + timedelta(minutes=4, seconds=30)),
         "placement": {"processor": "100% CPU"}},
        {"name": "llama3.2:latest", "model": "llama3.2:latest", "digest": "a80c4f17acd5" + "1" * 52,
         "size": 4_100_000_000, "size_vram": 1_025_000_000, "context_length": 8192,
         "expires_at": "2318-03-01T00:00:00Z"},
    ]
    result = run("ps")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "NAME               ID              SIZE      PROCESSOR          CONTEXT    UNTIL              \n"
        "gemma3:270m        e7d400000000    549 MB    100% CPU           4096       4 minutes from now    \n"
        "llama3.2:latest    a80c4f17acd5    4.1 GB    75%/25% CPU/GPU    8192       Forever               \n"
    )
    assert run("ps", "llama").stdout.splitlines()[1].startswith("llama3.2:latest ")
    assert len(run("ps", "Llama").stdout.splitlines()) == 1  # Ollama's ps prefix is case-sensitive


def test_ps_processor_and_until_labels() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def row(size: int, size_vram: int, expires_at: str) -> list[str]:
        entry = {"name": "m", "model": "m", "digest": "1" * 64, "size": size, "size_vram": size_vram, "expires_at": expires_at}
        return re.split(r" {2,}", format_ps([entry], now=now).splitlines()[1].strip())

    assert row(10, 10, "2025-12-31T23:59:00Z")[3:6] == ["100% GPU", "0", "Stopping..."]
    assert row(10, 20, "2026-01-01T00:02:00Z")[3:6] == ["Unknown", "0", "2 minutes from now"]
    assert row(10, 0, "0001-01-01T00:00:00Z")[5] == "Stopping..."  # Go's zero time is long past


def test_ps_without_server_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    assert (run("ps").exit_code, run("ps").stderr) == (1, NOT_RUNNING)


def test_stop_unloads_with_keep_alive_zero(served: FakeOllama) -> None:
    result = run("stop", "gemma3:270m")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert served.received[-1] == ("POST", "/api/generate", {"model": "gemma3:270m", "keep_alive": "0s"})
    missing = run("stop", "nope")
    assert (missing.exit_code, missing.stderr) == (1, 'Error: couldn\'t find model "nope" to stop\n')
    assert run("stop").stderr == "Error: accepts 1 arg(s), received 0\n"


def test_rm_stops_each_model_before_deleting_it(served: FakeOllama) -> None:
    served.models["mine"] = GEMMA_SHOW
    result = run("rm", "mine", "gemma3:270m")
    assert (result.exit_code, result.stdout) == (0, "deleted 'mine'\ndeleted 'gemma3:270m'\n")
    assert [(method, path, body.get("model")) for method, path, body in served.received] == [
        ("POST", "/api/generate", "mine"),
        ("DELETE", "/api/delete", "mine"),
        ("POST", "/api/generate", "gemma3:270m"),
        ("DELETE", "/api/delete", "gemma3:270m"),
    ]


# --- pull, push: Ollama's progress display ----------------------------------------------------

LAYER = "sha256:" + "dde5aa3fc5ff" + "0" * 52
CONFIG = "sha256:" + "34bb5ab01051" + "1" * 52
PULL_EVENTS: list[dict[str, Any]] = [
    {"status": "pulling manifest"},
    {"status": "pulling dde5aa3fc5ff", "digest": LAYER, "total": 2_019_377_376, "completed": 0},
    {"status": "pulling dde5aa3fc5ff", "digest": LAYER, "total": 2_019_377_376, "completed": 1_000_000_000},
    {"status": "pulling dde5aa3fc5ff", "digest": LAYER, "total": 2_019_377_376, "completed": 2_019_377_376},
    {"status": "pulling 34bb5ab01051", "digest": CONFIG, "total": 561, "completed": 561},
    {"status": "verifying sha256 digest"},
    {"status": "writing manifest"},
    {"status": "success"},
]


def test_pull_prints_ollamas_progress_lines(served: FakeOllama) -> None:
    served.pull_events = PULL_EVENTS
    result = run("pull", "llama3.2", "--insecure")
    assert (result.exit_code, result.stdout) == (0, "")
    assert served.received[-1] == ("POST", "/api/pull", {"model": "llama3.2", "insecure": True})
    assert result.stderr.splitlines() == [
        "pulling manifest",
        "pulling dde5aa3fc5ff: 100% \u2595" + "\u2588" * 18 + "\u258f 2.0 GB",
        "pulling 34bb5ab01051: 100% \u2595" + "\u2588" * 18 + "\u258f  561 B",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]


def test_pull_error_is_one_line(served: FakeOllama) -> None:
    served.pull_events = [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    result = run("pull", "nope")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["pulling manifest", "Error: pull model manifest: file does not exist"]


def test_push_prints_progress_and_where_the_model_went(served: FakeOllama) -> None:
    served.push_events = [
        {"status": "retrieving manifest"},
        {"status": "pushing dde5aa3fc5ff", "digest": LAYER, "total": 1000, "completed": 0},
        {"status": "pushing dde5aa3fc5ff", "digest": LAYER, "total": 1000, "completed": 1000},
        {"status": "pushing manifest"},
        {"status": "success"},
    ]
    result = run("push", "localhost:5000/me/tiny", "--insecure")
    assert result.exit_code == 0, result.output
    assert result.stdout == "\nYou can find your model at:\n\n\tlocalhost:5000/me/tiny:latest\n"
    assert result.stderr.splitlines() == [
        "retrieving manifest",
        "pushing dde5aa3fc5ff 100% \u2595" + "\u2588" * 19 + "\u258f   1 KB",
        "pushing manifest",
        "success",
    ]
    served.push_events = [{"status": "retrieving manifest"}, {"error": "access denied"}]
    denied = run("push", "someone/else")
    assert denied.stderr.splitlines()[-1] == (
        "Error: you are not authorized to push to this namespace, create the model under a namespace you own"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_shows_speed_and_time_left_while_running() -> None:
    clock = Clock()
    view = ProgressView(io.StringIO(), clock=clock)
    view.handle(PULL_EVENTS[0], "pull")
    view.handle(PULL_EVENTS[1], "pull")  # the zero-progress announcement draws nothing
    assert view.render_lines() == ["pulling manifest \u280b "]
    for second, done in ((1.0, 100_000_000), (3.0, 300_000_000)):
        clock.now = second
        view.handle({**PULL_EVENTS[1], "completed": done}, "pull")
    spinner, bar = view.render_lines()
    assert spinner == "pulling manifest "  # stopped by the first bar
    assert bar == "pulling dde5aa3fc5ff:  15% \u2595\u2588\u2588" + " " * 16 + "\u258f 300 MB/2.0 GB  100 MB/s     17s"
    assert view.render_lines(120)[1].count("\u2588") == 8  # the bar takes the width the texts leave
    view.stop()


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59, "59s"), (61, "1m1s"), (3599, "59m59s"), (3660, "1h1m"), (360_000, "99h+")])
def test_transfer_eta(seconds: int, text: str) -> None:
    assert format_transfer_eta(seconds) == text


def test_create_quantizing_updates_one_line() -> None:
    out = io.StringIO()
    with ProgressView(out) as view:
        view.status("gathering model components")
        for status in ("parsing GGUF", "quantizing F16 model to Q4_K_M", "quantizing F16 model to Q4_K_M 50%", "success"):
            view.handle({"status": status}, "create")
    assert out.getvalue().splitlines() == [
        "gathering model components",
        "parsing GGUF",
        "quantizing F16 model to Q4_K_M 50%",
        "success",
    ]


# --- run: arguments, answers, timings, embeddings ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "requires at least 1 arg(s), only received 0"),
        (["run", "m", "--think=maybe"], 'invalid value for --think: "maybe" (must be true, false, high, medium, low, or max)'),
        (["run", "m", "--keepalive", "5"], 'time: missing unit in duration "5"'),
        (["pull"], "accepts 1 arg(s), received 0"),
        (["push", "a", "b"], "accepts 1 arg(s), received 2"),
    ],
)
def test_run_argument_errors(args: list[str], message: str) -> None:
    result = run(*args)
    assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n")


def test_bare_think_flag_leaves_the_prompt_alone(served: FakeOllama) -> None:
    # --think takes its value only with "=": the next word stays the prompt (cobra's NoOptDefVal).
    result = run("run", "nope", "--think", "why")
    assert result.exit_code == 1
    assert ("POST", "/api/show", {"model": "nope"}) in served.received


def test_run_pulls_a_missing_model_first(served: FakeOllama) -> None:
    served.pull_events = [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    result = run("run", "llama9", "hi", "--insecure")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["pulling manifest", "Error: pull model manifest: file does not exist"]
    assert [(path, body) for _, path, body in served.received] == [
        ("/api/show", {"model": "llama9"}),
        ("/api/pull", {"model": "llama9", "insecure": True}),
    ]


def _terminal(columns: int) -> tuple[int, io.TextIOWrapper]:
    """A pseudo-terminal ``columns`` wide: its master fd and the writable slave side."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return master, open(slave, "w", encoding="utf-8", closefd=True)


def _screen(master: int, columns: int) -> list[str]:
    screen = pyte.Screen(columns, 24)
    stream = pyte.Stream(screen)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the slave side is closed and everything has been read
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    stream.feed(data.decode("utf-8"))
    return [line.rstrip() for line in screen.display if line.strip()]


def test_word_wrap_moves_the_last_word_to_the_next_line() -> None:
    master, out = _terminal(30)
    with out:
        writer = ResponseWriter(out, word_wrap=True)
        for piece in ["the sky is blue and the ", "world is round and hello there ", "everyone"]:
            writer.write(piece)
    # lines grow to 25 columns (width - 5); the word that would cross it moves down
    assert _screen(master, 30) == ["the sky is blue and the", "world is round and hello", "there everyone"]


def test_word_wrap_off_and_off_a_terminal() -> None:
    master, out = _terminal(30)
    with out:
        ResponseWriter(out, word_wrap=False).write("the sky is blue and the world is round and hello")
    assert _screen(master, 30) == ["the sky is blue and the world", "is round and hello"]
    piped = io.StringIO()
    ResponseWriter(piped, word_wrap=True).write("the sky is blue and the world is round and hello")
    assert piped.getvalue() == "the sky is blue and the world is round and hello"


def test_timing_block_is_ollamas() -> None:
    assert format_metrics(
        {"done": True, "total_duration": 1_234_567_891, "load_duration": 12_345_678, "prompt_eval_count": 10,
         "prompt_eval_duration": 2_000_000, "eval_count": 100, "eval_duration": 987_654_321}
    ) == (
        "total duration:       1.234567891s\n"
        "load duration:        12.345678ms\n"
        "prompt eval count:    10 token(s)\n"
        "prompt eval duration: 2ms\n"
        "prompt eval rate:     5000.00 tokens/s\n"
        "eval count:           100 token(s)\n"
        "eval duration:        987.654321ms\n"
        "eval rate:            101.25 tokens/s\n"
    )
    assert format_metrics({"eval_count": 3}) == "eval count:           3 token(s)\n"


def test_embedding_prints_float32_json_as_go_does() -> None:
    assert format_embedding([0.1, 1e-7, -0.123456789, 1.5e22, 3.0, 0.00012345, 0.0]) == (
        "[0.1,1e-7,-0.12345679,1.5e+22,3,0.00012345,0]"
    )
    assert json.loads(format_embedding([0.25, -1.0])) == [0.25, -1.0]


def test_tool_calls_are_reported_as_missing_functions() -> None:
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "a": "<b>"}}}]
    assert render_tool_calls(calls, plain=True) == (
        "  Model called a non-existent function 'get_weather()' with arguments: {\"a\":\"\\u003cb\\u003e\",\"city\":\"Paris\"}"
    )


def test_tool_call_arguments_are_marshalled_as_go_does() -> None:
    calls = [{"function": {"name": "f", "arguments": {"x": 1e-7, "y": 1e20, "s": "a\u2028b"}}}]
    assert render_tool_calls(calls, plain=True).endswith('with arguments: {"s":"a\\u2028b","x":1e-7,"y":100000000000000000000}')


# --- argument errors, version, serve, import-default -----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create"], "accepts 1 arg(s), received 0"),
        (["show", "a", "b"], "accepts 1 arg(s), received 2"),
        (["cp", "a"], "accepts 2 arg(s), received 1"),
        (["rm"], "requires at least 1 arg(s), only received 0"),
        (["frobnicate"], 'unknown command "frobnicate" for "ollamapy"'),
        (["list", "--bogus"], "unknown flag: --bogus"),
        (["show", "-x", "m"], "unknown shorthand flag: 'x' in -x"),
        (["create", "m", "--file"], "flag needs an argument: --file"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    result = run(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {message}\n")


def test_version_without_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    result = run("--version")
    assert (result.exit_code, result.stdout) == (0, f"ollamapy version is {__version__}\nOllama API version is 0.33.0\n")


def test_version_warns_when_the_server_reports_another_api_version(
    served: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("-v").stdout.splitlines()[-1] == "Ollama API version is 0.33.0"
    monkeypatch.setenv("OLLAMAPY_API_VERSION", "0.12.0")
    lines = run("-v").stdout.splitlines()
    assert lines[1] == "Ollama API version is 0.12.0"
    assert lines[2].startswith("Warning: the server at http://127.0.0.1:") and lines[2].endswith(" reports Ollama API version 0.33.0")


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "ollamapy", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "Large language model runner" in result.stdout


def test_serve_and_start_run_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("ollamapy.supervisor.server.run_server", lambda: calls.append("run"))
    assert run("serve").exit_code == 0
    assert run("start").exit_code == 0
    assert calls == ["run", "run"]


def test_serve_help_lists_environment_variables() -> None:
    text = run("serve", "--help").stdout
    assert "\nEnvironment Variables:\n" in text
    assert "      OLLAMA_HOST                   IP Address for the ollama server" in text
    assert "      OLLAMA_KEEP_ALIVE             " in text
    assert "OLLAMA_LLM_LIBRARY" not in text  # parsed by envconfig but meaningless to ollamapy
    assert "      OLLAMA_HOST  " in run("list", "--help").stdout


def test_import_default_prints_the_status(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Path, str]] = []

    def fake_import(store_root: Path, model: str) -> str:
        seen.append((store_root, model))
        return f"imported {model} into {store_root}"

    monkeypatch.setattr("ollamapy.store.default_model.import_default_model", fake_import)
    result = run("import-default")
    assert (result.exit_code, result.stdout) == (0, f"imported smollm2:135m into {models_dir}\n")
    assert run("import-default", "gemma3:270m").exit_code == 0
    assert seen == [(models_dir, "smollm2:135m"), (models_dir, "gemma3:270m")]


# --- formatting ported from Ollama -----------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"), (1, "1 B"), (999, "999 B"),
        (1000, "1 KB"), (1500, "1.5 KB"), (999999, "999 KB"),
        (1000000, "1 MB"), (1500000, "1.5 MB"), (999999999, "999 MB"),
        (1000000000, "1 GB"), (1500000000, "1.5 GB"), (999999999999, "999 GB"),
        (1000000000000, "1 TB"), (1500000000000, "1.5 TB"), (1999999999999, "2.0 TB"),
        (1234, "1.2 KB"), (1234567, "1.2 MB"), (1234567890, "1.2 GB"),
        (10500, "10 KB"), (4_661_224_676, "4.7 GB"), (291_554_930, "291 MB"),
    ],
)
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0"), (999, "999"), (1000, "1K"), (131072, "131K"),
        (1000000, "1M"), (125000000, "125M"), (500500000, "500.50M"), (268098176, "268.10M"),
        (1000000000, "1B"), (2800000000, "2.8B"), (8030261248, "8.0B"), (1000000000000, "1000B"),
    ],
)
def test_human_number(count: int, text: str) -> None:
    assert human_number(count) == text


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(hours=48), "2 days from now"),
        (timedelta(hours=-48), "2 days ago"),
        (timedelta(milliseconds=800), "Less than a second from now"),
        (timedelta(days=365 * 200), "Forever"),
        (timedelta(seconds=-1), "1 second ago"),
        (timedelta(seconds=-59), "59 seconds ago"),
        (timedelta(seconds=-119), "About a minute ago"),
        (timedelta(minutes=-59), "59 minutes ago"),
        (timedelta(minutes=-89), "About an hour ago"),
        (timedelta(minutes=-90), "2 hours ago"),
        (timedelta(hours=-47), "47 hours ago"),
        (timedelta(days=-13), "13 days ago"),
        (timedelta(days=-14), "2 weeks ago"),
        (timedelta(days=-59), "8 weeks ago"),
        (timedelta(days=-60), "2 months ago"),
        (timedelta(days=-729), "24 months ago"),
        (timedelta(days=-731), "2 years ago"),
        (timedelta(minutes=4, seconds=30), "4 minutes from now"),
    ],
)
def test_human_time(offset: timedelta, text: str) -> None:
    assert human_time(NOW + offset, "Never", NOW) == text


def test_human_time_zero_value() -> None:
    assert human_time(None, "Never", NOW) == "Never"
    assert human_duration(timedelta(0)) == "Less than a second"


@pytest.mark.parametrize(
    ("value", "g", "f"),
    [
        (268098176, "2.68098176e+08", "268098176"),
        (32768, "32768", "32768"),
        (1000000, "1e+06", "1000000"),
        (123456, "123456", "123456"),
        (0.95, "0.95", "0.95"),
        (1e-05, "1e-05", "0.00001"),
        (0.0001, "0.0001", "0.0001"),
        (-2.5, "-2.5", "-2.5"),
        (0, "0", "0"),
    ],
)
def test_go_float_formatting(value: float, g: str, f: str) -> None:
    assert (format_float(value), format_float(value, "f")) == (g, f)


def test_table_wraps_long_cells_with_least_raggedness() -> None:
    # Greedy wrapping would give "aaa bb" / "cc" / "ddddd"; tablewriter balances the lines,
    # and fills the other cells of the extra lines with two spaces.
    assert render_table([["x", "aaa bb cc ddddd"]], col_width=6) == (
        "x    aaa       \n"
        "      bb cc     \n"
        "      ddddd     \n"
    )
    assert render_table([["a", "b"], ["ccc"]], ["H1", "H2"]) == "H1     H2 \na      b     \nccc    \n"
