"""The runner's sampling: the grammar switch (``format`` constrains only what follows the
thinking section, the request's ``format_after``, as Ollama applies it after thinking) and
the repetition penalties, which must give llama.cpp's own numbers."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from ollamapy.api.runner_protocol import CompletionRequest
from ollamapy.runner.sampling import GrammarGate, RepeatPenalty, grammar_text


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


# -- repetition penalties: the same numbers as llama.cpp's penalty sampler ----------------


def _llama_penalized(logits: np.ndarray, last_n: int, repeat: float, frequency: float, presence: float, history: list[int]) -> np.ndarray:
    """``logits`` after llama.cpp's own penalty sampler has seen ``history``."""
    from llama_cpp import llama_cpp as llama_lib

    n = len(logits)
    sampler = llama_lib.llama_sampler_init_penalties(n, last_n, repeat, frequency, presence)
    try:
        for token in history:
            llama_lib.llama_sampler_accept(sampler, token)
        data = (llama_lib.llama_token_data * n)(*[llama_lib.llama_token_data(i, float(v), 0.0) for i, v in enumerate(logits)])
        array = llama_lib.llama_token_data_array(data, n, -1, False)
        llama_lib.llama_sampler_apply(sampler, ctypes.byref(array))
        return np.array([data[i].logit for i in range(n)], dtype=np.float32)
    finally:
        llama_lib.llama_sampler_free(sampler)


@pytest.mark.parametrize(
    ("last_n", "repeat", "frequency", "presence"),
    [(64, 1.1, 0.0, 0.0), (8, 1.3, 0.0, 0.0), (16, 1.0, 0.5, 0.25), (5, 0.9, 0.1, 0.7), (200, 1.1, 0.2, 0.0)],
)
def test_repeat_penalty_matches_llama_cpp(last_n: int, repeat: float, frequency: float, presence: float) -> None:
    rng = np.random.default_rng(last_n)
    logits = (rng.standard_normal(300) * 5).astype(np.float32)
    logits[:10] = 0.0  # the sign rule: zero is multiplied, like the negatives
    prompt = [int(t) for t in rng.integers(0, 40, 50)]
    generated = [int(t) for t in rng.integers(0, 40, 30)]
    penalty = RepeatPenalty(last_n, repeat, frequency, presence, prompt)
    for token in generated:
        penalty.accept(token)
    ours = logits.copy()
    ids, before = penalty.apply(ours)
    expected = _llama_penalized(logits, last_n, repeat, frequency, presence, prompt[-last_n:] + generated)
    assert ours.tobytes() == expected.tobytes()  # bit for bit
    ours[ids] = before
    assert ours.tobytes() == logits.tobytes()  # and undone exactly
