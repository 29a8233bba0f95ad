"""Images of a request, checked before anything is loaded.

Ollama's API carries images as base64 strings (Go's ``[]byte`` in JSON). Go decodes
them while it reads the body, so a string that is not standard base64 is a 400 with Go's
message; an image the runner cannot decode is ``image: unknown format`` (Go's
``image.Decode``). ollamapy checks both up front, plus a size limit, so a bad image is a
plain 400 and never reaches a runner. The types accepted are those llama.cpp's image
loader (stb_image) decodes and that Ollama users send: JPEG, PNG, GIF and BMP.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from ollamapy.errors import InvalidRequest

__all__ = ["MAX_IMAGE_BYTES", "UNKNOWN_FORMAT", "decode_image", "image_type", "validate_images"]

MAX_IMAGE_BYTES = 100 * 1024 * 1024
"""Largest image accepted (decoded bytes); the same limit as the REPL's image files."""

UNKNOWN_FORMAT = "image: unknown format"

_ALPHABET = re.compile(r"[^A-Za-z0-9+/=]")
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


def _corrupt(offset: int) -> InvalidRequest:
    return InvalidRequest(f"illegal base64 data at input byte {offset}")


def decode_image(data: str) -> bytes:
    """The image's bytes, or ``InvalidRequest`` with the message Ollama gives.

    Base64 is decoded as Go's ``encoding/json`` decodes ``[]byte``: the standard alphabet
    with padding, line breaks ignored, and the error names the first bad byte (or the
    start of an incomplete last quantum).
    """
    text = data.replace("\r", "").replace("\n", "")
    bad = _ALPHABET.search(text)
    if bad is not None:
        raise _corrupt(bad.start())
    if len(text) % 4:
        raise _corrupt(len(text) - len(text) % 4)
    pad = text.find("=")
    if pad >= 0 and (pad < len(text) - 2 or text[pad:].strip("=")):
        raise _corrupt(pad)
    size = len(text) // 4 * 3 - text.count("=")
    if size > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"image too large: {size} bytes (the limit is {MAX_IMAGE_BYTES})")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _corrupt(max(pad, 0)) from None
    if image_type(raw) is None:
        raise InvalidRequest(UNKNOWN_FORMAT)
    return raw


def image_type(head: bytes) -> str | None:
    """``jpeg``, ``png``, ``gif`` or ``bmp`` by the file's signature; None for anything else."""
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)


def validate_images(images: Iterable[str]) -> int:
    """Check every image of a request (see ``decode_image``); returns how many there are."""
    count = 0
    for image in images:
        decode_image(image)
        count += 1
    return count
