"""Human-facing formatting for the CLI, ported from Ollama so the output matches byte for byte.

Ollama's CLI formats sizes, ages and counts with its ``format`` package (``HumanBytes``,
``HumanTime``, ``HumanNumber``) and lays tables out with ``olekukonko/tablewriter`` v0.0.5
(no borders, left aligned, cells padded to the column width and followed by the table
padding, long cells wrapped at 30 columns by a minimum-raggedness word wrap). Scripts and
people compare ``ollamapy list`` / ``ps`` / ``show`` output with Ollama's, so these
functions reproduce those rules exactly, trailing spaces included.

The rest is what ``run`` and the transfer verbs draw: :class:`ResponseWriter` streams a
model's answer with Ollama's word wrap, :func:`format_metrics` is the ``--verbose`` timing
block, and :class:`ProgressView` is Ollama's progress package (spinners and transfer bars
with speed and time left) for create, pull and push.
"""

from __future__ import annotations

import io
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Self, TypeGuard

from rich.cells import cell_len, get_character_cell_size

from ollamapy.golang import format_float, format_go_duration, format_number, marshal

__all__ = [
    "COLOR_BOLD",
    "COLOR_DEFAULT",
    "COLOR_GREY",
    "ProgressView",
    "ResponseWriter",
    "format_embedding",
    "format_list",
    "format_metrics",
    "format_ps",
    "format_show_info",
    "format_transfer_eta",
    "human_bytes",
    "human_duration",
    "human_number",
    "human_time",
    "parse_time",
    "processor_label",
    "render_table",
    "render_tool_calls",
    "thinking_closing_text",
    "thinking_opening_text",
]

COLOR_GREY = "\x1b[38;5;245m"
COLOR_BOLD = "\x1b[1m"
COLOR_DEFAULT = "\x1b[0m"

_KB, _MB, _GB, _TB = 1000, 1000**2, 1000**3, 1000**4

_MAX_ROW_WIDTH = 30
"""tablewriter's default column width before a cell is word-wrapped."""

_WRAP_PENALTY = 100_000
_MAX_INT32 = 2**31 - 1


def _go_trunc_div(a: int, b: int) -> int:
    """Go's integer division, which truncates toward zero (Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def human_bytes(b: int) -> str:
    """Ollama's ``format.HumanBytes``: decimal units, ``4.7 GB``, ``291 MB``, ``999 B``."""
    if b >= _TB:
        value, unit = b / _TB, "TB"
    elif b >= _GB:
        value, unit = b / _GB, "GB"
    elif b >= _MB:
        value, unit = b / _MB, "MB"
    elif b >= _KB:
        value, unit = b / _KB, "KB"
    else:
        return f"{b} B"
    if value >= 10 or value == math.trunc(value):
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


def human_number(n: int) -> str:
    """Ollama's ``format.HumanNumber``: ``268.10M``, ``8B``, ``2.8B``, ``131K``."""
    if n >= 1_000_000_000:
        value = n / 1_000_000_000
        return f"{value:.0f}B" if value == math.floor(value) else f"{value:.1f}B"
    if n >= 1_000_000:
        value = n / 1_000_000
        return f"{value:.0f}M" if value == math.floor(value) else f"{value:.2f}M"
    if n >= 1000:
        return f"{n / 1000:.0f}K"
    return str(n)


