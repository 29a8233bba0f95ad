"""Go durations and Ollama's ``keep_alive`` value, byte-for-byte as Go handles them.

Clients and users write durations the way Ollama (a Go program) reads them: ``"5m"``,
``"1h30m"``, ``"300ms"``, ``"-1m"``, and Ollama prints them back as ``time.Duration.String()``
does (``"5m0s"``). To be a drop-in replacement we parse and print exactly as Go's ``time``
package does, error messages included, because those messages reach clients verbatim
(``{"error": "time: missing unit in duration \\"42\\""}``).

Durations are handled internally as integer nanoseconds (Go's ``time.Duration``) and
exposed as float seconds; :data:`FOREVER` (``math.inf``) stands for Go's "infinite"
``time.Duration(math.MaxInt64)``.
"""

from __future__ import annotations

import math

from ollamapy.errors import InvalidRequest
from ollamapy.golang.utf8 import go_bytes

__all__ = [
    "FOREVER",
    "format_go_duration",
    "keep_alive_to_json",
    "parse_go_duration",
    "parse_keep_alive",
]

FOREVER: float = math.inf
"""A keep-alive that never expires (Go's ``time.Duration(math.MaxInt64)``)."""

_MAX_INT64 = (1 << 63) - 1
_MIN_INT64 = -(1 << 63)
_NS_PER_SECOND = 1_000_000_000

_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # U+00B5 micro sign
    "\u03bcs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": _NS_PER_SECOND,
    "m": 60 * _NS_PER_SECOND,
    "h": 3600 * _NS_PER_SECOND,
}


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _digits_prefix(s: str) -> str:
    """The leading ``[0-9]*`` of ``s``."""
    i = 0
    while i < len(s) and _is_digit(s[i]):
        i += 1
    return s[:i]


def _unit_prefix(s: str) -> str:
    """The leading unit of ``s``: everything up to the next digit or ``.``, as Go scans it."""
    i = 0
    while i < len(s) and not (s[i] == "." or _is_digit(s[i])):
        i += 1
    return s[:i]


def _go_quote(s: str) -> str:
    """Quote ``s`` as Go's ``time`` package does in its errors (not ``strconv.Quote``).

    Go's ``time`` package cannot import ``strconv``, so it has its own cruder quoting:
    bytes outside printable ASCII become ``\\xNN`` (each byte of a multi-byte rune), and
    ``"`` and ``\\`` are backslash-escaped.
    """
    out = ['"']
    for byte in go_bytes(s):
        if byte >= 0x80 or byte < 0x20:
            out.append(f"\\x{byte:02x}")
        else:
            ch = chr(byte)
            out.append("\\" + ch if ch in '"\\' else ch)
    out.append('"')
    return "".join(out)


def _leading_int(s: str) -> tuple[int, str] | None:
    """Consume ``[0-9]*``; None on uint64 overflow as Go's ``leadingInt`` reports it."""
    digits = _digits_prefix(s)
    x = 0
    for c in digits:
        if x > (1 << 63) // 10:
            return None
        x = x * 10 + ord(c) - 48
        if x > 1 << 63:
            return None
    return x, s[len(digits) :]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    """Consume ``[0-9]*`` after a decimal point; past 63 bits precision just stops."""
    digits = _digits_prefix(s)
    x, scale, overflow = 0, 1.0, False
    for c in digits:
        if overflow:
            continue
        if x > _MAX_INT64 // 10:
            overflow = True
            continue
        y = x * 10 + ord(c) - 48
        if y > 1 << 63:
            overflow = True
            continue
        x, scale = y, scale * 10
    return x, scale, s[len(digits) :]


def _parse_ns(orig: str) -> int:
    """Go's ``time.ParseDuration``: ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`` to nanoseconds."""
    invalid = ValueError("time: invalid duration " + _go_quote(orig))
    s, neg = orig, False
    if s and s[0] in "-+":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or _is_digit(s[0])):
            raise invalid
        before = len(s)
        lead = _leading_int(s)
        if lead is None:
            raise invalid
        v, s = lead
        pre = len(s) != before
        f, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = len(s) != before
        if not pre and not post:
            raise invalid
        unit_name = _unit_prefix(s)
        if not unit_name:
            raise ValueError("time: missing unit in duration " + _go_quote(orig))
        s = s[len(unit_name) :]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise ValueError(f"time: unknown unit {_go_quote(unit_name)} in duration {_go_quote(orig)}")
        if v > (1 << 63) // unit:
            raise invalid
        v *= unit
        if f > 0:
            # Go computes the fraction in float64 too: nanosecond-exact for hours.
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise invalid
        total += v
        if total > 1 << 63:
            raise invalid
    if neg:
        return -total
    if total > _MAX_INT64:
        raise invalid
    return total


