"""Go's ``strconv``: quoting, float formatting and bool/int parsing, byte for byte.

Ollama prints and parses through ``strconv`` in many places users see: error messages
quote their input (``option "x" must be …``, ``strconv.ParseInt: parsing "9x": invalid
syntax``), ``/api/show`` prints parameters with ``%v``/``%#v`` (``1e+06``), templates print
values through ``fmt``, the CLI prints float32 embeddings. Python's own ``repr``, ``str``
and ``int()`` differ in small ways (``1e-05`` vs ``1e-05`` is luck, ``1e+16`` vs
``1e+16`` too, but ``100000.0`` vs ``100000``, ``int(" 1")``, ``int("1_0")``), so every
such place goes through this module. Strings follow :mod:`ollamapy.golang.utf8`'s
convention for invalid UTF-8.
"""

from __future__ import annotations

import math
import struct
import unicodedata
from fractions import Fraction

from ollamapy.golang.utf8 import go_string

__all__ = [
    "NumError",
    "can_backquote",
    "format_float",
    "is_print",
    "parse_bool",
    "parse_int",
    "parse_uint",
    "quote",
    "quote_rune",
    "quote_rune_to_ascii",
    "quote_to_ascii",
    "to_float32",
    "underscore_ok",
]

_LOWER_HEX = "0123456789abcdef"
_UPPER_HEX = "0123456789ABCDEF"
_SIMPLE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


class NumError(ValueError):
    """Go's ``*strconv.NumError``: ``str()`` is Go's message, which Ollama passes on verbatim.

    ``func`` is the Go function (``ParseInt``), ``num`` the input and ``err`` the reason
    (``invalid syntax``, ``value out of range``, ``invalid base 1``).
    """

    def __init__(self, func: str, num: str, err: str) -> None:
        super().__init__(f"strconv.{func}: parsing {quote(num)}: {err}")
        self.func = func
        self.num = num
        self.err = err


# --- quoting ------------------------------------------------------------------------


def is_print(r: str) -> bool:
    """Go's ``strconv.IsPrint``: letters, marks, numbers, punctuation, symbols and ASCII space.

    Categories come from Python's Unicode database, which may be older than Go's: a
    character assigned only in a newer Unicode version counts as unprintable here.
    """
    return r == " " or unicodedata.category(r)[0] in "LMNPS"


def _escape_rune(r: str, quote_char: str, ascii_only: bool) -> str:
    """Go's ``appendEscapedRune`` for one valid rune."""
    if r in (quote_char, "\\"):
        return "\\" + r
    code = ord(r)
    if is_print(r) and (code < 0x80 or not ascii_only):
        return r
    if r in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[r]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _quote_with(s: str, quote_char: str, ascii_only: bool) -> str:
    out = [quote_char]
    for r in go_string(s):
        code = ord(r)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid byte: Go writes it as \xNN
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(_escape_rune(r, quote_char, ascii_only))
    out.append(quote_char)
    return "".join(out)


def quote(s: str) -> str:
    """``strconv.Quote``: ``"…"`` with Go escapes for non-printable runes and ``\\xNN`` for invalid bytes."""
    return _quote_with(s, '"', False)


def quote_to_ascii(s: str) -> str:
    """``strconv.QuoteToASCII``: as :func:`quote`, and every non-ASCII rune escaped too."""
    return _quote_with(s, '"', True)


def _valid_rune(code: int) -> str:
    return chr(0xFFFD if code < 0 or code > 0x10FFFF or 0xD800 <= code < 0xE000 else code)


def quote_rune(code: int) -> str:
    """``strconv.QuoteRune``: ``'x'``; an invalid code point becomes U+FFFD."""
    return "'" + _escape_rune(_valid_rune(code), "'", False) + "'"


def quote_rune_to_ascii(code: int) -> str:
    """``strconv.QuoteRuneToASCII``: as :func:`quote_rune` with non-ASCII escaped."""
    return "'" + _escape_rune(_valid_rune(code), "'", True) + "'"


