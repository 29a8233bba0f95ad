"""The front process's handle to one runner child (``python -m ollamapy.runner``).

``RunnerProcess`` implements ``supervisor.runner_handle.RunnerHandle``: it spawns the child, relays its
stderr to the ``ollamapy.runner`` logger (prefixed with the model name) while keeping the
last 8 KB for error messages, waits for the model to load with a stall timeout that any
sign of progress resets, speaks the runner protocol (``ollamapy.api.runner_protocol``) over
the child's Unix socket, and always terminates and reaps the child on ``close``.

The child also guards itself: it gets a parent-death signal and watches its stdin pipe,
so it exits when this process dies, even by SIGKILL (see ``runner/__main__.py``).
This module never imports llama_cpp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ollamapy.api.runner_protocol import (
    CompletionChunk,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    HealthResponse,
    LoadSpec,
    TokenizeRequest,
    TokenizeResponse,
)
from ollamapy.errors import InvalidRequest, OllamapyError, RunnerCrashed

if TYPE_CHECKING:
    from ollamapy.supervisor.placement.plan import Placement

__all__ = ["CRASH_MESSAGE", "STDERR_TAIL_BYTES", "RunnerProcess"]

log = logging.getLogger("ollamapy.runner")

CRASH_MESSAGE = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, "
    "check ollamapy server logs for details"
)
STDERR_TAIL_BYTES = 8 * 1024

_BUFFER_LINE = re.compile(r"\b(\w+)\s+(model|KV|compute|output|RS) buffer size\s*=\s*([0-9.]+) MiB")
# What an error looks like in llama.cpp's log, Python tracebacks and the runner's own log.
_ERROR_LINE = re.compile(r"(?i:error:|error loading model|cuda error|rocm error|out of memory|ggml_assert|failed to allocate)|^ERROR ")
_NOT_ERROR_LINE = ("Model metadata:", "Available chat formats", "Using gguf chat template")
_LEVEL_PREFIX = re.compile(r"^(?:ERROR|WARNING|INFO|CRITICAL) ")
_CPU_BACKENDS = re.compile(r"^(CPU(_\w+)?|BLAS|\w+_Host)$")
_URL = "http://runner"
_POLL_INTERVAL = 0.02


class RunnerProcess:
    """One running ``ollamapy.runner`` child holding one model. Create with ``start``."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        *,
        spec: LoadSpec,
        model_name: str,
        socket_path: Path,
        owned_dir: Path | None,
        placement: Placement | None = None,
    ) -> None:
        self.spec = spec
        self.placement = placement
        """The devices this runner was placed on (None when started without a plan)."""
        self.model_name = model_name
        self.socket_path = socket_path
        self._process = process
        self._owned_dir = owned_dir
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(socket_path)),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )
        self._tail = bytearray()
        self._last_error: str | None = None
        self._last_output = asyncio.get_running_loop().time()
        self.buffer_sizes: dict[str, int] = {}
        """llama.cpp's buffer sizes in bytes, keyed ``"<backend> <kind>"`` (``"CPU_Mapped model"``,
        ``"CUDA0 KV"``, ``"CPU compute"``…), summed over repeats; filled while the model loads."""
        self._stderr_task = asyncio.create_task(self._relay_stderr())
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        spec: LoadSpec,
        *,
        model_name: str,
        env: Mapping[str, str] | None = None,
        socket_dir: str | Path | None = None,
        placement: Placement | None = None,
    ) -> RunnerProcess:
        """Spawn a runner for ``spec``; ``env`` is overlaid on this process's environment.

        ``placement`` is the plan ``spec`` and ``env`` were made from, kept for ``/api/ps``.

        The socket goes into ``socket_dir`` (a private directory the caller owns) or, when
        None, into a fresh private temporary directory that ``close`` removes. Returns at
        once; call ``wait_until_ready`` before sending requests.
        """
        owned_dir = None
        if socket_dir is None:
            socket_dir = owned_dir = Path(tempfile.mkdtemp(prefix="ollamapy-"))
        socket_path = Path(socket_dir) / f"runner-{secrets.token_hex(4)}.sock"
        if len(os.fsencode(socket_path)) > 107:  # sun_path is 108 bytes on Linux
            raise OllamapyError(f"runner socket path is too long: {socket_path}")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ollamapy.runner",
            "--socket", str(socket_path),
            "--parent-pid", str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            # Not in our process group: a Ctrl-C in the terminal is the front's to handle.
            start_new_session=True,
        )
        try:
            assert process.stdin is not None
            process.stdin.write(spec.model_dump_json().encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await process.stdin.drain()
        except BaseException:
            process.kill()
            await process.wait()
            raise
        log.info("[%s] started runner pid %d on %s", model_name, process.pid, socket_path)
        return cls(process, spec=spec, model_name=model_name, socket_path=socket_path, owned_dir=owned_dir, placement=placement)

    async def wait_until_ready(self, stall_timeout: float) -> None:
        """Wait until the model is loaded.

        Fails with ``RunnerCrashed`` if the child exits, or with an ``OllamapyError`` when
        nothing happened (no stderr output, no change of load progress) for
        ``stall_timeout`` seconds. The caller closes the runner after a failure.
        """
        loop = asyncio.get_running_loop()
        last_activity = loop.time()
        progress = -1.0
        while True:
            if self.has_exited():
                await self._await_exit()
                raise RunnerCrashed(self._with_last_error(f"llama runner process has terminated: {self._exit_description()}"))
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                health = await self.health(timeout=5.0)
                if health.status == "ok":
                    return
                if health.progress != progress:
                    progress = health.progress
                    last_activity = loop.time()
            last_activity = max(last_activity, self._last_output)
            if loop.time() - last_activity > stall_timeout:
                raise OllamapyError(
                    self._with_last_error(f"timed out waiting for llama runner to start - progress {max(progress, 0.0):.2f} -")
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def close(self, timeout: float = 5.0) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
        if self._closed:
            return
        self._closed = True
        process = self._process
        try:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout)
                except TimeoutError:
                    log.warning("[%s] runner pid %d ignored SIGTERM, killing it", self.model_name, process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        finally:
            if process.stdin is not None:
                process.stdin.close()
            await self._session.close()
            await self._drain_stderr()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            if self._owned_dir is not None:
                shutil.rmtree(self._owned_dir, ignore_errors=True)
        log.info("[%s] runner pid %d stopped (%s)", self.model_name, process.pid, self._exit_description())

    # -- state --------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def exit_code(self) -> int | None:
        """The child's exit status once it has exited (negative: killed by that signal)."""
        return self._process.returncode

    def has_exited(self) -> bool:
        """True once the child is dead, even before asyncio has reaped it.

        asyncio sets ``returncode`` only after its child watcher reaped the child, which
        under load can be well after a SIGKILL: meanwhile the scheduler would hand the dead
        runner the next request. ``waitid`` with ``WNOWAIT`` sees the exit without reaping,
        so the watcher still collects the status.
        """
        if self._process.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped a moment ago; returncode follows
            return True

    @property
    def stderr_tail(self) -> str:
        """The last ~8 KB the child wrote to stderr."""
        return self._tail.decode("utf-8", errors="replace")

    def last_error_line(self) -> str | None:
        """The last stderr line that looks like an error, for crash messages."""
        return self._last_error

    def memory_size(self) -> tuple[int, int]:
        """(total, VRAM) bytes from llama.cpp's buffer sizes; CPU-side buffers are not VRAM.

        A placeholder until placement accounts for mmap overlap and offload, as Ollama does.
        """
        total = sum(self.buffer_sizes.values())
        vram = sum(size for key, size in self.buffer_sizes.items() if not _CPU_BACKENDS.match(key.split(" ")[0]))
        return total, vram

    async def health(self, timeout: float = 10.0) -> HealthResponse:
        async with self._session.get(f"{_URL}/health", timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            response.raise_for_status()
            return HealthResponse.model_validate_json(await response.read())

    # -- requests -----------------------------------------------------------------------

    async def completion(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        """Stream the completion's chunks; the last one has ``done`` set.

        Closing the iterator early (or cancelling the task reading it) closes the
        connection, and the runner stops generating within one token. Raises
        ``InvalidRequest`` for input the runner rejects, ``RunnerCrashed`` if the runner
        dies, ``OllamapyError`` for a failure the runner reports mid-stream.
        """
        done = False
        try:
            async with self._session.post(f"{_URL}/completion", data=request.model_dump_json(), headers=_JSON) as response:
                try:
                    await _raise_for_status(response)
                    buffer = b""
                    async for data in response.content.iter_any():
                        buffer += data
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            chunk = _parse_chunk(line)
                            if chunk is None:
                                continue
                            done = chunk.done
                            yield chunk
                            if done:
                                return
                finally:
                    if not done:
                        response.close()  # never hand a half-read stream back to the pool
        except (aiohttp.ClientError, ConnectionError) as err:
            raise await self._crashed() from err
        raise await self._crashed()

    async def embed(self, texts: list[str]) -> EmbeddingResponse:
        """Pooled, unnormalized embeddings, one per text (the front normalizes)."""
        return EmbeddingResponse.model_validate_json(await self._post("/embedding", EmbeddingRequest(content=texts)))

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        body = await self._post("/tokenize", TokenizeRequest(content=text, add_special=add_special))
        return TokenizeResponse.model_validate_json(body).tokens

    async def detokenize(self, tokens: list[int]) -> str:
        return DetokenizeResponse.model_validate_json(await self._post("/detokenize", DetokenizeRequest(tokens=tokens))).content

    async def _post(self, path: str, body: Any) -> bytes:
        try:
            async with self._session.post(f"{_URL}{path}", data=body.model_dump_json(), headers=_JSON) as response:
                await _raise_for_status(response)
                return await response.read()
        except (aiohttp.ClientError, ConnectionError) as err:
            raise await self._crashed() from err

    # -- stderr and errors --------------------------------------------------------------

    async def _relay_stderr(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        pending = b""
        loop = asyncio.get_running_loop()
        while data := await stream.read(4096):
            # Any output is progress: llama.cpp prints while it loads.
            self._last_output = loop.time()
            self._tail += data
            del self._tail[:-STDERR_TAIL_BYTES]
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                self._on_line(line.decode("utf-8", errors="replace").rstrip())
        if pending:
            self._on_line(pending.decode("utf-8", errors="replace").rstrip())

    def _on_line(self, line: str) -> None:
        if not line:
            return
        is_error = bool(_ERROR_LINE.search(line)) and not line.startswith(_NOT_ERROR_LINE)
        log.log(logging.WARNING if is_error else logging.INFO, "[%s] %s", self.model_name, line)
        if is_error:
            self._last_error = _LEVEL_PREFIX.sub("", line.strip())[:500]
        if match := _BUFFER_LINE.search(line):
            key = f"{match[1]} {match[2]}"
            self.buffer_sizes[key] = self.buffer_sizes.get(key, 0) + int(float(match[3]) * 1024 * 1024)

    async def _drain_stderr(self) -> None:
        """Let the relay read the child's last words (it ends at EOF, when the child is gone)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 2.0)

    async def _await_exit(self) -> None:
        """Give a dying child time to be reaped (its exit status) and to say its last words."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._process.wait(), 5.0)
        await self._drain_stderr()

    async def _crashed(self) -> RunnerCrashed:
        """The error for a runner that stopped answering: wait for it to exit, then explain."""
        await self._await_exit()
        if self.exit_code is not None:
            log.error("[%s] runner pid %d stopped unexpectedly (%s)", self.model_name, self.pid, self._exit_description())
        return RunnerCrashed(self._with_last_error(CRASH_MESSAGE))

    def _with_last_error(self, message: str) -> str:
        last = self._last_error
        return f"{message}: {last}" if last else message

    def _exit_description(self) -> str:
        code = self._process.returncode
        if code is None:
            return "running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"signal: {signal.Signals(-code).name}"
        return f"exit status {code}"


_JSON = {"Content-Type": "application/json"}


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    """Turn a runner error answer into the matching ollamapy error."""
    if response.status < 400:
        return
    text = await response.text()
    try:
        message = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        message = text or response.reason or f"runner answered {response.status}"
    raise (InvalidRequest if response.status == 400 else OllamapyError)(message)


def _parse_chunk(line: bytes) -> CompletionChunk | None:
    if not line.strip():
        return None
    if b'"error"' in line:  # an error line (in a chunk's text, quotes are escaped)
        data = json.loads(line)
        if "error" in data:
            raise OllamapyError(data["error"])
    return CompletionChunk.model_validate_json(line)
