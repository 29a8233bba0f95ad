"""How much of a file sits in the page cache (``mincore``), for tests of blob writing."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

from ollamapy.store.model_store import release_page_cache

__all__ = ["cached_pages", "page_cache_can_drop"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _check(result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def cached_pages(path: Path) -> int:
    """How many of the file's pages are in the page cache (mapping it reads none in)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            _check(-1)
        try:
            vector = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
            _check(_libc.mincore(address, size, vector))
            return sum(byte & 1 for byte in vector)
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(fd)


def page_cache_can_drop(directory: Path) -> bool:
    """Whether files in ``directory`` leave the page cache when asked to (tmpfs keeps them)."""
    probe = directory / ".page-cache-probe"
    probe.write_bytes(b"x" * (4 * mmap.PAGESIZE))
    try:
        fd = os.open(probe, os.O_RDONLY)
        try:
            os.fsync(fd)
            release_page_cache(fd)
        finally:
            os.close(fd)
        return cached_pages(probe) == 0
    finally:
        probe.unlink()
