"""The Modelfile language: parse, format back, and turn into a create request.

The parser is a port of the state machine in Ollama's ``parser/parser.go``, quirks
included, so a Modelfile means the same thing (and fails with the same message) here as
under Ollama. In short:

* Input is UTF-8, or UTF-16 when it starts with a byte-order mark.
* A line is ``COMMAND value``; commands are case-insensitive: FROM, PARAMETER, TEMPLATE,
  SYSTEM, ADAPTER, LICENSE, MESSAGE, REQUIRES, RENDERER, PARSER, DRAFT. ``#`` starts a
  comment where a command could start.
* ``PARAMETER name value`` keeps the name's case; ``MESSAGE role text`` takes the roles
  system, user and assistant and is stored as ``role: text``.
* A value is the rest of the line, trimmed. ``"…"`` keeps surrounding spaces and may span
  lines; ``\"\"\"…\"\"\"`` may also contain ``"``. A value only ends at a line break where its
  quotes are balanced, so an unterminated quote runs to the end: ``unexpected EOF``.
* Runes that are not printable (other than spaces and line breaks inside a value) are
  dropped.

Errors are :class:`~ollamapy.errors.ParserError` with Ollama's text; those Ollama reports
with a line number say ``(line N): …``. Every error found at a line carries it in
``line``, including ``unexpected EOF``, whose text names none.
"""

from __future__ import annotations

import codecs
import enum
import logging
import os
import pwd
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamapy.api.options import (
    DEPRECATED_PARAMETERS,
    format_parameter_value,
    parse_parameter,
)
from ollamapy.errors import InvalidRequest, ParserError

__all__ = [
    "Command",
    "Modelfile",
    "ParseState",
    "format_show_modelfile",
    "parse",
    "resolve_from_path",
    "to_create_request",
]

log = logging.getLogger(__name__)

_COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter", "message", "requires")
_TEXT_COMMANDS = frozenset({"license", "template", "system", "adapter", "renderer", "parser", "requires", "draft"})
_ROLES = frozenset({"system", "user", "assistant"})
_SPACES = " \t"
_NEWLINES = "\r\n"
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PARAMETER_CHARS = _ASCII_LETTERS | frozenset("0123456789_")

_ERR_COMMAND = "command must be one of " + ", ".join(f'"{c}"' for c in _COMMANDS[:-1]) + f', or "{_COMMANDS[-1]}"'
_ERR_ROLE = 'message role must be one of "system", "user", or "assistant"'
_ERR_EOF = "unexpected EOF"


class ParseState(enum.Enum):
    """Where the parser is within a line."""

    NIL = enum.auto()
    """Between commands: skipping blank space, waiting for a command or a comment."""
    NAME = enum.auto()
    """Reading the command keyword."""
    VALUE = enum.auto()
    """Reading the value, up to a line break where its quotes balance."""
    PARAMETER = enum.auto()
    """Reading a PARAMETER's name."""
    MESSAGE = enum.auto()
    """Reading a MESSAGE's role."""
    COMMENT = enum.auto()
    """Skipping a comment to the end of the line."""


class _EndOfInput(Exception):
    """A PARAMETER name or MESSAGE role that ended in something other than a space."""


class _BadCommand(Exception):
    """A keyword that ended in something other than a space."""


@dataclass(frozen=True)
class Command:
    """One Modelfile line: ``name`` is ``model`` for FROM, the lower-cased keyword for
    other commands, the parameter name for PARAMETER; a MESSAGE's args are ``role: text``."""

    name: str
    args: str

    def __str__(self) -> str:
        if self.name == "model":
            return f"FROM {_quote(self.args)}"
        if self.name in _TEXT_COMMANDS:
            return f"{self.name.upper()} {_quote(self.args)}"
        if self.name == "message":
            role, _, content = self.args.partition(": ")
            return f"MESSAGE {role} {_quote(content)}"
        return f"PARAMETER {self.name} {_quote(self.args)}"


@dataclass
class Modelfile:
    """A parsed Modelfile; ``str()`` gives Modelfile text that parses back to it."""

    commands: list[Command] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(f"{command}\n" for command in self.commands)