def can_backquote(s: str) -> bool:
    """``strconv.CanBackquote``: whether ``s`` fits in a Go raw string literal unchanged."""
    for r in go_string(s):
        code = ord(r)
        if r == "\ufeff" or 0xDC80 <= code <= 0xDCFF:
            return False
        if (code < 0x20 and r != "\t") or r == "`" or code == 0x7F:
            return False
    return True


# --- float formatting ---------------------------------------------------------------


def to_float32(v: float) -> float:
    """``float32(v)``: the nearest float32 (ties to even), ``±Inf`` beyond its range."""
    try:
        single: float = struct.unpack("<f", struct.pack("<f", v))[0]
    except OverflowError:  # rounds past the largest float32
        return math.copysign(math.inf, v)
    return single


def _float_bits(v: float, bitsize: int) -> tuple[bool, int, int, bool]:
    """(negative, unbiased exponent, mantissa with the implicit bit, mantissa is a power of two)."""
    if bitsize == 32:
        bits = struct.unpack("<I", struct.pack("<f", v))[0]
        neg, exp, frac, mantbits, bias = bits >> 31 != 0, (bits >> 23) & 0xFF, bits & 0x7FFFFF, 23, 127
    else:
        bits = struct.unpack("<Q", struct.pack("<d", v))[0]
        neg, exp, frac, mantbits, bias = bits >> 63 != 0, (bits >> 52) & 0x7FF, bits & ((1 << 52) - 1), 52, 1023
    power_of_two = frac == 0 and exp > 1
    if exp == 0:
        exp = 1
    else:
        frac |= 1 << mantbits
    return neg, exp - bias, frac, power_of_two


def _decimal_digits(text: str) -> tuple[str, int]:
    """Digits (no leading or trailing zeros) and decimal-point position of a formatted number."""
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    dp = len(whole) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    return (digits, dp) if digits else ("", 0)


def _rounds_to_float32(digits: int, exp10: int, mant: int, exp2: int, narrow_below: bool) -> bool:
    """Whether ``digits * 10**exp10`` parses back to the float32 ``mant * 2**exp2``.

    Exact integer arithmetic on the rounding interval (ties to even), so there is no double
    rounding through float64.
    """
    num: int = digits * 10 ** max(exp10, 0) * 2 ** max(2 - exp2, 0)  # 4 * d / 2**exp2, scaled
    den: int = 10 ** max(-exp10, 0) * 2 ** max(exp2 - 2, 0)
    low = (4 * mant - (1 if narrow_below else 2)) * den
    high = (4 * mant + 2) * den
    if mant % 2 == 0:
        return low <= num <= high
    return low < num < high


def _shortest_float32(v: float) -> tuple[str, int]:
    """The shortest digits that read back to the float32 ``v`` (closest to it among those)."""
    _, exp2, mant, narrow = _float_bits(v, 32)
    exp2 -= 23
    for prec in range(9):
        mantissa, _, exponent = f"{v:.{prec}e}".partition("e")  # the nearest prec+1 digits
        number, exp10 = int(mantissa.replace(".", "")), int(exponent) - prec
        if _rounds_to_float32(number, exp10, mant, exp2, narrow):
            return _decimal_digits(f"{number}e{exp10}")
        # Below a power of two the interval is half as wide, so the nearest candidate can
        # miss while the one above still reads back.
        if narrow and Fraction(number) * Fraction(10) ** exp10 < v and _rounds_to_float32(number + 1, exp10, mant, exp2, narrow):
            return _decimal_digits(f"{number + 1}e{exp10}")
    raise AssertionError("9 significant digits always identify a float32")  # pragma: no cover


def _digits(v: float, fmt: str, prec: int, bitsize: int) -> tuple[str, int]:
    """Digits and decimal-point position of ``|v|``: shortest when ``prec < 0``, else rounded."""
    v = abs(v)
    if prec < 0:
        return _shortest_float32(v) if bitsize == 32 else _decimal_digits(repr(v))
    if fmt == "f":
        return _decimal_digits(f"{v:.{prec}f}")
    if fmt == "e":
        return _decimal_digits(f"{v:.{prec}e}")
    return _decimal_digits(f"{v:.{max(prec, 1) - 1}e}")


