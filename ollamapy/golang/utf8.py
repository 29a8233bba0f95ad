"""Go strings carried in Python ``str``: how invalid UTF-8 survives the trip.

A Go string is a byte string and may hold bytes that are not valid UTF-8 (a template
slicing a character in two, a file read as-is). ollamapy carries such bytes in ``str`` as
Python's *surrogate escapes* (U+DC80..U+DCFF, one per byte, what
``bytes.decode("utf-8", "surrogateescape")`` produces). Any other lone surrogate can only
come from a JSON ``"\\ud800"`` escape, which Go's JSON decoder turns into U+FFFD, so it is
read as U+FFFD. Every function in :mod:`ollamapy.golang` that looks at a string's bytes
goes through :func:`go_bytes`, so quoting and escaping treat invalid UTF-8 as Go does.
"""

from __future__ import annotations

import codecs

__all__ = ["go_bytes", "go_string", "valid_utf8"]

_REPLACEMENT_UTF8 = "\ufffd".encode()


def _encode_surrogate(err: UnicodeError) -> tuple[bytes, int]:
    """Encode error handler: a surrogate escape is its byte, any other surrogate is U+FFFD."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    out = bytearray()
    for ch in err.object[err.start : err.end]:
        code = ord(ch)
        out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else _REPLACEMENT_UTF8
    return bytes(out), err.end


def _decode_bytewise(err: UnicodeError) -> tuple[str, int]:
    """Decode error handler: one U+FFFD per invalid byte, as ranging over a Go string yields."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return "\ufffd" * (err.end - err.start), err.end


codecs.register_error("ollamapy.golang.surrogates", _encode_surrogate)
codecs.register_error("ollamapy.golang.bytewise", _decode_bytewise)


def go_bytes(s: str) -> bytes:
    """The bytes of the Go string that ``s`` carries (see the module docstring)."""
    return s.encode("utf-8", "ollamapy.golang.surrogates")


def go_string(s: str) -> str:
    """``s`` in canonical form: escaped bytes that together are valid UTF-8 become text.

    Go decodes runes from bytes, so three escaped bytes that spell ``€`` are ``€`` to Go;
    after this, the only surrogates left are the bytes Go also finds invalid.
    """
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return go_bytes(s).decode("utf-8", "surrogateescape")
    return s


def valid_utf8(s: str) -> str:
    """``s`` as valid text, each invalid byte replaced by U+FFFD (Go's ``for range`` view)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return go_bytes(s).decode("utf-8", "ollamapy.golang.bytewise")
    return s
