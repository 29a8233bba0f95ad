"""Byte sizes as the front's logs and ``ollamapy plan`` print them."""

from __future__ import annotations

import pytest

from ollamapy.units import format_bytes


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (457 << 20, "457.0 MiB"), (5_798_205_849, "5.4 GiB"), (3 << 40, "3.0 TiB")],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text
