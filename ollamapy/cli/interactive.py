"""The interactive chat of ``ollamapy run MODEL`` (Ollama's ``cmd/interactive.go``).

Prompt ``>>> `` (``... `` while a multi-line message is open), a grey placeholder,
``\"\"\"`` to start and end multi-line input, the slash commands (``/set``, ``/show``,
``/load``, ``/save``, ``/clear``, ``/list``, ``/bye``, ``/?``), Ctrl+C to stop an answer or
drop the line being typed, Ctrl+D to leave, Ctrl+G to compose in an editor, and the
history in ``~/.ollama/history`` (the last 100 lines, one per line, as Ollama keeps it).

The line editor is prompt_toolkit: it gives the placeholder, bracketed paste and Ollama's
Emacs-style keys the same way on every platform, runs inside the asyncio loop that talks
to the server (so an answer can be cancelled from the same loop), and takes a history
class that reads and writes Ollama's file format. Python's ``readline`` has no
placeholder, is libedit on macOS and absent on Windows.
"""

from __future__ import annotations

import enum
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app, run_in_terminal
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.history import History
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from ollamapy import envconfig
from ollamapy.api.client import Client, ClientError, StatusError
from ollamapy.api.options import format_parameter_value, parse_parameter
from ollamapy.cli.display import COLOR_DEFAULT, COLOR_GREY, format_list, format_show_info
from ollamapy.cli.run import (
    RunOptions,
    apply_show_response,
    chat_turn,
    encode_image,
    infer_think,
    is_not_found,
    load_model,
)
from ollamapy.errors import InvalidRequest
from ollamapy.golang import quote as go_quote
from ollamapy.store.names import ModelName

__all__ = [
    "HISTORY_LIMIT",
    "LineReader",
    "OllamaHistory",
    "extract_file_data",
    "new_create_request",
    "repl",
]

PROMPT, ALT_PROMPT = ">>> ", "... "
PLACEHOLDER = "Send a message (/? for help)"
ALT_PLACEHOLDER = 'Use """ to end multi-line input'
HISTORY_LIMIT = 100
"""Lines of history Ollama keeps."""

_MAX_IMAGE_BYTES = 100 * 1024 * 1024
_TRIPLE = '"""'


class OllamaHistory(History):
    """The prompt history in Ollama's file: one entry per line, the newest last, at most
    :data:`HISTORY_LIMIT`, rewritten (atomically) after every entry while enabled.

    Disabled (``OLLAMA_NOHISTORY``, ``/set nohistory``), the file is still read but
    never written. A pasted multi-line entry is stored as its lines, as Ollama's
    line-at-a-time reader would have recorded it.
    """

    def __init__(self, path: Path, enabled: bool = True) -> None:
        super().__init__()
        self.path = path
        self.enabled = enabled
        self._entries: list[str] = []
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        self._entries = [line.strip() for line in lines if line.strip()][-HISTORY_LIMIT:]

    def load_history_strings(self) -> Iterable[str]:
        return reversed(self._entries)

    def store_string(self, string: str) -> None:
        self._entries.extend(line for line in string.split("\n") if line)
        del self._entries[:-HISTORY_LIMIT]
        if not self.enabled:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(entry + "\n" for entry in self._entries))
            os.replace(tmp, self.path)
        except OSError:
            pass  # like Ollama, a history that cannot be saved never stops the chat


