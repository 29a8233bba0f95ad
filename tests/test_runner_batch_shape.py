"""The shape of the engine's decode batches, which decides how fast llama.cpp runs them.

With one KV stream per sequence, llama.cpp decodes each run of consecutive seq ids in a
batch as its own ubatch: eight sequences listed out of order cost about twice what they
cost in order. These tests run a ``BatchEngine`` in this process on the tiny model and
record the seq ids of every ``llama_decode`` call that decodes several sequences.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_cpp import llama_cpp as llama_lib

from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest, LoadSpec
from ollamapy.runner import engine as engine_module
from ollamapy.runner.engine import BatchEngine, Ticket
from ollamapy.testing.api import FOREVER_GRAMMAR

pytestmark = [pytest.mark.serving]

PROMPTS = ["the sky is blue", "once upon a time", "hello world and more", "zebra zebra zebra"]


class Stream:
    """One submitted completion: its first chunk and its end, as events."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.ended = threading.Event()
        self.chunks: list[CompletionChunk] = []
        self.ticket: Ticket | None = None

    def __call__(self, item: CompletionChunk | BaseException | None) -> None:
        if isinstance(item, CompletionChunk):
            self.chunks.append(item)
            self.started.set()
        elif item is None:
            self.ended.set()

    def wait(self) -> None:
        assert self.ended.wait(60), "the completion did not end"


@pytest.fixture
def engine(tiny_gguf: Path) -> Iterator[BatchEngine]:
    engine = BatchEngine()
    engine.load(LoadSpec(model_path=str(tiny_gguf), num_ctx=4 * 512, num_parallel=4), lambda _progress: True)
    yield engine
    engine.close()


