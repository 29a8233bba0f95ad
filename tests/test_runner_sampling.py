"""The runner's grammar switch: ``format`` constrains only what follows the thinking
section (the request's ``format_after``), as Ollama applies it after thinking."""

from __future__ import annotations

import pytest

from ollamapy.api.runner_protocol import CompletionRequest
from ollamapy.runner.sampling import GrammarGate, grammar_text


def _feed(gate: GrammarGate, pieces: list[bytes]) -> list[bool]:
    return [gate.push(p) for p in pieces]


def test_gate_opens_on_the_token_that_completes_the_end_tag() -> None:
    gate = GrammarGate(["</think>"])
    assert _feed(gate, [b"Let me ", b"think", b"</", b"thi", b"nk>"]) == [False, False, False, False, True]


def test_gate_with_a_special_token_and_several_markers() -> None:
    gate = GrammarGate(["<|channel|>final<|message|>", "<|channel|>commentary<|message|>"])
    pieces = [b"<|channel|>", b"analysis", b"<|message|>", b"hm", b"<|end|>", b"<|start|>", b"assistant", b"<|channel|>", b"final", b"<|message|>"]
    assert _feed(gate, pieces) == [False] * 9 + [True]


def test_gate_ignores_text_that_only_looks_close() -> None:
    gate = GrammarGate(["</think>"])
    assert not any(_feed(gate, [b"<think>", b"</thin", b"k and more", b"</th", b"ink"]))


@pytest.mark.parametrize("fmt", ["json", {"type": "object", "properties": {"a": {"type": "integer"}}}])
def test_request_carries_format_and_its_start_marker(fmt: object) -> None:
    request = CompletionRequest.model_validate({"prompt": "p", "format": fmt, "format_after": ["</think>"]})
    assert request.format_after == ["</think>"]
    assert grammar_text(request)  # the grammar the gate switches on