def _fmt_efg(neg: bool, s: str, dp: int, prec: int, fmt: str, shortest: bool) -> str:
    """Go's ``formatDigits``: lay decimal digits out as ``%e``, ``%f`` or ``%g``."""
    nd = len(s)
    if fmt in "gG":
        eprec = prec
        if eprec > nd >= dp:
            eprec = nd
        if shortest:  # %e is used if the exponent is < -4 or >= 6 for the shortest form
            eprec = 6
        exp = dp - 1
        if exp < -4 or exp >= eprec:
            prec = min(prec, nd) - 1
            fmt = "e" if fmt == "g" else "E"
        else:
            if prec > dp:
                prec = nd
            prec = max(prec - dp, 0)
            fmt = "f"
    out = ["-"] if neg else []
    if fmt in "eE":
        out.append(s[0] if nd else "0")
        if prec > 0:
            out.append(".")
            m = min(nd, prec + 1)
            out.append(s[1:m])
            out.append("0" * (prec + 1 - max(m, 1)))
        exp = 0 if nd == 0 else dp - 1
        out.append(fmt)
        out.append("-" if exp < 0 else "+")
        out.append(f"{abs(exp):02d}")
        return "".join(out)
    if dp > 0:
        m = min(nd, dp)
        out.append(s[:m] + "0" * (dp - m))
    else:
        out.append("0")
    if prec > 0:
        out.append(".")
        lz = min(prec, max(0, -dp))
        off = dp + lz
        m = min(prec - lz, max(0, nd - off))
        out.append("0" * lz + s[off : off + m] + "0" * max(0, prec - lz - m))
    return "".join(out)


def _fmt_x(prec: int, fmt: str, neg: bool, mant: int, exp: int) -> str:
    """Go's ``fmtX``: hexadecimal mantissa and binary exponent (``0x1.8p+01``)."""
    if mant == 0:
        exp = 0
    mask = (1 << 64) - 1
    while mant != 0 and mant & (1 << 60) == 0:  # leading 1 at bit 60
        mant = (mant << 1) & mask
        exp -= 1
    if 0 <= prec < 15:
        shift = prec * 4
        extra = (mant << shift) & ((1 << 60) - 1)
        mant >>= 60 - shift
        if extra | (mant & 1) > 1 << 59:
            mant += 1
        mant = (mant << (60 - shift)) & mask
        if mant & (1 << 61):
            mant >>= 1
            exp += 1
    hexdigits = _LOWER_HEX if fmt == "x" else _UPPER_HEX
    out = ["-" if neg else "", "0", fmt, str((mant >> 60) & 1)]
    mant = (mant << 4) & mask
    if prec < 0 and mant != 0:
        out.append(".")
        while mant != 0:
            out.append(hexdigits[(mant >> 60) & 15])
            mant = (mant << 4) & mask
    elif prec > 0:
        out.append(".")
        for _ in range(prec):
            out.append(hexdigits[(mant >> 60) & 15])
            mant = (mant << 4) & mask
    out.append("p" if fmt == "x" else "P")
    out.append("-" if exp < 0 else "+")
    out.append(f"{abs(exp):02d}")
    return "".join(out)