def _quote(value: str) -> str:
    """Quote a value so it parses back unchanged.

    Ollama quotes a value with ``"…"`` when it contains a newline or starts or ends with a
    space, and with ``\"\"\"…\"\"\"`` when it also contains ``"``. That loses values that
    start with ``"``, contain a carriage return or start/end with a tab, so those are
    quoted too; everything Ollama itself writes comes out the same.
    """
    needs_quotes = (
        "\n" in value
        or "\r" in value
        or value[:1] in (" ", "\t", '"')
        or value[-1:] in (" ", "\t")
    )
    if not needs_quotes:
        return value
    return f'"""{value}"""' if '"' in value else f'"{value}"'


def _unquote(value: str) -> str | None:
    """The value inside its quotes, or None while a quote is still open."""
    if value.startswith('"""'):
        return value[3:-3] if len(value) >= 6 and value.endswith('"""') else None
    if value.startswith('"'):
        return value[1:-1] if len(value) >= 2 and value.endswith('"') else None
    return value


def _transition(char: str, state: ParseState) -> tuple[ParseState, bool]:
    """The state after ``char`` and whether ``char`` belongs in the buffer (Go's
    ``parseRuneForState``)."""
    match state:
        case ParseState.NIL:
            if char == "#":
                return ParseState.COMMENT, False
            if char in _SPACES or char in _NEWLINES:
                return ParseState.NIL, False
            return ParseState.NAME, True
        case ParseState.NAME:
            if char in _ASCII_LETTERS:
                return ParseState.NAME, True
            if char in _SPACES:
                return ParseState.VALUE, False
            raise _BadCommand
        case ParseState.VALUE:
            if char in _NEWLINES or char in _SPACES:
                return ParseState.NIL, True
            return ParseState.VALUE, True
        case ParseState.PARAMETER | ParseState.MESSAGE:
            allowed = _PARAMETER_CHARS if state is ParseState.PARAMETER else _ASCII_LETTERS
            if char in allowed:
                return state, True
            if char in _SPACES:
                return ParseState.VALUE, False
            raise _EndOfInput
        case ParseState.COMMENT:
            return (ParseState.NIL if char in _NEWLINES else ParseState.COMMENT), False


def _decode(source: str | bytes) -> str:
    """Text from UTF-8 or BOM-marked UTF-16 bytes; invalid bytes become U+FFFD."""
    if isinstance(source, str):
        return source.removeprefix("\ufeff")
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if source.startswith(bom):
            return source[len(bom) :].decode(encoding, errors="replace")
    return source.decode("utf-8", errors="replace")


def _unexpected_eof(line: int, buffer: str | None = None) -> ParserError:
    """Ollama's ``unexpected EOF`` error, whose text names no line; ``.line`` still does."""
    error = ParserError(_ERR_EOF if buffer is None else f"{_ERR_EOF}: {buffer}")
    error.line = line
    return error


def parse(source: str | bytes) -> Modelfile:
    """Parse Modelfile text (or its bytes, UTF-8 or UTF-16 with BOM), as Ollama's
    ``parser.ParseFile`` does. Raises :class:`ParserError`."""
    commands: list[Command] = []
    name = ""
    role = ""
    state = ParseState.NIL
    line = 1
    buffer: list[str] = []
    for char in _decode(source):
        if char in _NEWLINES:
            line += 1
        try:
            following, keep = _transition(char, state)
        except _EndOfInput:
            raise _unexpected_eof(line, "".join(buffer)) from None
        except _BadCommand:
            raise ParserError(_ERR_COMMAND, line) from None

        if following is not state:
            text = "".join(buffer)
            if state is ParseState.NAME:
                keyword = text.lower()
                if keyword not in _COMMANDS:
                    raise ParserError(_ERR_COMMAND, line)
                if keyword == "from":
                    name = "model"
                elif keyword == "parameter":
                    following = ParseState.PARAMETER  # the name comes next
                else:
                    name = keyword
                    if keyword == "message":
                        following = ParseState.MESSAGE  # the role comes next
            elif state is ParseState.PARAMETER:
                name = text
            elif state is ParseState.MESSAGE:
                if text not in _ROLES:
                    raise ParserError(_ERR_ROLE, line)
                role = text
            elif state is ParseState.VALUE:
                value = _unquote(text.strip(_SPACES + _NEWLINES))
                if value is None or char in _SPACES:
                    buffer.append(char)  # spaces and line breaks inside a value stay
                    continue
                if role:
                    value, role = f"{role}: {value}", ""
                commands.append(Command(name, value))
            buffer.clear()
            state = following

        if keep and char.isprintable():
            buffer.append(char)

    if state is ParseState.VALUE:
        value = _unquote("".join(buffer).strip(_SPACES + _NEWLINES))
        if value is None:
            raise _unexpected_eof(line)
        commands.append(Command(name, f"{role}: {value}" if role else value))
    elif state not in (ParseState.NIL, ParseState.COMMENT):
        raise _unexpected_eof(line)

    if not any(command.name == "model" for command in commands):
        raise ParserError("no FROM line")
    return Modelfile(commands)


