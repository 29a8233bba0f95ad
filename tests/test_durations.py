"""Go durations and keep_alive values, checked against answers taken from Go itself."""

from __future__ import annotations

import json

import pytest

from ollamapy.errors import InvalidRequest
from ollamapy.golang.durations import FOREVER, format_go_duration, keep_alive_to_json, parse_go_duration, parse_keep_alive

NS = 10**9


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("5m", 300 * NS),
        ("1h30m", 5400 * NS),
        ("1.5h", 5400 * NS),
        ("300ms", 300_000_000),
        ("-1m", -60 * NS),
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("0s", 0),
        ("+5s", 5 * NS),
        (".5s", 500_000_000),
        ("5.s", 5 * NS),
        ("1ns", 1),
        ("1us", 1_000),
        ("1\u00b5s", 1_000),  # micro sign
        ("1\u03bcs", 1_000),  # Greek mu
        ("1h1m1s", 3661 * NS),
        ("1h1h1h", 3 * 3600 * NS),
        ("00005m", 300 * NS),
        ("1.0000000000000000000001h", 3600 * NS),
        ("0.0000000001s", 0),
        ("1.999999999999999999999s", 2 * NS),
        ("3.14159265358979323846h", 11_309_733_552_923),
        ("9223372036854775807ns", 9_223_372_036_854_775_807),
        ("2562047h47m16.854775807s", 9_223_372_036_854_775_807),
        ("-9223372036854775808ns", -9_223_372_036_854_775_808),
    ],
)
def test_parse_go_duration(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns / NS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x", 'time: invalid duration "x"'),
        ("42", 'time: missing unit in duration "42"'),
        ("", 'time: invalid duration ""'),
        (".", 'time: invalid duration "."'),
        ("-", 'time: invalid duration "-"'),
        ("+", 'time: invalid duration "+"'),
        ("s", 'time: invalid duration "s"'),
        ("-.s", 'time: invalid duration "-.s"'),
        ("5 m", 'time: unknown unit " m" in duration "5 m"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1H", 'time: unknown unit "H" in duration "1H"'),
        ("1h-1m", 'time: unknown unit "h-" in duration "1h-1m"'),
        ("1..5s", 'time: missing unit in duration "1..5s"'),
        ("5s5", 'time: missing unit in duration "5s5"'),
        ("2562047h47m16.854775808s", 'time: invalid duration "2562047h47m16.854775808s"'),
        ("99999999999999999999s", 'time: invalid duration "99999999999999999999s"'),
        ('"\u00e9', 'time: invalid duration "\\"\\xc3\\xa9"'),
    ],
)
def test_parse_go_duration_errors_carry_go_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_go_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1e-9, "1ns"),
        (999e-9, "999ns"),
        (1.5e-6, "1.5\u00b5s"),
        (0.3, "300ms"),
        (0.0015, "1.5ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (42.5, "42.5s"),
        (60, "1m0s"),
        (300, "5m0s"),
        (3600, "1h0m0s"),
        (5400, "1h30m0s"),
        (3661.25, "1h1m1.25s"),
        (-60, "-1m0s"),
        (-0.0015, "-1.5ms"),
        (FOREVER, "2562047h47m16.854775807s"),
        (-FOREVER, "-2562047h47m16.854775808s"),
    ],
)
def test_format_go_duration(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, 0.001, 1.5, 42, 300, 5400, 86400 * 7, -90])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_go_duration(format_go_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        (42, 42.0),
        (42.5, 42.5),
        (0, 0.0),
        (0.0, 0.0),
        ("42m", 2520.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("0", 0.0),
        (-1, FOREVER),
        (-3.14, FOREVER),
        ("-1m", FOREVER),
        ("-1s", FOREVER),
        (1e30, FOREVER),
        pytest.param(10**400, FOREVER, id="huge-int"),
        (float("inf"), FOREVER),
        (float("-inf"), FOREVER),
    ],
)
def test_parse_keep_alive(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("42", 'time: missing unit in duration "42"'),
        ("bogus", 'time: invalid duration "bogus"'),
        ("", 'time: invalid duration ""'),
        ("5 minutes", 'time: unknown unit " minutes" in duration "5 minutes"'),
        (float("nan"), "invalid character 'N' looking for beginning of value"),
        (True, "Unsupported type: 'bool'"),
        ([1], "Unsupported type: '[]interface {}'"),
        ({"m": 5}, "Unsupported type: 'map[string]interface {}'"),
    ],
)
def test_parse_keep_alive_rejects_like_ollama(value: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_keep_alive(value)
    assert info.value.status_code == 400
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "encoded"),
    [(300, "5m0s"), (0, "0s"), (42.5, "42.5s"), (3600, "1h0m0s"), (FOREVER, -1), (-5, -1)],
)
def test_keep_alive_to_json(seconds: float, encoded: str | int) -> None:
    assert keep_alive_to_json(seconds) == encoded


@pytest.mark.parametrize("seconds", [0, 42, 42.5, 300, 3600, FOREVER])
def test_keep_alive_json_round_trip(seconds: float) -> None:
    body = json.loads(json.dumps({"keep_alive": keep_alive_to_json(seconds)}))
    assert parse_keep_alive(body["keep_alive"]) == seconds