def _edit_in_external_editor(content: str) -> str:
    """Ollama's Ctrl+G: edit ``content`` in ``OLLAMA_EDITOR``/``$VISUAL``/``$EDITOR`` (else vi)."""
    editor = envconfig.editor() or "vi"
    args = shlex.split(editor)
    fd, name = tempfile.mkstemp(prefix="ollama-prompt-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        try:
            subprocess.run([*args, name], check=True)
        except FileNotFoundError:
            raise OSError(f'editor "{args[0]}" not found, set OLLAMA_EDITOR to the path of your preferred editor') from None
        except subprocess.CalledProcessError as err:
            raise OSError(f"editor exited with error: {err}") from None
        return Path(name).read_text(encoding="utf-8").rstrip("\n")
    finally:
        os.unlink(name)


class LineReader:
    """Reads the REPL's lines from the terminal with Ollama's prompt, placeholder and history."""

    def __init__(self, history: OllamaHistory) -> None:
        self.history = history
        bindings = KeyBindings()

        @bindings.add("c-g")
        async def _edit(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            try:
                content = await run_in_terminal(lambda: _edit_in_external_editor(buffer.text), in_executor=True)
            except OSError as err:
                message = f"error: {err}"
                await run_in_terminal(lambda: print(message, file=sys.stderr))
                return
            if content.strip():
                buffer.text = content
                buffer.cursor_position = len(content)

        self._session: PromptSession[str] = PromptSession(history=history, key_bindings=bindings)

    async def read(self, continuation: bool) -> str:
        """One line; raises KeyboardInterrupt on Ctrl+C and EOFError on Ctrl+D."""
        placeholder = ANSI(COLOR_GREY + (ALT_PLACEHOLDER if continuation else PLACEHOLDER) + COLOR_DEFAULT)

        def hint() -> ANSI:
            # Only while typing: an abandoned line (Ctrl+C, Ctrl+D) is left as a bare prompt.
            return ANSI("") if get_app().is_done else placeholder

        return await self._session.prompt_async(ALT_PROMPT if continuation else PROMPT, placeholder=hint)


# --- usage texts (stderr, as Ollama prints them) --------------------------------------------


def _usage(multimodal: bool) -> str:
    text = (
        "Available Commands:\n"
        "  /set            Set session variables\n"
        "  /show           Show model information\n"
        "  /load <model>   Load a session or model\n"
        "  /save <model>   Save your current session\n"
        "  /clear          Clear session context\n"
        "  /bye            Exit\n"
        "  /?, /help       Help for a command\n"
        "  /? shortcuts    Help for keyboard shortcuts\n"
        "\n"
        'Use """ to begin a multi-line message.\n'
    )
    if multimodal:
        text += "Use /path/to/file to include .jpg, .png, or .webp images.\n"
    return text + "\n"


_USAGE_SET = (
    "Available Commands:\n"
    "  /set parameter ...     Set a parameter\n"
    "  /set system <string>   Set system message\n"
    "  /set history           Enable history\n"
    "  /set nohistory         Disable history\n"
    "  /set wordwrap          Enable wordwrap\n"
    "  /set nowordwrap        Disable wordwrap\n"
    "  /set format json       Enable JSON mode\n"
    "  /set noformat          Disable formatting\n"
    "  /set verbose           Show LLM stats\n"
    "  /set quiet             Disable LLM stats\n"
    "  /set think             Enable thinking\n"
    "  /set nothink           Disable thinking\n"
    "\n"
)

_USAGE_SHORTCUTS = (
    "Available keyboard shortcuts:\n"
    "  Ctrl + a            Move to the beginning of the line (Home)\n"
    "  Ctrl + e            Move to the end of the line (End)\n"
    "   Alt + b            Move back (left) one word\n"
    "   Alt + f            Move forward (right) one word\n"
    "  Ctrl + k            Delete the sentence after the cursor\n"
    "  Ctrl + u            Delete the sentence before the cursor\n"
    "  Ctrl + w            Delete the word before the cursor\n"
    "\n"
    "  Ctrl + l            Clear the screen\n"
    "  Ctrl + g            Open default editor to compose a prompt\n"
    "  Ctrl + c            Stop the model from responding\n"
    "  Ctrl + d            Exit ollamapy (/bye)\n"
    "\n"
)

_USAGE_SHOW = (
    "Available Commands:\n"
    "  /show info         Show details for this model\n"
    "  /show license      Show model license\n"
    "  /show modelfile    Show Modelfile for this model\n"
    "  /show parameters   Show parameters for this model\n"
    "  /show system       Show system message\n"
    "  /show template     Show prompt template\n"
    "\n"
)

_USAGE_PARAMETERS = (
    "Available Parameters:\n"
    "  /set parameter seed <int>             Random number seed\n"
    "  /set parameter num_predict <int>      Max number of tokens to predict\n"
    "  /set parameter top_k <int>            Pick from top k num of tokens\n"
    "  /set parameter top_p <float>          Pick token based on sum of probabilities\n"
    "  /set parameter min_p <float>          Pick token based on top token probability * min_p\n"
    "  /set parameter num_ctx <int>          Set the context size\n"
    "  /set parameter temperature <float>    Set creativity level\n"
    "  /set parameter repeat_penalty <float> How strongly to penalize repetitions\n"
    "  /set parameter repeat_last_n <int>    Set how far back to look for repetitions\n"
    "  /set parameter num_gpu <int>          The number of layers to send to the GPU\n"
    "  /set parameter stop <string> <string> ...   Set the stop parameters\n"
    "\n"
)


def _err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


# --- images in prompts -------------------------------------------------------------------------

# ASCII: Go's ``\S`` and ``\b`` know only ASCII spaces and word characters, so "/a.pngé" is a path.
_FILE_PATTERN = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b", re.ASCII)
_UNESCAPES = [
    ("\\ ", " "), ("\\(", "("), ("\\)", ")"), ("\\[", "["), ("\\]", "]"), ("\\{", "{"), ("\\}", "}"),
    ("\\$", "$"), ("\\&", "&"), ("\\;", ";"), ("\\'", "'"), ("\\\\", "\\"), ("\\*", "*"), ("\\?", "?"),
    ("\\~", "~"), ("'\\''", "'"),
]


def _normalize_file_path(path: str) -> str:
    """Undo shell escapes in a dragged-in path (``\\ `` for a space, ``'\\''`` …), in one pass."""
    out, i = [], 0
    while i < len(path):
        for escaped, plain in _UNESCAPES:
            if path.startswith(escaped, i):
                out.append(plain)
                i += len(escaped)
                break
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def _image_type(head: bytes) -> str:
    """The image type of a file's first bytes, as Go's ``http.DetectContentType`` names it."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:14] == b"WEBPVP":
        return "image/webp"
    return "application/octet-stream"


def _read_image(path: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(512)
        kind = _image_type(head)
        if kind == "application/octet-stream":
            raise OSError(f"invalid image type: {kind}")
        if os.fstat(f.fileno()).st_size > _MAX_IMAGE_BYTES:
            raise OSError("file size exceeds maximum limit (100MB)")
        return head + f.read()


def extract_file_data(text: str) -> tuple[str, list[str]]:
    """Pull image paths out of a prompt for a vision model: each existing ``.jpg``,
    ``.jpeg``, ``.png`` or ``.webp`` path is read, attached (base64) and removed from
    the text. Paths that do not exist stay in the text."""
    images: list[str] = []
    for found in _FILE_PATTERN.findall(text):
        path = _normalize_file_path(found)
        try:
            data = _read_image(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            _err(f"Couldn't process image: {go_quote(str(err))}\n")
            raise
        _err(f"Added image '{path}'\n")
        text = text.replace(f"'{path}'", "").replace(f"'{found}'", "").replace(found, "")
        images.append(encode_image(data))
    return text.strip(), images


# --- the session -----------------------------------------------------------------------------


def new_create_request(name: str, opts: RunOptions) -> dict[str, Any]:
    """``/save``'s ``/api/create`` request: the session's model (or the model it was made
    from) with the session's system message, parameters and messages."""
    parent = opts.parent_model if ModelName.parse(opts.parent_model).is_valid() else ""
    request: dict[str, Any] = {"model": name, "from": parent or opts.model}
    if opts.system:
        request["system"] = opts.system
    if opts.options:
        request["parameters"] = opts.options
    if opts.messages:
        request["messages"] = opts.messages
    return request


def _set_parameter(opts: RunOptions, name: str, values: list[str]) -> None:
    """``/set parameter NAME VALUE…``, typed as Ollama's ``api.FormatParams`` types them."""
    try:
        value = parse_parameter(name, values[0])
    except InvalidRequest as err:
        print(f"Couldn't set parameter: {go_quote(str(err))}")
        return
    if isinstance(value, list):
        value = list(values)
    print(f"Set parameter '{name}' to '{', '.join(values)}'")
    opts.options[name] = value


class _Multiline(enum.Enum):
    NONE = enum.auto()
    PROMPT = enum.auto()
    SYSTEM = enum.auto()


class _Session:
    """One REPL: the options it edits and the state of a message being typed."""

    def __init__(self, client: Client, opts: RunOptions, reader: LineReader, think_explicit: bool) -> None:
        self.client = client
        self.opts = opts
        self.reader = reader
        self.think_explicit = think_explicit
        self.text = ""  # the message being assembled (Ollama's strings.Builder)
        self.multiline = _Multiline.NONE
        self.continuation = False

    async def run(self) -> None:
        while True:
            try:
                line = await self.reader.read(self.continuation)
            except EOFError:  # the editor has already ended the line, as Ollama's newline does
                return
            except KeyboardInterrupt:
                print("Use Ctrl + d or /bye to exit.")
                self.continuation = False
                self.multiline = _Multiline.NONE
                self.text = ""
                continue
            if await self.handle(line):
                return

    async def handle(self, line: str) -> bool:
        """Act on one line; True to leave the REPL."""
        opts = self.opts
        if self.multiline is not _Multiline.NONE:
            before, closed = _cut_suffix(line, _TRIPLE)
            self.text += before
            if not closed:
                self.text += "\n"
                self.continuation = True
                return False
            if self.multiline is _Multiline.SYSTEM:
                opts.system = self.text
                opts.messages.append({"role": "system", "content": opts.system})
                print("Set system message.")
                self.text = ""
            self.multiline = _Multiline.NONE
            self.continuation = False
        elif line.startswith(_TRIPLE):
            rest, closed = _cut_suffix(line[len(_TRIPLE):], _TRIPLE)
            self.text += rest
            if not closed:
                self.text += "\n"
                self.multiline = _Multiline.PROMPT
                self.continuation = True
        elif line.startswith("/list"):
            resp = await self.client.list()
            prefix = line.split()[1:]
            sys.stdout.write(format_list(resp.get("models") or [], prefix[0] if prefix else None))
        elif line.startswith("/load"):
            await self._load(line.split())
            return False
        elif line.startswith("/save"):
            await self._save(line.split())
            return False
        elif line.startswith("/clear"):
            opts.messages = [{"role": "system", "content": opts.system}] if opts.system else []
            print("Cleared session context")
            return False
        elif line.startswith("/set"):
            await self._set(line.split())
            return False
        elif line.startswith("/show"):
            await self._show(line.split())
        elif line.startswith(("/help", "/?")):
            _help(line.split(), opts.multimodal)
        elif line.startswith(("/exit", "/bye")):
            return True
        elif line.startswith("/"):
            first = line.split()[0]
            is_file = opts.multimodal and any(name.startswith(first) for name in _FILE_PATTERN.findall(line))
            if not is_file:
                print(f"Unknown command '{first}'. Type /? for help")
                return False
            self.text += line
        else:
            self.text += line

        if self.text and self.multiline is _Multiline.NONE:
            await self._send()
        return False

    async def _send(self) -> None:
        message: dict[str, Any] = {"role": "user", "content": self.text}
        if self.opts.multimodal:
            message["content"], images = extract_file_data(self.text)
            if images:
                message["images"] = images
        self.opts.messages.append(message)
        try:
            reply = await chat_turn(self.client, self.opts)
        except StatusError as err:
            if "does not support thinking" not in str(err) and "invalid think value" not in str(err):
                raise
            print(f"error: {err}")
            self.text = ""
            return
        if reply is not None:
            self.opts.messages.append(reply)
        self.text = ""

    async def _load(self, args: list[str]) -> None:
        if len(args) != 2:
            print("Usage:\n  /load <modelname>")
            return
        original = self.opts.copy()
        self.opts.model = args[1]
        self.opts.messages = []
        print(f"Loading model '{self.opts.model}'")
        try:
            info = await self.client.show(self.opts.model)
            self.opts.think = infer_think(info.get("capabilities"), self.opts, self.think_explicit)
            # Unlike Ollama's REPL, which keeps the first model's answer, image paths are
            # attached exactly when the model now loaded sees images.
            apply_show_response(self.opts, info)
            await load_model(self.client, self.opts)
        except StatusError as err:
            if is_not_found(err):
                print(f"Couldn't find model '{self.opts.model}'")
                self.opts = original
                return
            if "does not support thinking" in str(err):
                print(f"error: {err}")
                return
            raise

    async def _save(self, args: list[str]) -> None:
        if len(args) != 2:
            print("Usage:\n  /save <modelname>")
            return
        try:
            async for _ in self.client.create(new_create_request(args[1], self.opts)):
                pass
        except StatusError as err:
            if "invalid model name" in str(err):
                print(f"error: The model name '{args[1]}' is invalid")
                return
            raise
        print(f"Created new model '{args[1]}'")

    async def _set(self, args: list[str]) -> None:
        opts = self.opts
        if len(args) < 2:
            _err(_USAGE_SET)
            return
        match args[1]:
            case "history":
                self.reader.history.enabled = True
            case "nohistory":
                self.reader.history.enabled = False
            case "wordwrap":
                opts.word_wrap = True
                print("Set 'wordwrap' mode.")
            case "nowordwrap":
                opts.word_wrap = False
                print("Set 'nowordwrap' mode.")
            case "verbose":
                opts.verbose = True
                print("Set 'verbose' mode.")
            case "quiet":
                opts.verbose = False
                print("Set 'quiet' mode.")
            case "think":
                level = args[2] if len(args) > 2 else ""
                opts.think = level or True
                self.think_explicit = True
                await self._warn_unless_thinking()
                print(f"Set 'think' mode to '{level}'." if level else "Set 'think' mode.")
            case "nothink":
                opts.think = False
                self.think_explicit = True
                await self._warn_unless_thinking()
                print("Set 'nothink' mode.")
            case "format":
                if len(args) < 3 or args[2] != "json":
                    print("Invalid or missing format. For 'json' mode use '/set format json'")
                else:
                    opts.format = args[2]
                    print(f"Set format to '{args[2]}' mode.")
            case "noformat":
                opts.format = ""
                print("Disabled format.")
            case "parameter":
                if len(args) < 4:
                    _err(_USAGE_PARAMETERS)
                    return
                _set_parameter(opts, args[2], args[3:])
            case "system":
                self._set_system(args)
            case other:
                print(f"Unknown command '/set {other}'. Type /? for help")

    async def _warn_unless_thinking(self) -> None:
        """Ollama's ``ensureThinkingSupport``: a warning, not an error, for models that do not think."""
        try:
            info = await self.client.show(self.opts.model)
        except ClientError:
            return
        if "thinking" not in (info.get("capabilities") or []):
            _err(f"warning: model {go_quote(self.opts.model)} does not support thinking output\n")

    def _set_system(self, args: list[str]) -> None:
        if len(args) < 3:
            _err(_USAGE_SET)
            return
        text = " ".join(args[2:])
        if text.startswith(_TRIPLE):
            text, closed = _cut_suffix(text[len(_TRIPLE):], _TRIPLE)
            if not closed:
                # Ollama joins the next line straight on; a newline keeps the words apart.
                self.text += text + "\n"
                self.multiline = _Multiline.SYSTEM
                self.continuation = True
                return
        self.text += text
        opts = self.opts
        opts.system = self.text
        message = {"role": "system", "content": self.text}
        if opts.messages and opts.messages[-1]["role"] == "system":
            opts.messages[-1] = message
        else:
            opts.messages.append(message)
        print("Set system message.")
        self.text = ""

    async def _show(self, args: list[str]) -> None:
        opts = self.opts
        if len(args) < 2:
            _err(_USAGE_SHOW)
            return
        try:
            resp = await self.client.show(opts.model, system=opts.system, options=opts.options)
        except StatusError:
            print("error: couldn't get model")
            raise
        match args[1]:
            case "info":
                _err(format_show_info(resp))
            case "license":
                license_text = resp.get("license") or ""
                if isinstance(license_text, list):
                    license_text = "\n".join(map(str, license_text))
                print(license_text or "No license was specified for this model.")
            case "modelfile":
                print(resp.get("modelfile") or "")
            case "parameters":
                self._show_parameters(str(resp.get("parameters") or ""))
            case "system":
                system = opts.system or str(resp.get("system") or "")
                print(system + "\n" if system else "No system message was specified for this model.")
            case "template":
                print(resp.get("template") or "No prompt template was specified for this model.")
            case other:
                print(f"Unknown command '/show {other}'. Type /? for help")

    def _show_parameters(self, parameters: str) -> None:
        print("Model defined parameters:")
        if not parameters:
            print("  No additional parameters were specified for this model.")
        else:
            for line in parameters.split("\n"):
                print(f"  {line}")
        print()
        if self.opts.options:
            print("User defined parameters:")
            for key, value in self.opts.options.items():
                print(f"  {key:<30} {format_parameter_value(value)}")
            print()


def _cut_suffix(text: str, suffix: str) -> tuple[str, bool]:
    """Go's ``strings.CutSuffix``."""
    return (text[: -len(suffix)], True) if text.endswith(suffix) else (text, False)


def _help(args: list[str], multimodal: bool) -> None:
    if len(args) < 2:
        _err(_usage(multimodal))
    elif args[1] in ("set", "/set"):
        _err(_USAGE_SET)
    elif args[1] in ("show", "/show"):
        _err(_USAGE_SHOW)
    elif args[1] in ("shortcut", "shortcuts"):
        _err(_USAGE_SHORTCUTS)


async def repl(client: Client, opts: RunOptions, think_explicit: bool, reader: LineReader | None = None) -> None:
    """Chat with ``opts.model`` until ``/bye`` or Ctrl+D (the model is already loaded)."""
    if reader is None:
        reader = LineReader(OllamaHistory(envconfig.home_dir() / "history", enabled=not envconfig.nohistory()))
    await _Session(client, opts, reader, think_explicit).run()