def _go_round(x: float) -> int:
    """Go's ``math.Round``: halves away from zero (Python's ``round`` goes to even)."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def human_duration(d: timedelta) -> str:
    """Ollama's ``humanDuration``: ``Less than a second``, ``About a minute``, ``2 weeks``."""
    total = d.total_seconds()
    seconds = int(total)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(total / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = _go_round(total / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(total / 3600) // 24 // 365} years"


def human_time(t: datetime | None, zero_value: str, now: datetime | None = None) -> str:
    """Ollama's ``format.HumanTime``: ``2 weeks ago``, ``4 minutes from now``, ``Forever``.

    ``t`` is None for Go's zero time (see ``parse_time``), which prints ``zero_value``;
    ``now`` is injectable so tests do not depend on the clock.
    """
    if t is None:
        return zero_value
    delta = (now or datetime.now(UTC)) - t
    if _go_trunc_div(int(delta.total_seconds() / 3600), 24 * 365) < -20:
        return "Forever"
    if delta < timedelta(0):
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API; None for an absent value or Go's zero time."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return None if parsed == _GO_ZERO_TIME else parsed


def _wrap_words(words: list[str], limit: int) -> list[list[str]]:
    """tablewriter's ``WrapWords``: minimum raggedness (squared slack, penalty past the limit)."""
    n = len(words)
    prefix = [0]
    for word in words:
        prefix.append(prefix[-1] + cell_len(word))

    def length(i: int, j: int) -> int:  # width of words[i..j] joined by single spaces
        return prefix[j + 1] - prefix[i] + (j - i)

    breaks = [0] * n
    cost = [_MAX_INT32] * n
    for i in range(n - 1, -1, -1):
        if length(i, n - 1) <= limit:
            cost[i], breaks[i] = 0, n
            continue
        for j in range(i + 1, n):
            line = length(i, j - 1)
            if line > limit and (line - limit) ** 2 + _WRAP_PENALTY >= cost[i]:
                break  # lines only get longer from here: no later break can cost less
            c = (limit - line) ** 2 + cost[j] + (_WRAP_PENALTY if line > limit else 0)
            if c < cost[i]:
                cost[i], breaks[i] = c, j
    lines: list[list[str]] = []
    i = 0
    while i < n:
        end = breaks[i] if breaks[i] > i else n  # a cost overflow leaves no break: keep the rest
        lines.append(words[i:end])
        i = end
    return lines


def _wrap_string(text: str, limit: int) -> list[str]:
    """tablewriter's ``WrapString``: the limit grows to fit the longest single word."""
    words = text.replace("\n", " ").split(" ")
    limit = max([limit, *(cell_len(word) for word in words)])
    return [" ".join(line) for line in _wrap_words(words, limit)]


def _cell_lines(text: str, col_width: int) -> tuple[list[str], int]:
    """tablewriter's ``parseDimension`` with auto-wrap and reflow on: the cell's lines and width."""
    raw = text.split("\n")
    max_width = min(max(cell_len(line) for line in raw), col_width)
    lines = _wrap_string(" ".join(raw), max_width)
    return lines, max(max_width, *(cell_len(line) for line in lines))


def _pad_right(text: str, width: int) -> str:
    return text + " " * max(0, width - cell_len(text))


def render_table(
    rows: Iterable[Sequence[str]],
    header: Sequence[str] | None = None,
    *,
    padding: str = "    ",
    col_width: int = _MAX_ROW_WIDTH,
) -> str:
    """Lay out rows as Ollama's borderless tablewriter does (``SetNoWhiteSpace(true)``).

    Every cell is padded to its column's width and followed by ``padding``; header cells
    likewise except the last, which is followed by one space. Rows may have different
    lengths. Cells wider than ``col_width`` wrap onto extra lines, and the other cells of
    such a row are filled with two spaces on those lines, as tablewriter does.
    """
    widths: dict[int, int] = {}

    def measure(cells: Sequence[str]) -> list[list[str]]:
        parsed = []
        for index, cell in enumerate(cells):
            lines, width = _cell_lines(cell, col_width)
            widths[index] = max(widths.get(index, 0), width)
            parsed.append(lines)
        return parsed

    parsed_header = measure(header) if header else []
    parsed_rows = [measure(row) for row in rows]

    out: list[str] = []
    if parsed_header:
        height = max(len(lines) for lines in parsed_header)
        last = len(widths) - 1
        for x in range(height):
            line = ""
            for y in range(last + 1):
                cell = parsed_header[y][x] if y < len(parsed_header) and x < len(parsed_header[y]) else ""
                line += _pad_right(cell.upper(), widths[y]) + (" " if y == last else padding)
            out.append(line)
    for cells in parsed_rows:
        height = max((len(lines) for lines in cells), default=0)
        filled = [lines + ["  "] * (height - len(lines)) for lines in cells]
        for x in range(height):
            out.append("".join(_pad_right(lines[x], widths[y]) + padding for y, lines in enumerate(filled)))
    return "".join(line + "\n" for line in out)


def format_list(models: Iterable[Mapping[str, Any]], prefix: str | None = None, now: datetime | None = None) -> str:
    """``ollama list``: NAME, ID (12 hex of the manifest digest), SIZE (``-`` for a remote
    model), MODIFIED; ``prefix`` keeps the names that start with it, ignoring case."""
    rows = [
        [
            model.get("name", ""),
            str(model.get("digest", ""))[:12],
            "-" if model.get("remote_model") else human_bytes(int(model.get("size", 0))),
            human_time(parse_time(model.get("modified_at")), "Never", now),
        ]
        for model in models
        if not prefix or str(model.get("name", "")).lower().startswith(prefix.lower())
    ]
    return render_table(rows, ["NAME", "ID", "SIZE", "MODIFIED"])


def processor_label(size: int, size_vram: int) -> str:
    """``ollama ps``'s PROCESSOR: ``100% GPU``, ``100% CPU``, ``48%/52% CPU/GPU`` or ``Unknown``."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = _go_round((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def format_ps(models: Iterable[Mapping[str, Any]], prefix: str | None = None, now: datetime | None = None) -> str:
    """``ollama ps``: NAME, ID, SIZE, PROCESSOR, CONTEXT, UNTIL (``4 minutes from now``,
    ``Forever``, or ``Stopping...`` once the expiry has passed); ``prefix`` keeps the
    models whose name starts with it (case-sensitive, as Ollama's).

    PROCESSOR is the server's own placement label when it sends one (ollamapy's extra
    ``placement`` object), else computed from ``size``/``size_vram`` as Ollama does.
    """
    now = now or datetime.now(UTC)
    rows = []
    for model in models:
        if prefix and not str(model.get("model", "")).startswith(prefix):
            continue
        size, size_vram = int(model.get("size") or 0), int(model.get("size_vram") or 0)
        placement = model.get("placement")
        processor = placement.get("processor") if isinstance(placement, Mapping) else None
        expires = parse_time(model.get("expires_at"))
        until = "Stopping..." if expires is None or expires < now else human_time(expires, "Never", now)
        rows.append(
            [
                str(model.get("name", "")),
                str(model.get("digest", ""))[:12],
                human_bytes(size),
                str(processor or processor_label(size, size_vram)),
                str(int(model.get("context_length") or 0)),
                until,
            ]
        )
    return render_table(rows, ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"])


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _go_value(value: Any) -> str:
    """Go's ``%v`` of a value decoded from JSON into ``any``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return format_float(float(value))
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{_go_value(value[key])}" for key in sorted(value)) + "]"
    return str(value)


def _metadata_value(value: Any) -> str:
    """A ``show -v`` Metadata value; arrays are cut to about 10 columns (``[a b ...+N more]``)."""
    if isinstance(value, bool) or _is_number(value) or isinstance(value, str):
        return _go_value(value)
    if isinstance(value, list):
        shown, total_width = 0, 1
        for index, item in enumerate(value):
            width = cell_len(_go_value(item)) + (2 if index > 0 else 0)
            if total_width + width > 10 and index > 0:
                break
            total_width += width
            shown += 1
        if shown < len(value):
            return _go_value(value[:shown]).removesuffix("]") + f" ...+{len(value) - shown} more]"
        return _go_value(value)
    if value is None:
        return "<nil>"
    return "map[string]interface {}"


def _head(text: str, n: int) -> list[list[str]]:
    """The first ``n`` non-blank lines of a System or License text, then ``...`` if cut."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rows = [["", line] for line in lines[:n]]
    if len(lines) > n:
        rows.append(["", "..."])
    return rows


def format_show_info(resp: Mapping[str, Any], verbose: bool = False) -> str:
    """``ollama show MODEL`` without a field flag: Model, Capabilities, Projector,
    Parameters, Metadata and Tensors (with ``-v``), System and License sections."""
    out: list[str] = []

    def section(title: str, rows: list[list[str]], col_width: int = _MAX_ROW_WIDTH) -> None:
        out.append(f"  {title}\n")
        out.append(render_table(rows, col_width=col_width))
        out.append("\n")

    details: Mapping[str, Any] = resp.get("details") or {}
    model_info: Mapping[str, Any] | None = resp.get("model_info")

    rows: list[list[str]] = []
    if resp.get("remote_host"):
        rows.append(["", "Remote model", str(resp.get("remote_model", ""))])
        rows.append(["", "Remote URL", str(resp["remote_host"])])
    if model_info is not None:
        arch = model_info.get("general.architecture")
        arch = arch if isinstance(arch, str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        params = details.get("parameter_size") or ""
        count = model_info.get("general.parameter_count")
        if not params and _is_number(count):
            params = human_number(int(count))
        if params:
            rows.append(["", "parameters", params])
        for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            value = model_info.get(f"{arch}.{key}")
            if _is_number(value):
                rows.append(["", label, format_float(float(value), "f")])
    else:
        rows.append(["", "architecture", str(details.get("family", ""))])
        rows.append(["", "parameters", str(details.get("parameter_size", ""))])
    rows.append(["", "quantization", str(details.get("quantization_level", ""))])
    if resp.get("requires"):
        rows.append(["", "requires", str(resp["requires"])])
    section("Model", rows)

    if resp.get("capabilities"):
        section("Capabilities", [["", str(capability)] for capability in resp["capabilities"]])

    projector: Mapping[str, Any] | None = resp.get("projector_info")
    if projector is not None:
        rows = []
        arch = projector.get("general.architecture")
        arch = arch if isinstance(arch, str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        if _is_number(projector.get("general.parameter_count")):
            rows.append(["", "parameters", human_number(int(projector["general.parameter_count"]))])
        for suffix, label in (("embedding_length", "embedding length"), ("projection_dim", "dimensions")):
            for modality in ("vision", "audio"):
                value = projector.get(f"{arch}.{modality}.{suffix}")
                if _is_number(value):
                    rows.append(["", label, format_float(float(value), "f")])
                    break
        section("Projector", rows)

    if resp.get("parameters"):
        section("Parameters", [["", *line.split()] for line in str(resp["parameters"]).split("\n") if line])

    if model_info is not None and verbose:
        section("Metadata", [["", key, _metadata_value(model_info[key])] for key in sorted(model_info)])

    if resp.get("tensors") and verbose:
        section(
            "Tensors",
            [
                ["", str(t.get("name", "")), str(t.get("type", "")), _go_value(list(t.get("shape") or []))]
                for t in resp["tensors"]
            ],
        )

    if resp.get("system"):
        section("System", _head(str(resp["system"]), 2), col_width=100)
    if resp.get("license"):
        license_text = resp["license"]
        if isinstance(license_text, list):  # older servers answer a list of license texts
            license_text = "\n".join(map(str, license_text))
        section("License", _head(str(license_text), 2), col_width=100)
    return "".join(out)


# --- run: the streamed answer, thinking, tool calls, timings, embeddings ----------------


class ResponseWriter:
    """Streams a model's answer to ``stream`` with Ollama's word wrap (``displayResponse``).

    Wrapping applies only on a terminal at least 10 columns wide: a line may grow to the
    width minus 5, then the word being written is moved to the next line (the cursor
    backs up over it and clears to the end of the line). A word longer than the width
    minus 10 is not moved but broken where it is. One writer serves one answer.
    """

    def __init__(self, stream: IO[str], word_wrap: bool) -> None:
        self._stream = stream
        self.word_wrap = word_wrap
        self._line_length = 0
        self._word = ""

    def write(self, content: str) -> None:
        """Print the next piece of the answer."""
        width = _terminal_size(self._stream)[0]
        if not (self.word_wrap and width >= 10):
            self._stream.write(content)
            self._word = ""
            self._stream.flush()
            return
        out: list[str] = []
        for char in content:
            char_width = get_character_cell_size(char)
            if self._line_length + 1 > width - 5:
                word_width = cell_len(self._word)
                if word_width > width - 10:
                    # Ollama prints the word again here; it is already on screen.
                    out.append(char)
                    self._word = ""
                    self._line_length = 0
                    continue
                if word_width:
                    out.append(f"\x1b[{word_width}D")
                out.append("\x1b[K\n" + self._word + char)
                self._line_length = word_width + char_width
                continue
            out.append(char)
            self._line_length += char_width
            if char_width >= 2 or char in " \t":
                self._word = ""
            elif char in "\n\r":
                self._line_length = 0
                self._word = ""
            else:
                self._word += char
        self._stream.write("".join(out))
        self._stream.flush()


def thinking_opening_text(plain: bool) -> str:
    """What precedes a thinking model's thoughts: ``Thinking...``, bold grey on a terminal."""
    text = "Thinking...\n"
    return text if plain else COLOR_GREY + COLOR_BOLD + text + COLOR_DEFAULT + COLOR_GREY


def thinking_closing_text(plain: bool) -> str:
    """What follows the thoughts: ``...done thinking.`` and a blank line."""
    text = "...done thinking.\n\n"
    return text if plain else COLOR_GREY + COLOR_BOLD + text + COLOR_DEFAULT


def render_tool_calls(tool_calls: Sequence[Mapping[str, Any]], plain: bool) -> str:
    """The CLI registers no tools, so a tool call is reported as a call to a missing function."""
    explanation, values = ("", "") if plain else (COLOR_GREY + COLOR_BOLD, COLOR_DEFAULT)
    lines = []
    for call in tool_calls:
        function = call.get("function") or {}
        arguments = marshal(function.get("arguments") or {})
        name = str(function.get("name", ""))
        lines.append(
            f"  Model called a non-existent function '{values}{name}{explanation}()' "
            f"with arguments: {values}{arguments}{explanation}"
        )
    out = "\n".join(lines)
    return out if plain else explanation + out + COLOR_DEFAULT


def _go_duration_ns(ns: int) -> str:
    return format_go_duration(ns / 1_000_000_000)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The ``--verbose`` / ``/set verbose`` timing block (Ollama's ``Metrics.Summary``)
    from a final response's nanosecond counters; absent or zero values are left out."""

    def value(key: str) -> int:
        return int(metrics.get(key) or 0)

    lines = []
    if value("total_duration") > 0:
        lines.append(f"total duration:       {_go_duration_ns(value('total_duration'))}")
    if value("load_duration") > 0:
        lines.append(f"load duration:        {_go_duration_ns(value('load_duration'))}")
    if value("prompt_eval_count") > 0:
        lines.append(f"prompt eval count:    {value('prompt_eval_count')} token(s)")
    if value("prompt_eval_duration") > 0:
        duration = value("prompt_eval_duration")
        lines.append(f"prompt eval duration: {_go_duration_ns(duration)}")
        lines.append(f"prompt eval rate:     {value('prompt_eval_count') / (duration / 1e9):.2f} tokens/s")
    if value("eval_count") > 0:
        lines.append(f"eval count:           {value('eval_count')} token(s)")
    if value("eval_duration") > 0:
        duration = value("eval_duration")
        lines.append(f"eval duration:        {_go_duration_ns(duration)}")
        lines.append(f"eval rate:            {value('eval_count') / (duration / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)


def format_embedding(vector: Iterable[float]) -> str:
    """An embedding as ``ollama run`` prints it: a JSON array of float32 values."""
    return "[" + ",".join(format_number(float(x), 32) for x in vector) + "]"


# --- progress (Ollama's progress package) ----------------------------------------------

_SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_TICK = 0.1
"""Seconds between redraws and between spinner frames, as Ollama's 100 ms tickers."""

_DEFAULT_TERM_WIDTH, _DEFAULT_TERM_HEIGHT = 80, 24
_MAX_RATE_BUCKETS = 10


def _terminal_size(stream: IO[str]) -> tuple[int, int]:
    """The terminal's (columns, rows) behind ``stream``, or (0, 0) when it is not one."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 0, 0
    return size.columns, size.lines


def _pad_left(text: str, width: int) -> str:
    return " " * max(0, width - len(text)) + text


def _round_seconds(seconds: float) -> float:
    """Go's ``Duration.Round(time.Second).Seconds()``."""
    return float(_go_round(seconds))


def format_transfer_eta(seconds: int) -> str:
    """Ollama's ``formatDuration`` for the time a transfer has left: ``59m59s``, ``1h5m``, ``99h+``."""
    if seconds >= 100 * 3600:
        return "99h+"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds // 60 % 60}m"
    return format_go_duration(seconds)


class _Spinner:
    """A status line with a spinning frame until stopped (Ollama's ``progress.Spinner``)."""

    def __init__(self, message: str, now: float) -> None:
        self.message = message
        self.started = now
        self.stopped: float | None = None

    def stop(self, now: float) -> None:
        if self.stopped is None:
            self.stopped = now

    def render(self, width: int, now: float) -> str:
        text = ""
        if self.message:
            text = self.message.strip() + " "
        if self.stopped is None:
            text += _SPINNER_FRAMES[int((now - self.started) / _TICK) % len(_SPINNER_FRAMES)] + " "
        return text


class _Bar:
    """A byte transfer: percentage, bar, sizes, speed and time left (Ollama's ``progress.Bar``).

    The speed is measured over the last ten one-second buckets while running, and over
    the whole transfer once complete (when the line stops showing it).
    """

    def __init__(self, message: str, total: int, completed: int, now: float) -> None:
        self.message = message
        self.total = total
        self.initial = completed
        self.current = completed
        self.started = now
        self.stopped: float | None = now if completed >= total else None
        self.buckets: list[tuple[float, int]] = []

    def set(self, value: int, now: float) -> None:
        """Move to ``value`` bytes (clamped to the total); reaching the total stops the bar."""
        value = min(value, self.total)
        self.current = value
        if self.current >= self.total:
            self.stopped = now
        if not self.buckets or now - self.buckets[-1][0] > 1:
            self.buckets.append((now, value))
            del self.buckets[:-_MAX_RATE_BUCKETS]

    def percent(self) -> float:
        return self.current / self.total * 100 if self.total > 0 else 0.0

    def rate(self) -> float:
        """Bytes per second."""
        numerator = denominator = 0.0
        if self.stopped is not None:
            numerator = self.current - self.initial
            denominator = _round_seconds(self.stopped - self.started)
        elif len(self.buckets) == 1:
            numerator = self.buckets[0][1] - self.initial
            denominator = _round_seconds(self.buckets[0][0] - self.started)
        elif self.buckets:
            (first_time, first_value), (last_time, last_value) = self.buckets[0], self.buckets[-1]
            numerator = last_value - first_value
            denominator = _round_seconds(last_time - first_time)
        return numerator / denominator if denominator else 0.0

    def render(self, width: int, now: float) -> str:
        pre = self.message.strip() + " " if self.message else ""
        percent = self.percent()
        pre += f"{percent:3.0f}%"

        running = self.stopped is None
        maximum = human_bytes(self.total)
        if running:
            suffix = _pad_left(human_bytes(self.current), 6) + "/" + _pad_left(maximum, 6)
        else:
            suffix = _pad_left(maximum, 6) + " " * 7
        rate = self.rate()
        if running and rate > 0:
            suffix += "  " + _pad_left(human_bytes(int(rate)), 6) + "/s"
            suffix += "  " + _pad_left(format_transfer_eta(int((self.total - self.current) / rate)), 6)
        else:
            suffix += " " * 18

        # two boundary characters, a space at each end, and the last column left free
        room = width - cell_len(pre) - len(suffix) - 5
        filled = int(room * percent / 100)
        bar = " \u2595" + "\u2588" * max(0, filled) + " " * max(0, room - filled) + "\u258f "
        return pre + bar + suffix


class ProgressView:
    """Ollama's progress display (``progress.Progress``) for create, pull and push streams
    and for the spinner ``run`` shows while a model loads or thinks.

    Lines are spinners (one per status, stopped when the next status arrives) and byte
    bars (one per layer digest), kept in the order they were added. On a terminal every
    line is redrawn in place every 100 ms, as Ollama does; :meth:`stop` leaves them on
    screen and :meth:`stop_and_clear` erases them. When the stream is not a terminal
    (pipes, CI logs, tests) nothing is drawn until :meth:`stop`, which prints each line
    once in its final form, without trailing blanks; :meth:`stop_and_clear` prints nothing.
    """

    def __init__(self, stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._lines: list[_Spinner | _Bar] = []
        self._lock = threading.Lock()
        self._drawn = 0  # lines of the last redraw still on screen
        self._stopped = False
        # handle()'s state: the current status spinner, the bars by digest
        self._status: str | None = None
        self._spinner: _Spinner | None = None
        self._quantize: _Spinner | None = None
        self._bars: dict[str, _Bar] = {}
        self._ticker: threading.Thread | None = None
        self._halt = threading.Event()
        if self._stream.isatty():
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- lines --------------------------------------------------------------------------

    def spinner(self, message: str) -> _Spinner:
        """Add a spinner line; change it through its ``message`` and ``stop(now)``."""
        with self._lock:
            line = _Spinner(message, self._clock())
            self._lines.append(line)
        return line

    def bar(self, message: str, total: int, completed: int) -> _Bar:
        """Add a byte bar at ``completed`` of ``total``."""
        with self._lock:
            line = _Bar(message, total, completed, self._clock())
            self._lines.append(line)
        return line

    def stop_spinner(self, spinner: _Spinner | None) -> None:
        if spinner is not None:
            spinner.stop(self._clock())

    def status(self, message: str) -> None:
        """A new status spinner, stopping the previous one, unless the status is unchanged."""
        if message == self._status:
            return
        self.stop_spinner(self._spinner)
        self._status = message
        self._spinner = self.spinner(message)

    def handle(self, event: Mapping[str, Any], verb: str = "create") -> None:
        """Render one event of a ``create``, ``pull`` or ``push`` progress stream the way
        Ollama's handler for that verb does.

        Events with a digest drive a bar per digest: ``pulling <12 hex>:`` on pull (which
        skips a layer's first, zero-progress event), the event's status (else ``pulling``/
        ``pushing <12 hex>...``) on create and push. ``quantizing`` statuses of create
        update one spinner in place; any other new status starts a new spinner.
        """
        status = str(event.get("status") or "")
        digest = str(event.get("digest") or "")
        if digest:
            completed, total = int(event.get("completed") or 0), int(event.get("total") or 0)
            if verb == "pull" and completed == 0:
                return
            if verb != "create":
                self.stop_spinner(self._spinner)
            bar = self._bars.get(digest)
            if bar is None:
                bar = self._bars[digest] = self.bar(self._bar_message(verb, status, digest), total, completed)
            bar.set(completed, self._clock())
        elif verb == "create" and "quantizing" in status:
            self.stop_spinner(self._spinner)
            if self._quantize is None:
                self._quantize = self.spinner(status)
            else:
                self._quantize.message = status
        else:
            self.status(status)

    @staticmethod
    def _bar_message(verb: str, status: str, digest: str) -> str:
        if verb == "pull":
            name, had_prefix = (digest[len("sha256:"):], True) if digest.startswith("sha256:") else (digest, False)
            name = name.strip()
            return f"pulling {name[:12] if had_prefix else name}:"
        return status or f"{'pushing' if verb == 'push' else 'pulling'} {digest[7:19]}..."

    # --- drawing ------------------------------------------------------------------------

    def log(self, message: str) -> None:
        """Print a line (a warning) above the progress lines."""
        with self._lock:
            if self._ticker is not None:
                self._stream.write(self._erase())
            self._stream.write(message + "\n")
            self._stream.flush()

    def _tick(self) -> None:
        while not self._halt.wait(_TICK):
            self._render()

    def _erase(self) -> str:
        """Escape codes that move to the top of the drawn lines and clear them (lock held)."""
        if not self._drawn:
            return ""
        text = "\x1b[A" * (self._drawn - 1) + "\x1b[1G\x1b[J"
        self._drawn = 0
        return text

    def render_lines(self, width: int = _DEFAULT_TERM_WIDTH) -> list[str]:
        """Every line as it is drawn now, for a terminal ``width`` columns wide."""
        with self._lock:
            now = self._clock()
            return [line.render(width, now) for line in self._lines]

    def _render(self) -> None:
        """Redraw every line in place (Ollama's ``Progress.render``)."""
        width, height = _terminal_size(self._stream)
        width, height = width or _DEFAULT_TERM_WIDTH, height or _DEFAULT_TERM_HEIGHT
        lines = self.render_lines(width)[-height:]
        with self._lock:
            out = ["\x1b[?2026h\x1b[?25l"]
            if self._drawn:
                out.append("\x1b[A" * (self._drawn - 1))
            out.append("\x1b[1G")
            out.append("\n".join(line + "\x1b[K" for line in lines))
            self._drawn = len(lines)
            out.append("\x1b[?25h\x1b[?2026l")
            self._stream.write("".join(out))
            self._stream.flush()

    def _halt_ticker(self) -> bool:
        """Stop every spinner and the redraws; True when this call stopped the display."""
        with self._lock:
            if self._stopped:
                return False
            self._stopped = True
            now = self._clock()
            for line in self._lines:
                if isinstance(line, _Spinner):
                    line.stop(now)
        if self._ticker is not None:
            self._halt.set()
            self._ticker.join()
        return True

    def stop(self) -> None:
        """Stop and leave the lines on screen in their final form (Ollama's ``Stop``)."""
        if not self._halt_ticker():
            return
        if self._ticker is not None:
            self._render()
            self._stream.write("\n")
        else:
            self._stream.write("".join(line.rstrip() + "\n" for line in self.render_lines()))
        self._stream.flush()

    def stop_and_clear(self) -> None:
        """Stop and erase the lines (Ollama's ``StopAndClear``), as ``run`` does with its
        spinner once the first token arrives."""
        if not self._halt_ticker() or self._ticker is None:
            return
        with self._lock:
            out = ["\x1b[?25l"]
            for index in range(self._drawn):
                out.append(("\x1b[A" if index else "") + "\x1b[2K\x1b[1G")
            self._drawn = 0
            out.append("\x1b[?25h")
            self._stream.write("".join(out))
            self._stream.flush()