def format_show_modelfile(
    *,
    short_name: str,
    model_path: str,
    adapter_paths: Sequence[str] = (),
    draft_path: str | None = None,
    projector_paths: Sequence[str] = (),
    template: str | None = None,
    system: str = "",
    renderer: str = "",
    parser: str = "",
    parameters: Mapping[str, Any] | None = None,
    licenses: Sequence[str] = (),
    messages: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The ``modelfile`` of ``/api/show`` (``ollama show --modelfile``), as Ollama writes it.

    Paths are blob paths. Pass ``template=None`` only when the model has no template at
    all; Ollama shows its default ``{{ .Prompt }}`` for models without a template layer.
    Parameters come sorted by name (Ollama's order is a Go map's, i.e. random), one
    ``PARAMETER`` line per list element.
    """
    commands = [Command("model", model_path)]
    commands += [Command("adapter", path) for path in adapter_paths]
    if draft_path:
        commands.append(Command("draft", draft_path))
    commands += [Command("model", path) for path in projector_paths]
    if template is not None:
        commands.append(Command("template", template))
    for name, value in (("system", system), ("renderer", renderer), ("parser", parser)):
        if value:
            commands.append(Command(name, value))
    for key, value in sorted((parameters or {}).items()):
        for item in value if isinstance(value, list) else [value]:
            commands.append(Command(key, format_parameter_value(item)))
    commands += [Command("license", text) for text in licenses]
    commands += [Command("message", f"{m.get('role', '')}: {m.get('content', '')}") for m in messages]
    return (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {short_name}\n\n"
        f"{Modelfile(commands)}"
    )


def _expand_path(value: str, modelfile_dir: Path) -> Path:
    """Absolute path for a FROM/ADAPTER/DRAFT value: ``~``, ``~user`` or relative to the
    Modelfile's directory (Ollama's ``expandPath``)."""
    if value.startswith(("/", "\\")) or os.path.isabs(value):
        expanded = value
    elif value == "~" or value.startswith("~/"):
        expanded = str(Path.home()) + value[1:]
    elif value.startswith("~"):
        user, _, rest = value[1:].partition("/")
        try:
            home = pwd.getpwnam(user).pw_dir
        except KeyError:
            raise InvalidRequest(f"failed to find user '{user}': user: unknown user {user}") from None
        expanded = os.path.join(home, rest)
    else:
        expanded = os.path.join(modelfile_dir, value)
    return Path(os.path.abspath(expanded))


def resolve_from_path(value: str, modelfile_dir: Path) -> Path | None:
    """The local file or directory a FROM value names, or None when nothing exists there
    (the value is then a model name). ``~`` and ``~user`` expand; relative paths are
    relative to ``modelfile_dir``."""
    path = _expand_path(value, modelfile_dir)
    return path if path.exists() else None


_NOT_GGUF_WEIGHTS = ("model*.safetensors", "consolidated*.safetensors", "pytorch_model*.bin", "consolidated*.pth")
_GGUF_MAGIC = b"GGUF"


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(_GGUF_MAGIC)) == _GGUF_MAGIC


def _weight_files(path: Path) -> list[Path]:
    """The files to upload for a FROM/ADAPTER/DRAFT path: the file itself, or the GGUF
    files of a directory. Safetensors and PyTorch weights cannot be converted here."""
    unsupported = InvalidRequest("safetensors import is not supported yet")
    if not path.is_dir():
        if path.name.endswith(".safetensors"):
            raise unsupported
        return [path]
    if any(any(path.glob(pattern)) for pattern in _NOT_GGUF_WEIGHTS):
        raise unsupported
    found = sorted(path.glob("*.gguf")) or sorted(p for p in path.glob("*.bin") if _is_gguf(p))
    if not found:
        raise InvalidRequest("no Modelfile or safetensors files found")
    root = path.resolve()
    for file in found:
        if not file.resolve().is_relative_to(root):
            raise InvalidRequest(f"insecure path: {os.path.relpath(file.resolve(), root)}")
    return found


def _local_weights(value: str, modelfile_dir: Path) -> tuple[Path, list[Path]]:
    """An ADAPTER/DRAFT path, which must exist, and its files."""
    path = _expand_path(value, modelfile_dir)
    if not path.exists():
        raise InvalidRequest(f"stat {path}: no such file or directory")
    return path, _weight_files(path)


def _reject_same_path(path: Path, others: list[Path]) -> None:
    if any(path.resolve() == other.resolve() for other in others):
        raise InvalidRequest(f"DRAFT must not reference the same local path as FROM: {path}")


_SEMVER = re.compile(
    r"v(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*)"
    r"(?:\.(?:0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)
"""``golang.org/x/mod/semver.IsValid``: ``v1``, ``v1.2``, ``v1.2.3-pre+build``."""


def to_create_request(
    modelfile: Modelfile,
    modelfile_dir: Path,
    *,
    warn: Callable[[str], None] = log.warning,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The JSON ``/api/create`` body Ollama's CLI sends for a Modelfile, and the local
    files it must upload first.

    A FROM that names an existing file or directory becomes ``files``; anything else is a
    model name in ``from``. ADAPTER and DRAFT paths must exist (the last ADAPTER wins, as
    in Ollama). In ``files``, ``adapters`` and ``draft_files`` every value is ``""``: the
    caller uploads ``local_files[name]`` and fills in its ``sha256:…`` digest. Parameters
    are typed, with ``stop`` lines accumulated; a deprecated parameter is skipped with
    ``warn("warning: parameter X is deprecated")``. Fields Ollama would omit as empty are
    left out. Raises :class:`InvalidRequest` (bad parameter, missing file, safetensors).
    """
    request: dict[str, Any] = {}
    files: dict[str, Path] = {}
    adapters: dict[str, Path] = {}
    draft_files: dict[str, Path] = {}
    model_paths: list[Path] = []
    draft_paths: list[Path] = []
    licenses: list[str] = []
    messages: list[dict[str, str]] = []
    parameters: dict[str, Any] = {}

    for command in modelfile.commands:
        name, args = command.name, command.args
        if name == "model":
            path = resolve_from_path(args, modelfile_dir)
            if path is None:
                request["from"] = args
                continue
            found = _weight_files(path)
            _reject_same_path(path, draft_paths)
            model_paths.append(path)
            files.update((file.name, file) for file in found)
        elif name == "draft":
            path, found = _local_weights(args, modelfile_dir)
            _reject_same_path(path, model_paths)
            draft_paths.append(path)
            draft_files.update((file.name, file) for file in found)
        elif name == "adapter":
            adapters = {file.name: file for file in _local_weights(args, modelfile_dir)[1]}
        elif name in ("template", "system", "renderer", "parser"):
            request[name] = args
        elif name == "license":
            licenses.append(args)
        elif name == "requires":
            version = args if args.startswith("v") else "v" + args
            if not _SEMVER.fullmatch(version):
                raise InvalidRequest("requires must be a valid semver (e.g. 0.14.0)")
            request["requires"] = version.removeprefix("v")
        elif name == "message":
            role, _, content = args.partition(": ")
            messages.append({"role": role, "content": content})
        elif name in DEPRECATED_PARAMETERS:
            warn(f"warning: parameter {name} is deprecated")
        else:
            value = parse_parameter(name, args)
            previous = parameters.get(name)
            parameters[name] = previous + value if isinstance(previous, list) else value

    local_files: dict[str, Path] = {}
    for key, mapping in (("files", files), ("adapters", adapters), ("draft_files", draft_files)):
        if not mapping:
            continue
        request[key] = dict.fromkeys(mapping, "")
        for filename, path in mapping.items():
            if local_files.setdefault(filename, path) != path:
                raise InvalidRequest(f'two different files are named "{filename}"')
    for key, value in (("license", licenses), ("messages", messages), ("parameters", parameters)):
        if value:
            request[key] = value
    request = {key: value for key, value in request.items() if value != ""}
    return request, local_files
