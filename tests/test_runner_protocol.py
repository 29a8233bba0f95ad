"""The runner wire types reject what the runner could not honour; the front stays free of llama.cpp."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest, LoadSpec


def test_completion_request_needs_exactly_one_prompt_form() -> None:
    assert CompletionRequest(prompt="hi").tokens is None
    assert CompletionRequest(tokens=[1, 2]).prompt is None
    with pytest.raises(ValidationError, match="exactly one of prompt or tokens"):
        CompletionRequest()
    with pytest.raises(ValidationError, match="exactly one of prompt or tokens"):
        CompletionRequest(prompt="hi", tokens=[1])


def test_completion_request_defaults_are_ollamas() -> None:
    request = CompletionRequest(prompt="hi")
    assert (request.seed, request.num_predict, request.num_keep, request.top_k, request.top_p) == (-1, -1, 4, 40, 0.9)
    assert (request.temperature, request.repeat_penalty, request.repeat_last_n, request.shift) == (0.8, 1.0, 64, True)


@pytest.mark.parametrize("bad", [{"top_logprobs": 21}, {"top_logprobs": -1}, {"mirostat": 3}, {"format": "yaml"}, {"tfs_z": 1.0}])
def test_completion_request_rejects_bad_or_unknown_options(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CompletionRequest(prompt="hi", **bad)  # type: ignore[arg-type]


def test_grammar_and_format_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="mutually exclusive"):
        CompletionRequest(prompt="hi", grammar="root ::= \"a\"", format="json")


def test_load_spec_round_trips_as_json() -> None:
    spec = LoadSpec(model_path="/m.gguf", adapters=["/a.gguf"], num_ctx=8192, kv_cache_type="q8_0", flash_attn=True, tensor_split=[0.5, 0.5])
    assert LoadSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError):
        LoadSpec(model_path="/m.gguf", kv_cache_type="q5_1")  # type: ignore[arg-type]


def test_chunk_defaults_describe_an_intermediate_chunk() -> None:
    chunk = CompletionChunk.model_validate_json('{"content": "hi", "eval_count": 1, "eval_duration": 5}')
    assert not chunk.done and chunk.done_reason is None and chunk.context is None


def test_the_front_side_never_imports_llama_cpp() -> None:
    code = "import sys, ollamapy.supervisor.runner_process; sys.exit('llama_cpp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
