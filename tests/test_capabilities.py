"""Model capabilities from config, GGUF and template."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ollamapy.store.capabilities import (
    chat_template_capabilities,
    model_capabilities,
    parser_capabilities,
    template_capabilities,
)
from ollamapy.store.default_model import GEMMA3_TEMPLATE
from ollamapy.store.gguf import read_gguf
from ollamapy.supervisor.app import create_app
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf
from tests.test_thinking import QWEN3_TEMPLATE

TOOLS_TEMPLATE = (
    "{{ if .Tools }}{{ .Tools }}{{ end }}{{ range .Messages }}{{ .Content }}{{ end }}"
)
FIM_TEMPLATE = "{{ if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{ else }}{{ .Prompt }}{{ end }}"


@pytest.mark.parametrize(
    ("template", "caps"),
    [
        (None, []),
        ("", []),
        ("{{ .Prompt }}", []),
        (GEMMA3_TEMPLATE, []),
        (TOOLS_TEMPLATE, ["tools"]),
        ("{{ .tools }}", ["tools"]),
        (FIM_TEMPLATE, ["insert"]),
        (QWEN3_TEMPLATE, ["tools", "thinking"]),
        ("{{ if .Messages }}", []),
    ],
)
def test_template_capabilities(template: str | None, caps: list[str]) -> None:
    assert template_capabilities(template) == caps


@pytest.mark.parametrize(
    ("chat_template", "caps"),
    [
        (None, []),
        ("{% for m in messages %}{{ m.content }}{% endfor %}", []),
        ("{% if tools %}{{ tools | tojson }}{% endif %}", ["tools"]),
        ("<tool_call>{{ x }}</tool_call>", ["tools"]),
        (
            "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}",
            ["thinking"],
        ),
        ("{% if tools %}{% endif %}<think></think>", ["tools", "thinking"]),
    ],
)
def test_chat_template_capabilities(chat_template: str | None, caps: list[str]) -> None:
    assert chat_template_capabilities(chat_template) == caps


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("caps")


def _model(path: Path | None, template: str | None = None, **config: Any) -> Any:
    """The fields model_capabilities reads, as a stored Model carries them."""
    return SimpleNamespace(
        gguf=read_gguf(path) if path else None,
        template=template,
        config=config,
        projector_paths=[],
    )


def test_completion_model_with_go_template(tiny_gguf: Path) -> None:
    assert model_capabilities(_model(tiny_gguf)) == ["completion"]
    assert model_capabilities(_model(tiny_gguf, QWEN3_TEMPLATE)) == [
        "completion",
        "tools",
        "thinking",
    ]
    assert model_capabilities(_model(tiny_gguf, FIM_TEMPLATE)) == [
        "completion",
        "insert",
    ]


def test_embedding_model(tiny_embed_gguf: Path) -> None:
    assert model_capabilities(_model(tiny_embed_gguf)) == ["embedding"]


def test_gguf_chat_template_counts_only_without_a_template_layer(
    gguf_dir: Path,
) -> None:
    path = write_tiny_gguf(
        gguf_dir / "chat.gguf",
        TinyModelSpec(
            chat_template="{% if tools %}{{ tools }}{% endif %}<think>{{ m }}</think>"
        ),
    )
    assert model_capabilities(_model(path)) == ["tools", "thinking", "completion"]
    assert model_capabilities(_model(path, "{{ .Prompt }}")) == ["completion"]


def test_config_capabilities_come_first_and_projector_adds_vision(
    tiny_gguf: Path,
) -> None:
    model = _model(tiny_gguf, TOOLS_TEMPLATE, capabilities=["completion", "audio"])
    model.projector_paths = [Path("projector")]
    assert model_capabilities(model) == ["completion", "audio", "vision", "tools"]


def test_gpt_oss_family_thinks(tiny_gguf: Path) -> None:
    assert model_capabilities(_model(tiny_gguf, model_family="gptoss")) == [
        "completion",
        "thinking",
    ]


def test_model_without_weights_uses_config_and_template() -> None:
    assert model_capabilities(
        _model(None, TOOLS_TEMPLATE, capabilities=["completion"])
    ) == ["completion", "tools"]


# --- built-in parsers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "caps"),
    [
        (None, []),
        ("", []),
        ("no-such-parser", []),
        ("harmony", ["tools", "thinking"]),
        ("qwen3-coder", ["tools"]),
        ("qwen3", ["tools"]),
        ("qwen3-thinking", ["tools", "thinking"]),
        ("qwen3.5", ["tools", "thinking"]),
        ("qwen3-vl-instruct", ["tools"]),
        ("qwen3-vl-thinking", ["tools", "thinking"]),
        ("deepseek3", ["tools", "thinking"]),
    ],
)
def test_parser_capabilities(parser: str | None, caps: list[str]) -> None:
    assert parser_capabilities(parser) == caps


@pytest.mark.parametrize(
    ("parser", "template", "caps"),
    [
        ("harmony", "{{ .Prompt }}", ["completion", "tools", "thinking"]),
        ("harmony", None, ["completion", "tools", "thinking"]),
        ("qwen3-coder", "{{ .Prompt }}", ["completion", "tools"]),
        ("qwen3-coder", FIM_TEMPLATE, ["completion", "tools", "insert"]),
        ("deepseek3", TOOLS_TEMPLATE, ["completion", "tools", "thinking"]),
        ("qwen3-thinking", QWEN3_TEMPLATE, ["completion", "tools", "thinking"]),
        ("unknown", "{{ .Prompt }}", ["completion"]),
    ],
)
def test_a_parser_adds_what_it_parses_whatever_the_template(
    tiny_gguf: Path, parser: str, template: str | None, caps: list[str]
) -> None:
    assert model_capabilities(_model(tiny_gguf, template, parser=parser)) == caps


@pytest.fixture
async def client(aiohttp_client: Any, models_dir: Path) -> TestClient:
    return await aiohttp_client(create_app(models_dir))


async def test_show_lists_parser_capabilities(client: TestClient, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await client.post(f"/api/blobs/{digest}", data=data)).status in (200, 201)
    for name, parser in (("oss", "harmony"), ("coder", "qwen3-coder"), ("plain", "")):
        body = {"model": name, "files": {"tiny.gguf": digest}, "template": "{{ .Prompt }}", "parser": parser, "stream": False}
        assert (await client.post("/api/create", json=body)).status == 200
    shown = {}
    for name in ("oss", "coder", "plain"):
        response = await client.post("/api/show", json={"model": name})
        shown[name] = (await response.json())["capabilities"]
    assert shown == {
        "oss": ["completion", "tools", "thinking"],
        "coder": ["completion", "tools"],
        "plain": ["completion"],
    }
