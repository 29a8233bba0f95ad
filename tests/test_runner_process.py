"""Runner child processes driven through RunnerProcess: real processes, real llama.cpp.

Most tests share one runner on the tiny GGUF (module scope); tests that kill or reconfigure
a runner start their own. Long generations use a grammar with no end (``FOREVER_GRAMMAR``) so the
random tiny model can neither emit EOS nor trip the repeated-token rule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest, HealthResponse, LoadSpec
from ollamapy.errors import InvalidRequest, OllamapyError, RunnerCrashed
from ollamapy.supervisor.runner_process import CRASH_MESSAGE, RunnerProcess
from ollamapy.testing.api import FOREVER_GRAMMAR, until_health, until_idle
from ollamapy.testing.tiny_gguf import write_tiny_lora

pytestmark = [pytest.mark.serving, pytest.mark.asyncio(loop_scope="module")]


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}


async def start(spec: LoadSpec, name: str = "tiny") -> RunnerProcess:
    runner = await RunnerProcess.start(spec, model_name=name)
    try:
        await runner.wait_until_ready(stall_timeout=60)
    except BaseException:
        await runner.close()
        raise
    return runner


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runner(tiny_gguf: Path) -> AsyncIterator[RunnerProcess]:
    runner = await start(LoadSpec(model_path=str(tiny_gguf), num_ctx=4096))
    yield runner
    await runner.close()


async def complete(runner: RunnerProcess, **options: object) -> tuple[str, list[CompletionChunk]]:
    request = CompletionRequest(**{"prompt": "the sky is", "temperature": 0.0, **options})  # type: ignore[arg-type]
    chunks = [chunk async for chunk in runner.completion(request)]
    return "".join(c.content for c in chunks), chunks


async def until_prompt_evaluation_underway(runner: RunnerProcess, prompt_tokens: int, reader: asyncio.Task[object]) -> None:
    """Wait until the runner has evaluated some but not all of a ``prompt_tokens`` prompt
    (it goes ``num_batch`` tokens per step, so this holds from its first chunk to its
    last); fail if ``reader`` got an answer first: the prompt was done before we looked."""

    def underway(health: HealthResponse) -> bool:
        assert not reader.done(), "the prompt evaluation ended before it was seen"
        return 0 < health.prompt_tokens_pending < prompt_tokens

    await until_health(runner, underway)


def assert_gone(pid: int) -> None:
    """The process no longer exists (a zombie would still exist)."""
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return
    raise AssertionError(f"process {pid} still exists with status {status}")


async def wait_gone(pid: int) -> None:
    """Wait until ``pid`` (not our child) has exited; a zombie of another parent counts as exited."""
    while True:
        try:
            if psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return
        except psutil.NoSuchProcess:
            return
        await asyncio.sleep(0.05)


# -- lifecycle --------------------------------------------------------------------------


async def test_start_ready_close_leaves_no_process_and_no_socket(tiny_gguf: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollamapy.runner")
    runner = await start(LoadSpec(model_path=str(tiny_gguf), num_ctx=512), "tiny:latest")
    pid, socket_dir = runner.pid, runner.socket_path.parent
    assert (await runner.health()).status == "ok"
    assert any(r.getMessage().startswith("[tiny:latest] ") and "KV buffer size" in r.getMessage() for r in caplog.records)
    assert psutil.Process(pid).cmdline()[1:3] == ["-m", "ollamapy.runner"]
    assert runner.buffer_sizes["CPU KV"] > 0
    assert runner.memory_size()[0] >= runner.buffer_sizes["CPU KV"]
    assert runner.memory_size()[1] == 0  # nothing on a GPU
    await runner.close()
    assert runner.has_exited()
    assert runner.exit_code is not None
    assert_gone(pid)
    assert not socket_dir.exists()


async def test_load_failure_reports_the_runner_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    runner = await RunnerProcess.start(LoadSpec(model_path=str(bogus)), model_name="bogus")
    try:
        with pytest.raises(RunnerCrashed, match="llama runner process has terminated: exit status 1") as err:
            await runner.wait_until_ready(stall_timeout=60)
        assert runner.last_error_line() is not None
        assert str(err.value).endswith(runner.last_error_line() or "")
        assert "bogus.gguf" in runner.stderr_tail
    finally:
        await runner.close()
    assert_gone(runner.pid)


async def test_a_stalled_load_times_out_with_its_progress(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled.gguf"
    os.mkfifo(fifo)  # opening it blocks forever: a load that makes no progress
    runner = await RunnerProcess.start(LoadSpec(model_path=str(fifo)), model_name="stalled")
    try:
        with pytest.raises(OllamapyError, match=r"^timed out waiting for llama runner to start - progress 0\.00 -"):
            await runner.wait_until_ready(stall_timeout=1.5)
        assert not runner.has_exited()
    finally:
        await runner.close()
    assert_gone(runner.pid)


async def test_runner_exits_when_its_stdin_lifeline_closes(tiny_gguf: Path, tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollamapy.runner", "--socket", str(tmp_path / "r.sock"),
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdin is not None
    child.stdin.write(LoadSpec(model_path=str(tiny_gguf), num_ctx=256).model_dump_json().encode() + b"\n")
    while not (tmp_path / "r.sock").exists():
        await asyncio.sleep(0.05)
    child.stdin.close()
    assert await asyncio.wait_for(child.wait(), 60) == 0


async def test_runner_dies_when_the_front_process_is_sigkilled(tiny_gguf: Path) -> None:
    parent_code = (
        "import asyncio, sys\n"
        "from ollamapy.api.runner_protocol import LoadSpec\n"
        "from ollamapy.supervisor.runner_process import RunnerProcess\n"
        "async def main():\n"
        "    runner = await RunnerProcess.start(LoadSpec(model_path=sys.argv[1], num_ctx=256), model_name='t')\n"
        "    await runner.wait_until_ready(60)\n"
        "    print(runner.pid, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", parent_code, str(tiny_gguf), stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        runner_pid = int(await parent.stdout.readline())
        assert psutil.Process(runner_pid).ppid() == parent.pid
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
        await asyncio.wait_for(wait_gone(runner_pid), 60)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


# -- completion -------------------------------------------------------------------------


async def test_completion_streams_chunks_then_a_final_chunk(runner: RunnerProcess) -> None:
    text, chunks = await complete(runner, num_predict=16, grammar=FOREVER_GRAMMAR)
    assert len(chunks) > 2
    assert all(not c.done for c in chunks[:-1])
    final = chunks[-1]
    assert final.done and final.done_reason == "length"
    assert final.eval_count == 16
    assert final.prompt_eval_count > 0
    assert final.eval_duration > 0 and final.prompt_eval_duration >= 0
    assert [c.eval_count for c in chunks] == sorted(c.eval_count for c in chunks)  # running totals
    assert final.context is not None
    assert final.context[: final.prompt_eval_count] == await runner.tokenize("the sky is", add_special=True)
    assert len(final.context) == final.prompt_eval_count + 16
    assert await runner.detokenize(final.context[final.prompt_eval_count :]) == text


async def test_greedy_is_deterministic_and_reuses_the_prompt_cache(runner: RunnerProcess) -> None:
    first, _ = await complete(runner, num_predict=24, seed=1)
    second, chunks2 = await complete(runner, num_predict=24, seed=2)
    assert first == second
    assert chunks2[-1].prompt_cached_count == chunks2[-1].prompt_eval_count - 1
    _, chunks3 = await complete(runner, prompt="the sky is blue and", num_predict=8)
    assert 0 < chunks3[-1].prompt_cached_count < chunks3[-1].prompt_eval_count


async def test_sampling_with_a_seed_is_deterministic(runner: RunnerProcess) -> None:
    options = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "num_predict": 32, "grammar": FOREVER_GRAMMAR}
    a, _ = await complete(runner, seed=42, **options)
    b, _ = await complete(runner, seed=42, **options)
    others = {(await complete(runner, seed=seed, **options))[0] for seed in (1, 2, 3)}
    assert a == b
    assert others - {a}


async def test_num_predict_ends_with_length(runner: RunnerProcess) -> None:
    _, chunks = await complete(runner, num_predict=5, grammar=FOREVER_GRAMMAR)
    assert (chunks[-1].done_reason, chunks[-1].eval_count) == ("length", 5)


async def test_a_token_repeated_more_than_30_times_ends_generation(runner: RunnerProcess) -> None:
    text, chunks = await complete(runner, num_predict=100, grammar='root ::= "a" root')
    assert text == "a" * 31
    assert (chunks[-1].done_reason, chunks[-1].eval_count) == ("stop", 32)


async def test_stop_string_split_across_tokens_is_cut_and_never_streamed(runner: RunnerProcess) -> None:
    _, chunks = await complete(runner, num_predict=40, grammar=FOREVER_GRAMMAR, logprobs=True)
    tokens = [lp.token for c in chunks for lp in c.logprobs or []]
    # a stop string made of the ends of two tokens and a whole third one
    i = next(i for i in range(5, len(tokens) - 2) if tokens[i] and tokens[i + 1] and tokens[i + 2])
    stop = tokens[i][-1] + tokens[i + 1] + tokens[i + 2]
    full = "".join(tokens)
    expected = full[: full.index(stop)]

    text, chunks = await complete(runner, num_predict=40, grammar=FOREVER_GRAMMAR, stop=[stop])
    assert text == expected
    assert chunks[-1].done_reason == "stop"
    streamed = ""
    for chunk in chunks:
        streamed += chunk.content
        assert stop not in streamed
    # `context` holds the response's tokens up to the one reaching into the stop string
    assert chunks[-1].context is not None
    in_context = await runner.detokenize(chunks[-1].context[chunks[-1].prompt_eval_count :])
    assert expected.startswith(in_context) and len(in_context) >= len(expected) - len(tokens[i])


async def test_format_json_streams_only_valid_json_prefixes(runner: RunnerProcess) -> None:
    text = ""
    async for chunk in runner.completion(CompletionRequest(prompt="the sky is", temperature=1.0, seed=3, num_predict=200, format="json")):
        text += chunk.content
        assert is_json_prefix(text), text
        if chunk.done and chunk.done_reason == "stop":
            assert isinstance(json.loads(text), dict)


async def test_bounded_json_schema_yields_a_complete_object(runner: RunnerProcess) -> None:
    text, chunks = await complete(runner, num_predict=64, format=SCHEMA)
    assert chunks[-1].done_reason == "stop"
    value = json.loads(text)
    assert set(value) == {"ok"} and isinstance(value["ok"], bool)


async def test_logprobs_report_the_chosen_token_and_the_top_alternatives(runner: RunnerProcess) -> None:
    _, chunks = await complete(runner, num_predict=6, grammar=FOREVER_GRAMMAR, logprobs=True, top_logprobs=3)
    logprobs = [lp for c in chunks for lp in c.logprobs or []]
    assert len(logprobs) == 6
    for lp in logprobs:
        assert lp.logprob <= 0.0
        assert lp.bytes == list(lp.token.encode())
        assert len(lp.top_logprobs) == 3
        assert [t.logprob for t in lp.top_logprobs] == sorted((t.logprob for t in lp.top_logprobs), reverse=True)


async def test_invalid_requests_raise_before_streaming(runner: RunnerProcess) -> None:
    with pytest.raises(InvalidRequest, match="grammar"):
        await complete(runner, grammar="root ::= (")
    with pytest.raises(InvalidRequest, match="invalid token id"):
        await complete(runner, prompt=None, tokens=[10**9])


async def test_tokenize_detokenize_round_trip(runner: RunnerProcess) -> None:
    tokens = await runner.tokenize("hello world")
    assert tokens and tokens[0] != 1  # no BOS unless asked
    assert (await runner.tokenize("hello world", add_special=True))[0] == 1
    # The tiny vocabulary has no "▁" piece, so SentencePiece's space marker survives as bytes.
    assert (await runner.detokenize(tokens)).replace("▁", " ").strip() == "hello world"


# -- context window ---------------------------------------------------------------------


async def test_context_shift_and_shift_false(tiny_gguf: Path) -> None:
    runner = await start(LoadSpec(model_path=str(tiny_gguf), num_ctx=64))
    try:
        before, _ = await complete(runner, num_predict=20, grammar=FOREVER_GRAMMAR)
        _, shifted = await complete(runner, num_predict=200, grammar=FOREVER_GRAMMAR)
        assert (shifted[-1].done_reason, shifted[-1].eval_count) == ("length", 200)
        assert "context shift" in runner.stderr_tail

        _, unshifted = await complete(runner, num_predict=200, grammar=FOREVER_GRAMMAR, shift=False)
        final = unshifted[-1]
        assert final.done_reason == "length"
        assert final.prompt_eval_count + final.eval_count == 64 + 1  # the last token is never evaluated

        _, filled = await complete(runner, num_predict=-2, grammar=FOREVER_GRAMMAR)
        assert filled[-1].done_reason == "length"
        assert filled[-1].prompt_eval_count + filled[-1].eval_count == 64 + 1

        after, _ = await complete(runner, num_predict=20, grammar=FOREVER_GRAMMAR)
        assert after == before  # the KV cache bookkeeping survived the shifts
    finally:
        await runner.close()


async def test_a_kv_cache_type_the_heads_cannot_hold_falls_back_to_f16(tiny_gguf: Path) -> None:
    # OLLAMA_KV_CACHE_TYPE=q8_0 with flash attention, on heads of 16 (q8_0 blocks are 32):
    # llama.cpp would refuse the context; the model loads with an f16 cache instead.
    runner = await start(LoadSpec(model_path=str(tiny_gguf), flash_attn=True, kv_cache_type="q8_0"))
    try:
        text, chunks = await complete(runner, num_predict=8, grammar=FOREVER_GRAMMAR)
        assert text and chunks[-1].eval_count == 8
        assert "kv cache type q8_0 not supported by this model" in runner.stderr_tail
        # 2 layers × 4096 cells × (64 + 64) values × 2 bytes (q8_0 would be 34 bytes per 32)
        assert runner.buffer_sizes["CPU KV"] == 2 * 4096 * 128 * 2
    finally:
        await runner.close()


# -- embeddings and adapters ------------------------------------------------------------


async def test_embeddings_of_an_embedding_model(tiny_embed_gguf: Path) -> None:
    runner = await start(LoadSpec(model_path=str(tiny_embed_gguf), num_ctx=256, embedding=True), "tiny-embed")
    try:
        texts = ["the sky is blue", "hello world", "the sky is blue"]
        result = await runner.embed(texts)
        assert [len(v) for v in result.embeddings] == [64, 64, 64]
        assert result.embeddings[0] == result.embeddings[2] != result.embeddings[1]
        assert result.prompt_eval_count == sum([len(await runner.tokenize(t, add_special=True)) for t in texts])
        with pytest.raises(InvalidRequest, match="too large"):
            await runner.embed(["x" * 1000])
        _, chunks = await complete(runner, num_predict=3, grammar=FOREVER_GRAMMAR)  # it can still generate
        assert chunks[-1].eval_count == 3
    finally:
        await runner.close()


async def test_a_generative_model_embeds_with_mean_pooling(runner: RunnerProcess) -> None:
    result = await runner.embed(["the sky is blue"])
    assert len(result.embeddings[0]) == 64
    before, _ = await complete(runner, num_predict=8)
    after, _ = await complete(runner, num_predict=8)  # generation still works after embedding
    assert before == after


async def test_lora_adapter_changes_greedy_output(tiny_gguf: Path, tmp_path: Path, runner: RunnerProcess) -> None:
    lora = write_tiny_lora(tmp_path / "lora.gguf")
    plain, _ = await complete(runner, num_predict=24, grammar=FOREVER_GRAMMAR)
    adapted_runner = await start(LoadSpec(model_path=str(tiny_gguf), num_ctx=4096, adapters=[str(lora)]), "tiny-lora")
    try:
        adapted, _ = await complete(adapted_runner, num_predict=24, grammar=FOREVER_GRAMMAR)
    finally:
        await adapted_runner.close()
    assert adapted != plain


# -- faults -----------------------------------------------------------------------------


async def test_sigkill_mid_stream_raises_runner_crashed(tiny_gguf: Path) -> None:
    runner = await start(LoadSpec(model_path=str(tiny_gguf), num_ctx=4096))
    try:
        request = CompletionRequest(prompt="the sky is", temperature=1.0, seed=1, num_predict=100_000, grammar=FOREVER_GRAMMAR)
        stream = runner.completion(request)
        with pytest.raises(RunnerCrashed) as err:
            killed = False
            async for _ in stream:  # chunks read together arrive after the kill too: kill once
                if not killed:
                    os.kill(runner.pid, signal.SIGKILL)
                    killed = True
        assert str(err.value).startswith(CRASH_MESSAGE)
        assert runner.has_exited() and runner.exit_code == -signal.SIGKILL
    finally:
        await runner.close()
    assert_gone(runner.pid)


async def test_client_disconnect_stops_generation(runner: RunnerProcess) -> None:
    request = CompletionRequest(prompt="the sky is", temperature=1.0, seed=1, num_predict=100_000, grammar=FOREVER_GRAMMAR)
    before = (await runner.health()).tokens_generated
    stream = runner.completion(request)
    async for _ in stream:
        break
    await stream.aclose()
    health = await until_idle(runner)
    generated = health.tokens_generated - before
    assert 0 < generated < 100_000
    assert "completion cancelled after" in runner.stderr_tail
    # The runner serves the next request, and nothing else runs beside it: a sequence
    # left in the batch would be sampled in each of its steps.
    text, chunks = await complete(runner, num_predict=4)
    assert text
    assert (await runner.health()).tokens_generated - before == generated + chunks[-1].eval_count


async def test_health_reports_the_decode_batch(runner: RunnerProcess) -> None:
    """/health shows what the engine is doing: sequences in the batch, their high-water
    mark and the prompt tokens still to evaluate (the prompt phase: see the next test)."""
    stream = runner.completion(CompletionRequest(prompt="the sky is", temperature=1.0, seed=1, num_predict=100_000, grammar=FOREVER_GRAMMAR))
    await anext(stream)  # its prompt is evaluated and it is decoding
    health = await runner.health()
    assert (health.active, health.active_sequences, health.max_active_sequences, health.prompt_tokens_pending) == (1, 1, 1, 0)
    await stream.aclose()
    assert (await until_idle(runner)).max_active_sequences == 1


async def test_cancelling_a_long_prompt_evaluation_aborts_it(tiny_gguf: Path) -> None:
    runner = await start(LoadSpec(model_path=str(tiny_gguf), num_ctx=8192))
    try:
        request = CompletionRequest(tokens=[1] + [100] * 8000, num_predict=1)
        task = asyncio.create_task(anext(aiter(runner.completion(request))))
        await until_prompt_evaluation_underway(runner, 8001, task)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        health = await until_idle(runner)
        assert "completion cancelled during prompt evaluation" in runner.stderr_tail
        assert health.tokens_generated == 0  # the prompt was never finished, nothing sampled
        _, chunks = await complete(runner, num_predict=4)  # the runner serves the next request
        assert chunks[-1].done_reason == "length"
        assert chunks[-1].prompt_cached_count <= 1  # at most the shared BOS survived
    finally:
        await runner.close()


async def test_a_second_completion_waits_for_the_first(runner: RunnerProcess) -> None:
    options = {"num_predict": 50, "grammar": FOREVER_GRAMMAR}
    alone, _ = await complete(runner, **options)
    results = await asyncio.gather(complete(runner, **options), complete(runner, **options))
    assert [text for text, _ in results] == [alone, alone]


# -- helpers ----------------------------------------------------------------------------


def is_json_prefix(text: str) -> bool:
    """True when ``text`` can still be completed into one JSON value."""

    class End(Exception):
        pass

    pos = 0

    def peek() -> str:
        if pos >= len(text):
            raise End
        return text[pos]

    def ws() -> None:
        nonlocal pos
        while pos < len(text) and text[pos] in " \t\n\r":
            pos += 1

    def literal(word: str) -> None:
        nonlocal pos
        for ch in word:
            if peek() != ch:
                raise ValueError(text)
            pos += 1

    def string() -> None:
        nonlocal pos
        literal('"')
        while (ch := peek()) != '"':
            pos += 1
            if ch == "\\":
                peek()
                pos += 1
        pos += 1

    def number() -> None:
        nonlocal pos
        start = pos
        while pos < len(text) and text[pos] in "+-0123456789.eE":
            pos += 1
        if pos == start:
            raise ValueError(text)

    def value() -> None:
        nonlocal pos
        ws()
        ch = peek()
        if ch == "{":
            pos += 1
            ws()
            if peek() == "}":
                pos += 1
                return
            while True:
                ws()
                string()
                ws()
                literal(":")
                value()
                ws()
                if peek() == "}":
                    pos += 1
                    return
                literal(",")
        elif ch == "[":
            pos += 1
            ws()
            if peek() == "]":
                pos += 1
                return
            while True:
                value()
                ws()
                if peek() == "]":
                    pos += 1
                    return
                literal(",")
        elif ch == '"':
            string()
        elif ch in "tfn":
            literal({"t": "true", "f": "false", "n": "null"}[ch])
        else:
            number()

    try:
        value()
        ws()
        return pos == len(text)
    except End:
        return True
    except ValueError:
        return False
