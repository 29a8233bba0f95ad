"""Image input checks (``ollamapy.prompt.images``) and how images ride along a rendered prompt."""

from __future__ import annotations

import base64

import pytest

from ollamapy.errors import InvalidRequest
from ollamapy.prompt import images
from ollamapy.prompt.images import decode_image, validate_images
from ollamapy.testing.tiny_vision import tiny_png

PNG = tiny_png(4, 4, (1, 2, 3))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("not base64!", "illegal base64 data at input byte 3"),
        ("abc", "illegal base64 data at input byte 0"),
        ("abcdab", "illegal base64 data at input byte 4"),
        ("ab=c", "illegal base64 data at input byte 2"),
        (b64(b"GIF90a is not an image"), "image: unknown format"),
        (b64(b"hello world"), "image: unknown format"),
        ("", "image: unknown format"),
    ],
)
def test_bad_images_are_refused_with_ollamas_messages(data: str, error: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_image(data)
    assert info.value.message == error
    assert info.value.status_code == 400


def test_images_decode_with_line_breaks_as_go_does() -> None:
    text = b64(PNG)
    assert decode_image(text[:8] + "\r\n" + text[8:]) == PNG
    assert validate_images([text, b64(b"\xff\xd8\xff\xe0 jpeg"), b64(b"GIF89a.."), b64(b"BM....")]) == 4


def test_too_large_image_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(PNG))
    assert decode_image(b64(PNG)) == PNG
    with pytest.raises(InvalidRequest) as info:
        decode_image(b64(PNG + b"x"))
    assert info.value.message == f"image too large: {len(PNG) + 1} bytes (the limit is {len(PNG)})"
