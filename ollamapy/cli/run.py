"""What ``ollamapy run`` and its neighbours do against the server, as Ollama's CLI does it.

``run`` asks the server about the model (pulling it when missing), then either answers
once through ``/api/generate`` (a prompt was given, or stdin/stdout is not a terminal),
prints an embedding for embedding models, or opens the interactive chat, whose turns go
through ``/api/chat``. These functions are the pieces: loading and unloading a model
behind a spinner, one generation, one chat turn, pull and push with Ollama's progress
display, and :func:`interruptible`, which turns Ctrl+C into "stop this request" rather
than "exit", as Ollama's CLI does while a model is answering.

Output goes to ``sys.stdout`` (the answer) and ``sys.stderr`` (spinners, progress,
timings), looked up at call time so tests can capture both.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import signal
import sys
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from ollamapy.api.client import Client, ClientError, StatusError
from ollamapy.cli.display import (
    ProgressView,
    ResponseWriter,
    format_embedding,
    format_metrics,
    render_tool_calls,
    thinking_closing_text,
    thinking_opening_text,
)
from ollamapy.golang.durations import keep_alive_to_json
from ollamapy.store.names import ModelName

__all__ = [
    "RunOptions",
    "apply_show_response",
    "chat_turn",
    "embed_once",
    "encode_image",
    "generate_once",
    "infer_think",
    "interruptible",
    "is_not_found",
    "load_model",
    "parse_think_flag",
    "pull_with_progress",
    "push_with_progress",
    "request_format",
    "show_or_pull",
    "unload_model",
]

T = TypeVar("T")

THINK_LEVELS = ("high", "medium", "low", "max")


@dataclass
class RunOptions:
    """A ``run`` session's settings; the REPL's ``/set`` commands change them as it goes."""

    model: str
    parent_model: str = ""
    prompt: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The chat so far (user, assistant and ``/set system`` messages)."""
    word_wrap: bool = True
    format: str = ""
    """``""``, ``"json"``, or a JSON schema as text."""
    system: str = ""
    """A system message set in this session (``/set system``), not the model's own."""
    images: list[str] = field(default_factory=list)
    """Base64 images for a one-shot multimodal prompt."""
    options: dict[str, Any] = field(default_factory=dict)
    multimodal: bool = False
    keep_alive: float | None = None
    """Seconds (negative: forever); None leaves the server's choice."""
    think: bool | str | None = None
    """None: not sent; True/False; or a level (``high``, ``medium``, ``low``, ``max``)."""
    hide_thinking: bool = False
    verbose: bool = False

    def copy(self) -> RunOptions:
        """An independent copy, to restore when ``/load`` fails."""
        return copy.deepcopy(self)

    def request_fields(self) -> dict[str, Any]:
        """The fields every generate/chat request of the session carries."""
        body: dict[str, Any] = {"model": self.model}
        fmt = request_format(self.format)
        if fmt is not None:
            body["format"] = fmt
        if self.options:
            body["options"] = self.options
        if self.think is not None:
            body["think"] = self.think
        if self.keep_alive is not None:
            body["keep_alive"] = keep_alive_to_json(self.keep_alive)
        return body


def parse_think_flag(value: str) -> bool | str:
    """``--think``'s value: ``true``/``false`` or a level; bare ``--think`` means ``true``."""
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in THINK_LEVELS:
        return value
    raise click.ClickException(f'invalid value for --think: "{value}" (must be true, false, high, medium, low, or max)')


def request_format(fmt: str) -> Any:
    """The request's ``format``: absent, the string ``json``, or the JSON schema given."""
    if not fmt:
        return None
    if fmt == "json":
        return "json"
    try:
        return json.loads(fmt)
    except ValueError:
        raise click.ClickException(f'invalid format: {fmt}; expected "json" or a valid JSON Schema object') from None


def infer_think(capabilities: Sequence[str] | None, opts: RunOptions, explicit: bool) -> bool | str | None:
    """Ollama's ``inferThinkingOption``: a choice the user made stands; otherwise thinking
    is turned on for models that can think and left unset (not off) for the others."""
    if explicit:
        return opts.think
    return True if "thinking" in (capabilities or []) else None


def apply_show_response(opts: RunOptions, info: Mapping[str, Any]) -> None:
    """Take what the session needs from ``/api/show``: the parent model (for ``/save``)
    and whether the model sees images (so image paths in a prompt are attached)."""
    capabilities = info.get("capabilities") or []
    model_info = info.get("model_info") or {}
    opts.multimodal = (
        "vision" in capabilities
        or bool(info.get("projector_info"))
        or any(".vision." in key for key in model_info)
    )
    opts.parent_model = str((info.get("details") or {}).get("parent_model") or "")


