"""The runner's HTTP server (aiohttp on a Unix socket) in front of an ``Engine``.

The engine decodes in its own thread and serves many completions at once (continuous
batching); this server only validates requests, hands them to the engine and streams the
chunks it produces, so the event loop stays free to answer ``/health`` and to notice a
client that went away. A disconnect (aiohttp cancels the handler) cancels the request's
sequence, and the engine stops it within one token, or aborts its prompt evaluation.
Tokenize/detokenize only read the vocabulary and run beside everything else.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ollamapy.api.runner_protocol import (
    CompletionChunk,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    HealthResponse,
    LoadSpec,
    TokenizeRequest,
    TokenizeResponse,
)
from ollamapy.errors import InvalidRequest

from .engine import ChunkSink, Engine, Ticket

__all__ = ["RunnerServer", "serve"]

log = logging.getLogger("ollamapy.runner")

_Model = TypeVar("_Model", bound=BaseModel)
_INLINE_PROMPT_CHARS = 8192
"""Prompts shorter than this (without a grammar or images) are validated on the event loop."""


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(body=model.model_dump_json(), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(ErrorResponse(error=message), status)


def _cancel_submitted(future: asyncio.Future[Ticket]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().cancel()


class _HTTPError(Exception):
    """Answer the request with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RunnerServer:
    """Routes and load state of one runner process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.status: Literal["loading", "ok"] = "loading"
        self.progress = 0.0
        self._submitting = 0  # requests being validated, not yet counted by the engine
        # Validation (tokenizing, grammar compilation) runs here, off the event loop.
        self._worker = ThreadPoolExecutor(max_workers=2, thread_name_prefix="validate")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/health", self.health)
        app.router.add_post("/completion", self.completion)
        app.router.add_post("/embedding", self.embedding)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_post("/detokenize", self.detokenize)
        return app

    async def load(self, spec: LoadSpec) -> None:
        """Load the model in a worker thread; /health reports progress meanwhile."""
        await asyncio.get_running_loop().run_in_executor(self._worker, self.engine.load, spec, self._on_progress)
        self.progress = 1.0
        self.status = "ok"
        log.info("model loaded, runner ready")

    def _on_progress(self, progress: float) -> bool:
        self.progress = progress
        return True

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        try:
            return await handler(request)
        except _HTTPError as err:
            return _error(err.status, err.message)
        except InvalidRequest as err:
            return _error(400, err.message)
        except web.HTTPException:
            raise
        except Exception as err:
            log.exception("error: %s %s failed", request.method, request.path)
            return _error(500, str(err) or type(err).__name__)

    async def _parse(self, request: web.Request, model: type[_Model]) -> _Model:
        try:
            return model.model_validate_json(await request.read())
        except ValidationError as err:
            raise _HTTPError(400, str(err)) from err

    def _require_loaded(self) -> None:
        if self.status != "ok":
            raise _HTTPError(503, "loading model")

    # -- routes -------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return _json(
            HealthResponse(
                status=self.status,
                progress=self.progress,
                tokens_generated=self.engine.tokens_generated,
                active=self._submitting + self.engine.active,
                active_sequences=self.engine.active_sequences,
                max_active_sequences=self.engine.max_active_sequences,
                prompt_tokens_pending=self.engine.prompt_tokens_pending,
                kv_cells_used=self.engine.kv_cells_used,
                kv_cells_total=self.engine.kv_cells_total,
            )
        )

    async def completion(self, request: web.Request) -> web.StreamResponse:
        body = await self._parse(request, CompletionRequest)
        self._require_loaded()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[CompletionChunk | BaseException | None] = asyncio.Queue()

        def sink(item: CompletionChunk | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        if body.grammar is None and body.format is None and not body.images and len(body.prompt or "") < _INLINE_PROMPT_CHARS:
            # Cheap to validate (no grammar to compile, no image to decode, a short text to
            # tokenize): do it right here, saving a thread hop on the way to the first token.
            ticket = self.engine.submit(body, sink)
        else:
            ticket = await self._submit_in_thread(body, sink)
        try:
            return await self._send_stream(request, queue)
        finally:
            ticket.cancel()  # a no-op once the sequence is over

    async def _submit_in_thread(self, body: CompletionRequest, sink: ChunkSink) -> Ticket:
        """Validate and queue off the event loop (grammar compilation, image decoding, long prompts)."""
        self._submitting += 1
        submitted = asyncio.get_running_loop().run_in_executor(self._worker, self.engine.submit, body, sink)
        try:
            # Bad input (tokens, grammar) raises here, so it is still a 400.
            return await asyncio.shield(submitted)
        except asyncio.CancelledError:
            submitted.add_done_callback(_cancel_submitted)  # the client left while we validated
            raise
        finally:
            self._submitting -= 1

    @staticmethod
    async def _send_stream(request: web.Request, queue: asyncio.Queue[CompletionChunk | BaseException | None]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        try:
            while True:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                lines: list[bytes] = []
                ended = False
                for item in items:
                    if item is None:
                        ended = True
                    elif isinstance(item, CompletionChunk):
                        lines.append(item.model_dump_json().encode() + b"\n")
                    else:  # the engine failed: a final error line
                        lines.append(ErrorResponse(error=str(item) or type(item).__name__).model_dump_json().encode() + b"\n")
                if lines:
                    await response.write(b"".join(lines))
                if ended:
                    await response.write_eof()
                    return response
        except ConnectionResetError:
            log.info("client disconnected, completion cancelled")
            return response

    async def embedding(self, request: web.Request) -> web.Response:
        body = await self._parse(request, EmbeddingRequest)
        self._require_loaded()
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        self._submitting += 1
        try:
            future = await loop.run_in_executor(self._worker, self.engine.embed, body.content, cancel)
        finally:
            self._submitting -= 1
        try:
            result: EmbeddingResponse = await asyncio.wrap_future(future)
        finally:
            cancel.set()
        return _json(result)

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await self._parse(request, TokenizeRequest)
        self._require_loaded()
        tokens = await asyncio.get_running_loop().run_in_executor(None, self.engine.tokenize, body.content, body.add_special)
        return _json(TokenizeResponse(tokens=tokens))

    async def detokenize(self, request: web.Request) -> web.Response:
        body = await self._parse(request, DetokenizeRequest)
        self._require_loaded()
        content = await asyncio.get_running_loop().run_in_executor(None, self.engine.detokenize, body.tokens)
        return _json(DetokenizeResponse(content=content))


async def serve(engine: Engine, spec: LoadSpec, socket_path: str) -> None:
    """Listen on ``socket_path`` first (so /health answers while loading), then load, then serve forever."""
    server = RunnerServer(engine)
    runner = web.AppRunner(server.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, socket_path).start()
    log.info("runner listening on %s", socket_path)
    try:
        await server.load(spec)
    except Exception as err:
        raise RuntimeError(f"error loading model {spec.model_path}: {err}") from err
    await asyncio.Event().wait()
