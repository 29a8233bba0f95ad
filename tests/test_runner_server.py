"""The runner's HTTP server in front of a stand-in engine: which requests it validates on
its event loop and which in a worker thread, seen from ``/health`` staying responsive."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from ollamapy.api.runner_protocol import CompletionChunk, CompletionRequest, EmbeddingResponse, LoadSpec
from ollamapy.runner.engine import ChunkSink, Ticket
from ollamapy.runner.server import RunnerServer

HANG = 30.0
"""Seconds before a step counts as hung (a blocked event loop), not slow."""


class BlockingEngine:
    """An engine whose ``submit`` waits for ``release`` (as decoding a large image would
    take a while), then answers with one final chunk; it records the thread it ran on."""

    tokens_generated = active_sequences = max_active_sequences = prompt_tokens_pending = 0
    kv_cells_used = kv_cells_total = 0

    def __init__(self) -> None:
        self.release = threading.Event()
        self.submitted_on: list[str] = []

    @property
    def active(self) -> int:
        return 0

    def load(self, spec: LoadSpec, progress: Callable[[float], bool]) -> None:
        raise NotImplementedError

    def submit(self, request: CompletionRequest, sink: ChunkSink) -> Ticket:
        self.submitted_on.append(threading.current_thread().name)
        if request.images:
            self.release.wait(HANG)
        sink(CompletionChunk(content="ok", done=True, done_reason="stop"))
        sink(None)
        return Ticket(lambda: None)

    def embed(self, texts: list[str], cancel: threading.Event) -> concurrent.futures.Future[EmbeddingResponse]:
        raise NotImplementedError

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        raise NotImplementedError

    def detokenize(self, tokens: list[int]) -> str:
        raise NotImplementedError


async def test_image_requests_are_validated_off_the_event_loop(aiohttp_client: Any) -> None:
    engine = BlockingEngine()
    server = RunnerServer(engine)
    server.status = "ok"
    client = await aiohttp_client(server.app())

    # a short text prompt is validated inline, on the event loop
    resp = await client.post("/completion", json={"prompt": "hi"})
    assert resp.status == 200 and "ok" in await resp.text()
    assert engine.submitted_on == [threading.current_thread().name]

    # a short prompt with an image goes to a worker: /health answers while it decodes
    answer = asyncio.create_task(client.post("/completion", json={"prompt": "[img-0] hi", "images": ["aGk="]}))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    try:
        while (await (await client.get("/health")).json())["active"] != 1:  # 1: being validated
            assert loop.time() < deadline, "the image request never reached validation"
    finally:
        engine.release.set()
    resp = await asyncio.wait_for(answer, HANG)
    assert resp.status == 200 and "ok" in await resp.text()
    assert engine.submitted_on[1].startswith("validate")
