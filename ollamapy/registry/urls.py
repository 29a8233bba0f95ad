"""URL helpers that build query strings exactly as Go's ``net/url`` does.

Registry URLs are signed (token requests) or carry opaque state (upload locations such as
``?_state=…%3D%3D``), so the bytes sent must be the bytes built here: callers pass the
result to aiohttp as ``yarl.URL(url, encoded=True)`` and nothing re-quotes it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus, urljoin, urlsplit, urlunsplit

__all__ = ["add_query", "go_query_encode", "hostname", "netloc", "resolve"]


def go_query_encode(pairs: list[tuple[str, str]]) -> str:
    """``url.Values.Encode()``: sorted by key (stable within a key), ``QueryEscape``d."""
    ordered = sorted(pairs, key=lambda pair: pair[0])
    return "&".join(f"{quote_plus(key, safe='')}={quote_plus(value, safe='')}" for key, value in ordered)


def add_query(url: str, pairs: list[tuple[str, str]]) -> str:
    """``url`` with ``pairs`` added to its existing query, all re-encoded the Go way."""
    parts = urlsplit(url)
    existing = parse_qsl(parts.query, keep_blank_values=True)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, go_query_encode(existing + pairs), parts.fragment))


def resolve(base: str, location: str) -> str:
    """A ``Location`` header value resolved against the URL it answered."""
    return urljoin(base, location)


def hostname(url: str) -> str:
    """The host without port, lower-cased (Go's ``URL.Hostname`` for comparisons)."""
    return (urlsplit(url).hostname or "").lower()


def netloc(url: str) -> str:
    """``host[:port]`` as written (Go's ``URL.Host``)."""
    return urlsplit(url).netloc