async def interruptible(awaitable: Awaitable[T]) -> tuple[T | None, bool]:
    """Await ``awaitable`` with Ctrl+C cancelling it instead of the program.

    Returns ``(result, False)``, or ``(None, True)`` when Ctrl+C stopped it: closing the
    request's connection is what tells the server to stop generating.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(awaitable)
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        installed = True
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals
        installed = False
    try:
        return await task, False
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if task.cancelled() and (current is None or not current.cancelling()):
            return None, True
        raise
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, previous)


# --- models: show, pull, push, load, unload ----------------------------------------------


async def pull_with_progress(client: Client, name: str, insecure: bool) -> None:
    """``ollama pull``: stream ``/api/pull`` through Ollama's pull progress display."""
    body: dict[str, Any] = {"model": name}
    if insecure:
        body["insecure"] = True
    with ProgressView() as view:
        async for event in client.pull(body):
            view.handle(event, "pull")


_PUSH_DENIED = "you are not authorized to push to this namespace, create the model under a namespace you own"


async def push_with_progress(client: Client, name: str, insecure: bool) -> None:
    """``ollama push``: stream ``/api/push`` with progress, then say where the model went."""
    body: dict[str, Any] = {"model": name}
    if insecure:
        body["insecure"] = True
    with ProgressView() as view:
        try:
            async for event in client.push(body):
                view.handle(event, "push")
        except StatusError as err:
            text = str(err).lower()
            if "access denied" in text or "unauthorized" in text:
                raise click.ClickException(_PUSH_DENIED) from None
            raise
    parsed = ModelName.parse(name)
    destination = str(parsed)
    if parsed.host.endswith((".ollama.ai", ".ollama.com")):
        destination = "https://ollama.com/" + parsed.display_shortest().removesuffix(":latest")
    sys.stdout.write(f"\nYou can find your model at:\n\n\t{destination}\n")


async def show_or_pull(client: Client, name: str, insecure: bool) -> dict[str, Any]:
    """The model's ``/api/show`` answer, pulling the model first when the server lacks it."""
    try:
        return await client.show(name)
    except StatusError as err:
        if err.status_code != 404:
            raise
    await pull_with_progress(client, name, insecure)
    return await client.show(name)


async def _empty_generate(client: Client, body: dict[str, Any]) -> None:
    """An empty-prompt generate (load or unload) behind Ollama's spinner."""
    view = ProgressView()
    view.spinner("")
    try:
        async for _ in client.generate(body):
            pass
    finally:
        view.stop_and_clear()


async def load_model(client: Client, opts: RunOptions) -> None:
    """Preload the model (an empty generate) so the first answer starts at once; ``think``
    goes along so a model that cannot think fails here, before the first prompt."""
    body: dict[str, Any] = {"model": opts.model}
    if opts.keep_alive is not None:
        body["keep_alive"] = keep_alive_to_json(opts.keep_alive)
    if opts.think is not None:
        body["think"] = opts.think
    await _empty_generate(client, body)


async def unload_model(client: Client, name: str) -> None:
    """Unload a model now (an empty generate with ``keep_alive`` 0), as ``stop`` and ``rm`` do."""
    await _empty_generate(client, {"model": name, "keep_alive": keep_alive_to_json(0)})


# --- answers ---------------------------------------------------------------------------------


class _AnswerPrinter:
    """Prints a streamed answer as Ollama does: the spinner goes at the first visible
    chunk, thoughts come between ``Thinking...`` and ``...done thinking.``, tool calls
    are reported, and the text is word-wrapped."""

    def __init__(self, opts: RunOptions, view: ProgressView, plain: bool) -> None:
        self._out = sys.stdout
        self._opts = opts
        self._view = view
        self._plain = plain
        self._writer = ResponseWriter(self._out, opts.word_wrap)
        self._thinking_open = False
        self._thinking_closed = False
        self.thinking = ""
        self.content = ""
        self.printed = False

    def feed(self, content: str, thinking: str, tool_calls: Sequence[Mapping[str, Any]] | None, tools_first: bool) -> None:
        if content or not self._opts.hide_thinking:
            self._view.stop_and_clear()
        if thinking and not self._opts.hide_thinking:
            if not self._thinking_open:
                self._write(thinking_opening_text(self._plain))
                self._thinking_open, self._thinking_closed = True, False
            self.thinking += thinking
            self._writer.write(thinking)
            self.printed = True
        if self._thinking_open and not self._thinking_closed and (content or tool_calls):
            if not self.thinking.endswith("\n"):
                self._write("\n")
            self._write(thinking_closing_text(self._plain))
            self._thinking_open, self._thinking_closed = False, True
            self._writer = ResponseWriter(self._out, self._opts.word_wrap)
        self.content += content
        if tool_calls and tools_first:
            self._write(render_tool_calls(tool_calls, self._plain))
        if content:
            self._writer.write(content)
            self.printed = True
        if tool_calls and not tools_first:
            self._write(render_tool_calls(tool_calls, self._plain))

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
        self.printed = True


