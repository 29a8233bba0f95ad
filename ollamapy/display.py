"""Human-facing formatting for the CLI, ported from Ollama so the output matches byte for byte.

Ollama's CLI formats sizes, ages and counts with its ``format`` package (``HumanBytes``,
``HumanTime``, ``HumanNumber``) and lays tables out with ``olekukonko/tablewriter`` v0.0.5
(no borders, left aligned, cells padded to the column width and followed by the table
padding, long cells wrapped at 30 columns by a minimum-raggedness word wrap). Scripts and
people compare ``ollamapy list`` / ``ollamapy show`` output with Ollama's, so these
functions reproduce those rules exactly, trailing spaces included. ``ProgressView`` draws
the NDJSON progress streams (create now, pull and push later) as Ollama's progress
package does: a live spinner per status line on a terminal, plain final lines otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Self, TypeGuard

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

__all__ = [
    "ProgressView",
    "format_list",
    "format_show_info",
    "go_format_f",
    "go_format_g",
    "human_bytes",
    "human_duration",
    "human_number",
    "human_time",
    "parse_time",
    "render_table",
]

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


def _shortest_digits(x: float) -> tuple[str, int]:
    """Go's ``decimal`` of a non-zero ``|x|``: shortest round-trip digits (no trailing
    zeros) and the decimal point position ``dp`` (``|x| = 0.digits * 10**dp``)."""
    _, digits, exponent = Decimal(repr(abs(x))).as_tuple()
    if not isinstance(exponent, int):  # pragma: no cover - callers pass finite numbers
        raise TypeError(x)
    text = "".join(map(str, digits))
    return text.rstrip("0"), len(text) + exponent


def _fixed(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def go_format_f(x: float) -> str:
    """Go's ``strconv.FormatFloat(x, 'f', -1, 64)``: shortest digits, never an exponent."""
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return go_format_g(x)
    sign = "-" if x < 0 else ""
    return sign + _fixed(*_shortest_digits(x))


def go_format_g(x: float) -> str:
    """Go's ``%g``/``%v`` of a float64: shortest digits, ``e+NN`` form when the exponent
    is below -4 or at least 6 (``2.68098176e+08``, ``32768``, ``1e-05``)."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    digits, point = _shortest_digits(x)
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + _fixed(digits, point)


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


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _go_value(value: Any) -> str:
    """Go's ``%v`` of a value decoded from JSON into ``any``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return go_format_g(value)
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
                rows.append(["", label, go_format_f(value)])
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
                    rows.append(["", label, go_format_f(value)])
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


_BAR_LEFT, _BAR_FULL, _BAR_RIGHT = "\u2595", "\u2588", "\u258f"


@dataclass
class _ProgressLine:
    """One line of a progress display: a spinner (``total`` None) or a byte bar."""

    message: str
    total: int | None = None
    completed: int = 0
    stopped: bool = False
    spinner: Spinner = field(default_factory=lambda: Spinner("dots"))

    def final(self) -> str:
        """The line as it stays on screen once stopped."""
        if self.total is None:
            return self.message
        return f"{self.message} {self._bar()} {human_bytes(self.total)}"

    def _bar(self) -> str:
        fraction = min(self.completed / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * 25)
        return f"{int(fraction * 100):3d}% {_BAR_LEFT}{_BAR_FULL * filled}{' ' * (25 - filled)}{_BAR_RIGHT}"

    def live(self, now: float) -> Text:
        """The line while it runs: one terminal row, cut with an ellipsis if too wide."""
        if self.total is not None:
            text = f"{self.message} {self._bar()} {human_bytes(self.completed)}/{human_bytes(self.total)}"
        else:
            frame = self.spinner.render(now)
            text = f"{self.message} {frame.plain if isinstance(frame, Text) else frame} "
        return Text(text, no_wrap=True, overflow="ellipsis")


class ProgressView:
    """Ollama's progress display for NDJSON progress streams.

    One line per status (a spinner until the next status replaces it) and one bar per
    digest, kept in the order they were added. A line is printed for good, in its final
    form, once it and every line above it have stopped; on a terminal the lines still
    running are drawn below by a rich ``Live`` (cut to one row each). When stderr is not a
    terminal (pipes, CI logs, tests) only the final lines appear: the same text a user
    sees once Ollama's display settles.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True, highlight=False)
        self._lines: list[_ProgressLine] = []
        self._by_key: dict[str, _ProgressLine] = {}
        self._printed = 0
        self._status = ""
        self._live: Live | None = None
        # A real terminal, not rich's is_terminal (FORCE_COLOR would animate CI logs).
        if self._console.file.isatty():
            self._live = Live(
                self, console=self._console, refresh_per_second=12, transient=True, redirect_stdout=False, redirect_stderr=False
            )
            self._live.start()

    def __rich__(self) -> RenderableType:
        now = time.monotonic()
        return Group(*(line.live(now) for line in self._lines[self._printed:]))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self, message: str) -> None:
        """Print a message (a warning) above the progress lines."""
        self._console.print(message, markup=False, highlight=False, soft_wrap=True)

    def spinner(self, key: str, message: str) -> None:
        """Start a spinner line; ``key`` names it for later updates (the newest line wins)."""
        line = _ProgressLine(message)
        self._lines.append(line)
        self._by_key[key] = line

    def set_message(self, key: str, message: str) -> None:
        """Change a running line's text in place (upload percentages, quantize progress)."""
        self._by_key[key].message = message

    def bar(self, key: str, message: str, total: int, completed: int) -> None:
        """Start a byte bar, or move an existing one to ``completed``."""
        line = self._by_key.get(key)
        if line is None:
            line = _ProgressLine(message, total=total)
            self._lines.append(line)
            self._by_key[key] = line
        line.total, line.completed = total, completed

    def stop_line(self, key: str) -> None:
        """Freeze one line in its final form."""
        line = self._by_key.get(key)
        if line is None or line.stopped:
            return
        line.stopped = True
        self._flush()

    def _flush(self) -> None:
        """Print the stopped lines at the top, in order, for good."""
        while self._printed < len(self._lines) and self._lines[self._printed].stopped:
            self._printed += 1  # first, so the live region no longer draws it
            self.log(self._lines[self._printed - 1].final())

    def status(self, message: str) -> None:
        """A new status line, stopping the previous one (Ollama's ``status != resp.Status``)."""
        if message == self._status:
            return
        self.stop_line(self._status)
        self._status = message
        self.spinner(message, message)

    def handle(self, event: Mapping[str, Any], bar_verb: str = "pulling") -> None:
        """Render one progress event of a create/pull/push stream as Ollama's CLI does.

        Events with a digest drive a bar labelled with their status (or ``pulling
        <12 hex>...``); ``quantizing`` statuses update one spinner in place; any other
        status that differs from the current one starts a new spinner line.
        """
        status = str(event.get("status") or "")
        digest = str(event.get("digest") or "")
        if digest:
            total, completed = int(event.get("total") or 0), int(event.get("completed") or 0)
            self.bar(digest, status or f"{bar_verb} {digest[7:19]}...", total, completed)
            if total and completed >= total:
                self.stop_line(digest)
        elif "quantizing" in status:
            self.stop_line(self._status)
            if "quantize" in self._by_key:
                self.set_message("quantize", status)
            else:
                self.spinner("quantize", status)
        else:
            self.status(status)

    def stop(self) -> None:
        """Freeze and print every line (Ollama's ``Progress.Stop``)."""
        for line in self._lines:
            line.stopped = True
        self._flush()
        if self._live is not None:
            self._live.stop()
            self._live = None