def format_float(v: float, fmt: str = "g", prec: int = -1, bitsize: int = 64) -> str:
    """``strconv.FormatFloat(v, fmt, prec, bitsize)``; the defaults give ``%v`` of a float64.

    ``fmt`` is one of ``eEfgGxXb``; ``prec < 0`` means the fewest digits that read back to
    the same value. With ``bitsize=32`` the value is first rounded to float32 and the
    digits are those of the float32 (``0.1`` stays ``0.1``, not ``0.10000000149011612``).
    """
    if bitsize == 32:
        v = to_float32(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    neg, exp, mant, _ = _float_bits(v, bitsize)
    mantbits = 23 if bitsize == 32 else 52
    if fmt == "b":
        return f"{'-' if neg else ''}{mant}p{exp - mantbits:+d}"
    if fmt in "xX":
        return _fmt_x(prec, fmt, neg, mant << (60 - mantbits), exp)
    shortest = prec < 0
    if v == 0:
        return _fmt_efg(neg, "", 0, prec, fmt, shortest)
    base = fmt.lower()
    if base == "g" and prec == 0:
        prec = 1
    s, dp = _digits(v, base, prec, bitsize)
    if shortest:
        nd = len(s)
        prec = {"e": max(nd - 1, 0), "f": max(nd - dp, 0), "g": nd}[base]
    return _fmt_efg(neg, s, dp, prec, fmt, shortest)


# --- parsing --------------------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(s: str) -> bool:
    """``strconv.ParseBool``: ``1 t T TRUE true True`` and ``0 f F FALSE false False`` only.

    Raises :class:`NumError` (``invalid syntax``) for anything else, spaces included.
    """
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise NumError("ParseBool", s, "invalid syntax")


def underscore_ok(s: str) -> bool:
    """Go's ``underscoreOK``: underscores only between digits or after a base prefix."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-") and s:
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i, saw, hexa = 2, "0", s[1] in "xX"
    for c in s[i:]:
        if "0" <= c <= "9" or (hexa and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _check_bitsize(func: str, s: str, bitsize: int) -> int:
    if bitsize == 0:
        return 64
    if not 0 < bitsize <= 64:
        raise NumError(func, s, f"invalid bit size {bitsize}")
    return bitsize


def parse_uint(s: str, base: int = 10, bitsize: int = 64) -> int:
    """``strconv.ParseUint``: base 2..36, or 0 for Go literal syntax (``0x1f``, ``0o17``,
    ``0b101``, ``017``, underscores between digits).

    Raises :class:`NumError` with Go's reason; like Go, a value that overflows is reported
    as out of range as soon as it overflows, even if a bad character follows.
    """
    func = "ParseUint"
    if not s:
        raise NumError(func, s, "invalid syntax")
    base0 = base == 0
    digits = s
    if base0:
        base = 10
        if s[0] == "0":
            if len(s) >= 3 and s[1] in "bBoOxX":
                base = {"b": 2, "o": 8, "x": 16}[s[1].lower()]
                digits = s[2:]
            else:
                base, digits = 8, s[1:]
    elif not 2 <= base <= 36:
        raise NumError(func, s, f"invalid base {base}")
    max_val = (1 << _check_bitsize(func, s, bitsize)) - 1
    n = 0
    underscores = False
    for c in digits:
        if c == "_" and base0:
            underscores = True
            continue
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif c.isascii() and c.isalpha():
            d = ord(c.lower()) - 87
        else:
            raise NumError(func, s, "invalid syntax")
        if d >= base:
            raise NumError(func, s, "invalid syntax")
        n = n * base + d
        if n > max_val:
            raise NumError(func, s, "value out of range")
    if underscores and not underscore_ok(s):
        raise NumError(func, s, "invalid syntax")
    return n


def parse_int(s: str, base: int = 10, bitsize: int = 64) -> int:
    """``strconv.ParseInt``: an optional sign, then :func:`parse_uint`'s syntax.

    Raises :class:`NumError` (``strconv.ParseInt: parsing "x": invalid syntax`` /
    ``value out of range`` / ``invalid base N`` / ``invalid bit size N``).
    """
    func = "ParseInt"
    if not s:
        raise NumError(func, s, "invalid syntax")
    neg = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    try:
        magnitude = parse_uint(body, base, bitsize)
    except NumError as err:
        if err.err != "value out of range":
            raise NumError(func, s, err.err) from None
        magnitude = 1 << 64
    cutoff = 1 << (_check_bitsize(func, s, bitsize) - 1)
    if (not neg and magnitude >= cutoff) or (neg and magnitude > cutoff):
        raise NumError(func, s, "value out of range")
    return -magnitude if neg else magnitude