@pytest.fixture
def decode_batches(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The seq ids of each decode call whose batch holds more than one sequence."""
    batches: list[list[int]] = []
    decode = llama_lib.llama_decode

    def recording(ctx: object, batch: llama_lib.llama_batch) -> int:
        seq_ids = [batch.seq_id[i][0] for i in range(batch.n_tokens)]
        if len(set(seq_ids)) > 1:
            batches.append(seq_ids)
        return decode(ctx, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_module.llama_lib, "llama_decode", recording)
    return batches


def submit(engine: BatchEngine, prompt: str, num_predict: int) -> Stream:
    stream = Stream()
    stream.ticket = engine.submit(CompletionRequest(prompt=prompt, temperature=0.0, num_predict=num_predict, grammar=FOREVER_GRAMMAR), stream)
    return stream


def start_decoding(engine: BatchEngine, prompt: str) -> Stream:
    """A long completion, returned once it produced its first token."""
    stream = submit(engine, prompt, 400)
    assert stream.started.wait(60)
    return stream


def from_cache(stream: Stream) -> bool:
    """The completion evaluated only its prompt's last token: the rest came from a cache."""
    done = stream.chunks[-1]
    return done.prompt_cached_count == done.prompt_eval_count - 1


def fill_slots_in_order(engine: BatchEngine) -> None:
    """One prompt after the other: PROMPTS[i]'s cache ends up on slot i."""
    for prompt in PROMPTS:
        submit(engine, prompt, 4).wait()


def test_sequences_are_decoded_in_seq_id_order_whatever_their_arrival(engine: BatchEngine, decode_batches: list[list[int]]) -> None:
    fill_slots_in_order(engine)
    decode_batches.clear()
    # Each continues its own cached prefix, so they arrive in the reverse order of their slots.
    streams = [submit(engine, prompt + " and", 40) for prompt in reversed(PROMPTS)]
    for stream in streams:
        stream.wait()
    assert all(s.chunks[-1].prompt_cached_count > 0 for s in streams)  # each on its own slot
    assert any(len(batch) == 4 for batch in decode_batches)
    assert all(batch == sorted(batch) for batch in decode_batches), decode_batches


def test_a_new_request_takes_a_slot_next_to_a_busy_one(engine: BatchEngine, decode_batches: list[list[int]]) -> None:
    fill_slots_in_order(engine)  # every slot holds a cache; slot 0's is the least recently used
    running = submit(engine, PROMPTS[2] + " and", 400)  # back on slot 2
    assert running.started.wait(60)
    decode_batches.clear()
    submit(engine, "a new conversation", 10).wait()
    running.wait()
    assert decode_batches, "the two sequences were never decoded together"
    # Slot 1 or 3, not the least recently used slot 0: the busy seq ids stay one run.
    assert all(sorted(set(batch)) in ([1, 2], [2, 3]) for batch in decode_batches), decode_batches


def test_a_new_request_fills_the_gap_between_busy_slots(engine: BatchEngine, decode_batches: list[list[int]]) -> None:
    fill_slots_in_order(engine)
    submit(engine, PROMPTS[1] + " again", 4).wait()  # slot 3 is now the least recently used
    running = [submit(engine, PROMPTS[i] + " and", 400) for i in (0, 2)]  # slot 0, then 2 (its cache copied to 1)
    for stream in running:
        assert stream.started.wait(60)
    decode_batches.clear()
    submit(engine, "a new conversation", 10).wait()
    for stream in running:
        stream.wait()
    three = [batch for batch in decode_batches if len(set(batch)) == 3]
    assert three, "the three sequences were never decoded together"
    assert all(sorted(set(batch)) == [0, 1, 2] and batch == sorted(batch) for batch in three), three


class HeldEngine:
    """Holds the engine thread inside its next ``llama_decode`` until released, so requests
    submitted meanwhile are all waiting when the next step admits them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._decode = engine_module.llama_lib.llama_decode
        self._held, self._release = threading.Event(), threading.Event()

        def holding(ctx: object, batch: llama_lib.llama_batch) -> int:
            self._held.set()
            assert self._release.wait(60)
            return self._decode(ctx, batch)  # type: ignore[arg-type]

        monkeypatch.setattr(engine_module.llama_lib, "llama_decode", holding)
        assert self._held.wait(60)

    def release(self) -> None:
        self._monkeypatch.setattr(engine_module.llama_lib, "llama_decode", self._decode)
        self._release.set()


def test_cached_prompts_join_the_decoding_batch(engine: BatchEngine, decode_batches: list[list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Three requests whose prompts are cached (one token each to evaluate again) arrive
    while another sequence decodes: the next step evaluates all three last tokens in the
    decoding batch, not one prompt per step."""
    fill_slots_in_order(engine)
    running = start_decoding(engine, PROMPTS[0] + " and")
    held = HeldEngine(monkeypatch)
    waiting = [submit(engine, prompt, 2) for prompt in PROMPTS[1:]]
    decode_batches.clear()
    held.release()
    for stream in waiting:
        stream.wait()
    assert all(from_cache(s) for s in waiting)
    assert decode_batches and decode_batches[0] == [0, 1, 2, 3], decode_batches
    running.wait()


def test_a_moved_cache_costs_no_other_conversation_its_cache(engine: BatchEngine, decode_batches: list[list[int]]) -> None:
    """Slot 2's conversation continues beside slot 0's: its cache trades places with slot
    1's. Slot 1's conversation, coming back later, still finds its own cache (in slot 2)
    and continues from it beside the two busy ones."""
    fill_slots_in_order(engine)
    running = start_decoding(engine, PROMPTS[0] + " and")
    second = start_decoding(engine, PROMPTS[2] + " and")
    decode_batches.clear()
    third = submit(engine, PROMPTS[1] + " and", 4)
    third.wait()
    running.wait()
    second.wait()
    assert from_cache(second) and from_cache(third)
    assert any(sorted(set(batch)) == [0, 1, 2] for batch in decode_batches), decode_batches


def test_a_cache_moved_into_an_empty_slot_continues_as_it_would_alone(engine: BatchEngine, tiny_gguf: Path, decode_batches: list[list[int]]) -> None:
    """Slot 1 is empty (its conversation was cancelled, which frees its cells) when slot 2's
    conversation continues beside slot 0's: the cache moves into slot 1 and the text is the
    one a runner without any cache gives."""
    fill_slots_in_order(engine)
    cancelled = start_decoding(engine, PROMPTS[1] + " and")
    assert cancelled.ticket is not None
    cancelled.ticket.cancel()
    cancelled.wait()
    running = start_decoding(engine, PROMPTS[0] + " and")
    decode_batches.clear()
    moved = submit(engine, PROMPTS[2] + " and", 8)
    moved.wait()
    running.wait()
    assert from_cache(moved)
    assert any(sorted(set(batch)) == [0, 1] for batch in decode_batches), decode_batches
    fresh = BatchEngine()
    fresh.load(LoadSpec(model_path=str(tiny_gguf), num_ctx=4 * 512, num_parallel=4), lambda _progress: True)
    try:
        alone = submit(fresh, PROMPTS[2] + " and", 8)
        alone.wait()
    finally:
        fresh.close()
    assert "".join(c.content for c in moved.chunks) == "".join(c.content for c in alone.chunks)


def test_a_new_prompt_leaves_its_last_token_to_the_decoding_batch(engine: BatchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt that arrives while another sequence decodes is evaluated alone but for its
    last token, which the same step decodes with the other sequence's next one: the new
    sequence is in the batch (its seq id's place taken, no gap) from its first token on."""
    fill_slots_in_order(engine)
    running = start_decoding(engine, PROMPTS[0] + " and")
    calls: list[list[int]] = []
    decode = engine_module.llama_lib.llama_decode

    def recording(ctx: object, batch: llama_lib.llama_batch) -> int:
        calls.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
        return decode(ctx, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_module.llama_lib, "llama_decode", recording)
    held = HeldEngine(monkeypatch)
    new = submit(engine, "a brand new conversation about something else", 4)
    held.release()
    new.wait()
    done = new.chunks[-1]
    evaluated = done.prompt_eval_count - done.prompt_cached_count
    first = next(i for i, call in enumerate(calls) if 1 in call)
    assert calls[first] == [1] * (evaluated - 1), calls[: first + 2]
    assert calls[first + 1] == [0, 1], calls[: first + 2]
    running.wait()


def test_requests_arriving_together_at_an_idle_engine_share_the_first_step(
    engine: BatchEngine, decode_batches: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients that start together reach the runner one by one through the front: an idle
    engine waits for the burst to end, so four returning conversations get their first
    tokens from one step instead of the first going alone. (The quiet period is stretched
    here so a slow test machine cannot break the burst up.)"""
    fill_slots_in_order(engine)
    monkeypatch.setattr(engine_module, "ARRIVAL_QUIET", 0.5)
    monkeypatch.setattr(engine_module, "ARRIVAL_WAIT_MAX", 5.0)
    decode_batches.clear()
    streams = []
    for prompt in PROMPTS:
        streams.append(submit(engine, prompt, 2))
        time.sleep(0.02)  # far longer than a decode step of the tiny model
    for stream in streams:
        stream.wait()
    assert all(from_cache(s) for s in streams)
    assert decode_batches and decode_batches[0] == [0, 1, 2, 3], decode_batches
