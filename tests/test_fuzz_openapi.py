"""Schema-driven fuzzing: schemathesis drives every operation of Ollama's published OpenAPI
description (``tests/openapi/ollama-openapi.yaml``) against a live ``ollamapy serve``, and
no answer may be a server error.

The server runs in its own process over a temporary store and home, holding the models the
description's examples name, made from the tiny test GGUF with ``num_predict 8`` so fuzzed
generations end quickly. Registry traffic (pull, push, create ``from`` a missing model) goes
through a proxy address where nothing listens, so it fails at once instead of reaching out
or hanging. The run is bounded by a number of examples per operation and a time budget; its
seed is fixed and printed, so a failure replays with the same seed:

    OLLAMAPY_FUZZ_SEED=<seed> .venv/bin/python -m pytest tests/test_fuzz_openapi.py -q -s

``OLLAMAPY_FUZZ_EXAMPLES`` and ``OLLAMAPY_FUZZ_MAX_TIME`` (seconds) lengthen a run.

Checks: ``not_a_server_error`` (the bar), ``response_schema_conformance`` and
``content_type_conformance`` (the description documents only the 200 answers, with loose
schemas, so these hold Ollama's answers too; NDJSON streams are not schema-checked, as
schemathesis reads a body as one document). The two 500s Ollama answers itself (a registry
it cannot reach, a push of a missing model) are dropped by ``tests/openapi/fuzz_hooks.py``,
which also steers bodies to the server's models; it says how. Off: ``status_code_conformance`` (every 400
and 404 is undocumented), ``negative_data_rejection`` and ``positive_data_acceptance``
(Ollama itself accepts bodies the description calls invalid, e.g. a chat without messages
loads the model, and refuses valid ones naming a missing model), and the stateful checks
(the description has no links).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ollamapy.testing.api import create_model, free_port, wait_until_serving

pytestmark = [pytest.mark.fuzz, pytest.mark.serving]

HERE = Path(__file__).parent / "openapi"
SPEC = HERE / "ollama-openapi.yaml"
SEED = int(os.environ.get("OLLAMAPY_FUZZ_SEED", "11434"))
EXAMPLES = int(os.environ.get("OLLAMAPY_FUZZ_EXAMPLES", "12"))
MAX_TIME = int(os.environ.get("OLLAMAPY_FUZZ_MAX_TIME", "30"))
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
# The models the description's examples name, generation capped so fuzzed requests end; the
# hooks also put them into fuzzed bodies, and create one again when a delete removes it.
CAPPED = {"num_predict": 8}


@pytest.fixture
async def server(tmp_path: Path, tiny_gguf: Path, tiny_embed_gguf: Path) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """``ollamapy serve`` on a free port with the examples' models: its base URL, the
    unreachable proxy its registry traffic goes to, and how each model was made."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    nowhere = f"127.0.0.1:{free_port()}"  # a proxy nothing listens on: registry calls fail at once
    home = tmp_path / "home"
    home.mkdir()
    models = {
        "gemma4": {"gguf": str(tiny_gguf), "parameters": CAPPED},
        "embeddinggemma": {"gguf": str(tiny_embed_gguf), "parameters": {}},
        "my-username/my-model": {"gguf": str(tiny_gguf), "parameters": CAPPED},
    }
    env = {
        **os.environ,
        "HOME": str(home),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(tmp_path / "models"),
        "OLLAMA_CONTEXT_LENGTH": "2048",
        "HTTP_PROXY": f"http://{nowhere}",
        "HTTPS_PROXY": f"http://{nowhere}",
        "NO_PROXY": "",
    }
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ollamapy", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_until_serving(base, proc)
        async with aiohttp.ClientSession() as session:
            for name, recipe in models.items():
                await create_model(session, name, Path(recipe["gguf"]), base=base, parameters=recipe["parameters"])
        yield base, nowhere, models
    finally:
        proc.kill()
        proc.wait()
        log.close()


def _failures(report: Path) -> tuple[int, list[str]]:
    """The operations schemathesis's JUnit report lists, and a line per failure or error."""
    cases = list(ET.parse(report).getroot().iter("testcase"))
    failures = [
        f"{case.get('name')}: {(bad.get('message') or bad.text or '').strip()[:2000]}" for case in cases for bad in [*case.iter("failure"), *case.iter("error")]
    ]
    return len(cases), failures


async def test_fuzzed_requests_get_no_server_error(server: tuple[str, str, dict[str, Any]], tmp_path: Path) -> None:
    base, unreachable, models = server
    report = tmp_path / "junit.xml"
    cmd = [
        str(Path(sys.executable).parent / "st"), "run", str(SPEC),
        "--url", base,
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(EXAMPLES),
        "--max-time", str(MAX_TIME),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", "20",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--report", "junit", "--report-junit-path", str(report),
        "--no-color",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "OLLAMAPY_FUZZ_MODELS": json.dumps(models),
        "OLLAMAPY_FUZZ_UNREACHABLE": unreachable,
    }
    print(f"fuzz seed {SEED} (replay: OLLAMAPY_FUZZ_SEED={SEED}), {EXAMPLES} examples per operation, {MAX_TIME} s budget")
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), MAX_TIME + 60)
    text = out.decode(errors="replace")
    print(text)
    operations, failures = _failures(report)
    generated = re.search(r"^\s*(\d+) generated", text, re.MULTILINE)
    print(f"seed {SEED}: {operations} operations, {generated[1] if generated else '?'} test cases, {len(failures)} failing")
    assert operations == SPEC.read_text().count("operationId:"), "not every operation was fuzzed"
    assert proc.returncode == 0 and not failures, f"seed {SEED}:\n" + "\n".join(failures) + "\n" + text[-6000:]