def _after_interrupt(printer: _AnswerPrinter) -> None:
    """End the interrupted answer's line so the next prompt starts on its own."""
    if printer.printed:
        sys.stdout.write("\n")
        sys.stdout.flush()


async def generate_once(client: Client, opts: RunOptions) -> None:
    """One answer through ``/api/generate`` (``ollama run MODEL PROMPT``); Ctrl+C stops it."""
    view = ProgressView()
    view.spinner("")
    printer = _AnswerPrinter(opts, view, plain=not sys.stdout.isatty())
    body = {**opts.request_fields(), "prompt": opts.prompt}
    if opts.images:
        body["images"] = opts.images
    if opts.system:
        body["system"] = opts.system
    latest: dict[str, Any] = {}

    async def stream() -> None:
        nonlocal latest
        async for chunk in client.generate(body):
            latest = chunk
            printer.feed(str(chunk.get("response") or ""), str(chunk.get("thinking") or ""), chunk.get("tool_calls"), False)

    try:
        _, interrupted = await interruptible(stream())
    finally:
        view.stop_and_clear()
    if interrupted:
        _after_interrupt(printer)
        return
    if opts.prompt:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if latest.get("done") and opts.verbose:
        sys.stderr.write(format_metrics(latest))
        sys.stderr.flush()


_UPSTREAM_ERROR = "An error occurred while processing your message. Please try again."


async def chat_turn(client: Client, opts: RunOptions) -> dict[str, Any] | None:
    """One turn of the interactive chat through ``/api/chat``.

    Returns the assistant's message to add to the history, or None when Ctrl+C stopped
    the answer (Ollama then keeps the question but drops the partial answer).
    """
    view = ProgressView()
    view.spinner("")
    printer = _AnswerPrinter(opts, view, plain=False)
    body = {**opts.request_fields(), "messages": opts.messages}
    latest: dict[str, Any] = {}
    role = "assistant"

    async def stream() -> None:
        nonlocal latest, role
        async for chunk in client.chat(body):
            latest = chunk
            message = chunk.get("message") or {}
            role = str(message.get("role") or role)
            printer.feed(str(message.get("content") or ""), str(message.get("thinking") or ""), message.get("tool_calls"), True)

    try:
        _, interrupted = await interruptible(stream())
    except StatusError as err:
        if "upstream error" not in str(err):
            raise
        view.stop_and_clear()
        sys.stdout.write(_UPSTREAM_ERROR + "\n\n")
        return None
    finally:
        view.stop_and_clear()
    if interrupted:
        _after_interrupt(printer)
        return None
    if opts.messages:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if opts.verbose:
        sys.stderr.write(format_metrics(latest))
        sys.stderr.flush()
    reply: dict[str, Any] = {"role": role, "content": printer.content}
    if printer.thinking:
        reply["thinking"] = printer.thinking
    return reply


async def embed_once(
    client: Client, name: str, text: str, keep_alive: float | None, truncate: bool | None, dimensions: int
) -> None:
    """``ollama run EMBEDDING-MODEL TEXT``: print the input's vector as a JSON array."""
    if not text:
        raise click.ClickException(f'embedding models require input text. Usage: ollamapy run {name} "your text here"')
    body: dict[str, Any] = {"model": name, "input": text}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive_to_json(keep_alive)
    if truncate is not None:
        body["truncate"] = truncate
    if dimensions > 0:
        body["dimensions"] = dimensions
    resp = await client.embed(body)
    embeddings = resp.get("embeddings") or []
    if not embeddings:
        raise click.ClickException("no embeddings returned")
    sys.stdout.write(format_embedding(embeddings[0]) + "\n")


def encode_image(data: bytes) -> str:
    """An image as the JSON API carries it (Go marshals ``[]byte`` as base64)."""
    return base64.b64encode(data).decode("ascii")


def is_not_found(err: ClientError) -> bool:
    """Ollama's CLI tells "no such model" apart by the words in the message."""
    return "not found" in str(err).lower()
