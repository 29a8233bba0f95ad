"""End to end on the embedded default, SmolLM2-135M-Instruct: it chats, answers and stops.

One ``python -m ollamapy serve`` runs for the module on its own port, store and home, with
``smollm2:135m`` imported by ``ollamapy import-default`` as ``scripts/serve.sh`` does. The
same GGUF imported with a bare ``FROM`` gets Ollama's ChatML template by detection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamapy.store.default_model import _smollm2_gguf
from ollamapy.store.template_detect import named_templates
from tests.test_cli_run_functional import WAIT, _free_port, _stop_server, _wait_until_up

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France? Answer in one word."


class Served:
    """The running server and the environment CLI commands run with."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/api/chat", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ollamapy", *args], input="", capture_output=True, text=True, env=self.env, cwd=cwd, timeout=WAIT, check=False
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("smollm2")
    (root / "home").mkdir()
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "OLLAMAPY_"))}
    env.update(OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(root / "models"), HOME=str(root / "home"))
    imported = subprocess.run([sys.executable, "-m", "ollamapy", "import-default"], env=env, capture_output=True, text=True, check=False)
    assert (imported.returncode, imported.stdout) == (0, f"imported smollm2:135m into {root / 'models'}\n"), imported.stderr
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "ollamapy", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", server)
        yield Served(f"http://127.0.0.1:{port}", env)
    finally:
        _stop_server(server)


def test_chat_answers_paris_and_stops(served: Served) -> None:
    body = {"model": "smollm2:135m", "messages": [{"role": "user", "content": QUESTION}], "stream": False, "options": {"temperature": 0}}
    answer = served.chat(body)
    assert "Paris" in answer["message"]["content"]
    assert (answer["done"], answer["done_reason"]) == (True, "stop")
    assert answer["eval_count"] < 32
    debug = served.chat({**body, "_debug_render_only": True})
    assert debug["_debug_info"]["rendered_template"] == f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"


def test_cli_run_answers_paris(served: Served) -> None:
    result = served.cli("run", "smollm2:135m", QUESTION)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert len(result.stdout.split()) < 24


def test_the_default_carries_the_library_template_and_stop_words(served: Served) -> None:
    show = served.cli("show", "smollm2:135m", "--parameters")
    assert show.stdout.split() == ["stop", '"<|im_start|>"', "stop", '"<|im_end|>"', "temperature", "0.2", "top_p", "0.9"]
    assert "tools" in served.cli("show", "smollm2:135m").stdout


def test_a_bare_gguf_import_gets_ollamas_chatml_template(served: Served, tmp_path: Path) -> None:
    (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").symlink_to(_smollm2_gguf())
    (tmp_path / "Modelfile").write_text("FROM ./SmolLM2-135M-Instruct.Q4_1.gguf\n")
    created = served.cli("create", "smol-bare", "-f", "Modelfile", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    chatml = next(named.template for _, named in named_templates() if named.name == "chatml")
    assert served.cli("show", "smol-bare", "--template").stdout == chatml
    assert served.cli("show", "smol-bare", "--parameters").stdout.split() == ["stop", '"<|im_start|>"', "stop", '"<|im_end|>"']
    # Ollama's ChatML template has no .Tools, so the model can complete but not call tools.
    capabilities = served.cli("show", "smol-bare").stdout.split("Capabilities", 1)[1].split("Parameters", 1)[0].split()
    assert capabilities == ["completion"]