def parse_go_duration(s: str) -> float:
    """Parse a Go duration string (``"5m"``, ``"1h30m"``, ``"1.5h"``, ``"-1m"``, ``"0"``) to seconds.

    Units are ``ns us µs ms s m h``; a bare number other than ``0`` has no unit and is an
    error. Raises :class:`ValueError` carrying Go's own message, e.g.
    ``time: invalid duration "x"`` or ``time: missing unit in duration "42"``.
    """
    return _parse_ns(s) / _NS_PER_SECOND


def _seconds_to_ns(seconds: float) -> int:
    """Round float seconds to nanoseconds, saturating at the ``time.Duration`` range."""
    if math.isnan(seconds):
        raise ValueError("duration is NaN")
    if seconds >= _MAX_INT64 / _NS_PER_SECOND:
        return _MAX_INT64
    if seconds <= _MIN_INT64 / _NS_PER_SECOND:
        return _MIN_INT64
    return round(seconds * _NS_PER_SECOND)


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    """Go's ``fmtFrac``: the fraction of ``v / 10**prec`` without trailing zeros."""
    digits: list[str] = []
    printing = False
    for _ in range(prec):
        digit = v % 10
        printing = printing or digit != 0
        if printing:
            digits.append(str(digit))
        v //= 10
    frac = "." + "".join(reversed(digits)) if printing else ""
    return frac, v


def format_go_duration(seconds: float) -> str:
    """Format seconds as Go's ``time.Duration.String()``: ``"5m0s"``, ``"1h30m0s"``, ``"1.5s"``, ``"0s"``.

    Values below one second use ``ms``/``µs``/``ns`` (``"300ms"``); values beyond Go's range
    (including :data:`FOREVER`) saturate to ``"2562047h47m16.854775807s"`` as Go's
    ``math.MaxInt64`` duration prints.
    """
    ns = _seconds_to_ns(seconds)
    u = abs(ns)
    if u == 0:
        return "0s"
    if u < _NS_PER_SECOND:
        if u < 1_000:
            text = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            text = f"{whole}{frac}\u00b5s"
        else:
            frac, whole = _fmt_frac(u, 6)
            text = f"{whole}{frac}ms"
    else:
        frac, secs = _fmt_frac(u, 9)
        text = f"{secs % 60}{frac}s"
        minutes = secs // 60
        if minutes > 0:
            text = f"{minutes % 60}m{text}"
            hours = minutes // 60
            if hours > 0:
                text = f"{hours}h{text}"
    return "-" + text if ns < 0 else text


def _go_type_name(value: object) -> str:
    """The Go type ``encoding/json`` decodes ``value`` into, for Ollama's type error."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__


def parse_keep_alive(value: object) -> float | None:
    """Decode a request's ``keep_alive`` JSON value to seconds, as Ollama's ``api.Duration`` does.

    * absent (``None``, i.e. JSON ``null`` or no field) → ``None``: keep the runner's duration;
    * a JSON number is seconds, fractions allowed (``42.5``);
    * a JSON string is a Go duration (``"5m"``, ``"0"``); a unitless ``"42"`` is an error;
    * anything negative → :data:`FOREVER`; ``0`` → unload right after the request.

    Raises :class:`~ollamapy.errors.InvalidRequest` (400) with Ollama's message otherwise.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            # Python's json accepts NaN; Go's decoder rejects the literal.
            raise InvalidRequest("invalid character 'N' looking for beginning of value")
        if value < 0 or value >= _MAX_INT64 / _NS_PER_SECOND:
            return FOREVER
        # Go truncates float64 seconds to whole nanoseconds: time.Duration(t * 1e9).
        return int(float(value) * _NS_PER_SECOND) / _NS_PER_SECOND
    if isinstance(value, str):
        try:
            ns = _parse_ns(value)
        except ValueError as err:
            raise InvalidRequest(str(err)) from None
        return FOREVER if ns < 0 else ns / _NS_PER_SECOND
    raise InvalidRequest(f"Unsupported type: '{_go_type_name(value)}'")


def keep_alive_to_json(seconds: float) -> str | int:
    """Encode a keep-alive for a request body: ``"5m0s"``, or ``-1`` for forever/negative.

    ``-1`` decodes back to :data:`FOREVER`, so a round trip through JSON is lossless.
    """
    if seconds < 0 or seconds == FOREVER:
        return -1
    return format_go_duration(seconds)
