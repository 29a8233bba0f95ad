"""Go's formatting and parsing rules, in one place, because Ollama's outputs inherit them.

Ollama is a Go program: its error messages quote with ``strconv.Quote``, its JSON is
``encoding/json``'s (``\\u003c`` for ``<``, ``1e-7``), ``/api/show`` prints numbers with
``%v`` (``1e+06``), it reads booleans and integers with ``strconv.ParseBool``/``ParseInt``
and durations with ``time.ParseDuration``. A drop-in replacement has to reproduce those
rules byte for byte, and each rule is subtle enough (invalid UTF-8, float32 rounding,
``-0``, overflow) that copies written in separate places drift apart. So the rules live
here, tested against real Go (``tests/test_golang.py``), and everything else imports them:

* :mod:`.strconv`: quoting, ``FormatFloat`` (float64 and float32), ``ParseBool``,
  ``ParseInt``/``ParseUint`` with Go's error messages;
* :mod:`.jsonenc`: ``encoding/json`` string escaping, numbers and compact marshalling;
* :mod:`.durations`: ``time.Duration`` and Ollama's ``keep_alive``;
* :mod:`.utf8`: how a Go string's invalid UTF-8 is carried in a Python ``str``.
"""

from ollamapy.golang.durations import (
    FOREVER,
    format_go_duration,
    keep_alive_to_json,
    parse_go_duration,
    parse_keep_alive,
)
from ollamapy.golang.jsonenc import MarshalError, format_number, marshal, quote_string
from ollamapy.golang.strconv import (
    NumError,
    can_backquote,
    format_float,
    is_print,
    parse_bool,
    parse_int,
    parse_uint,
    quote,
    quote_rune,
    quote_rune_to_ascii,
    quote_to_ascii,
    to_float32,
)
from ollamapy.golang.utf8 import go_bytes, go_string, valid_utf8

__all__ = [
    "FOREVER",
    "MarshalError",
    "NumError",
    "can_backquote",
    "format_float",
    "format_go_duration",
    "format_number",
    "go_bytes",
    "go_string",
    "is_print",
    "keep_alive_to_json",
    "marshal",
    "parse_bool",
    "parse_go_duration",
    "parse_int",
    "parse_keep_alive",
    "parse_uint",
    "quote",
    "quote_rune",
    "quote_rune_to_ascii",
    "quote_string",
    "quote_to_ascii",
    "to_float32",
    "valid_utf8",
]
