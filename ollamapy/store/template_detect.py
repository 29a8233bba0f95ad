"""Create-time template detection: a GGUF's Jinja chat template to one of Ollama's named templates.

Ollama does not render the Jinja program a GGUF carries when it can avoid it: at create
time it compares ``tokenizer.chat_template`` with the Jinja texts in its template index,
and the nearest one by Levenshtein distance (over code points), if that distance is below
100, names the Go template and stop parameters the new model gets. Ties go to the earlier
index entry. A model whose template matches nothing keeps no TEMPLATE layer and is
rendered from its Jinja template at request time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["MATCH_LIMIT", "NamedTemplate", "detect_named_template", "levenshtein_below", "named_templates"]

MATCH_LIMIT = 100
"""A chat template matches an index entry only at a distance below this."""

_PACKAGE = "ollamapy.store.templates"


@dataclass(frozen=True)
class NamedTemplate:
    """One of Ollama's named templates: the Go template text and its parameters layer."""

    name: str
    template: str
    parameters: dict[str, Any] | None = field(default=None, hash=False)


def _read(filename: str) -> str | None:
    path = resources.files(_PACKAGE).joinpath(filename)
    if not path.is_file():
        return None
    # Line endings normalised as Ollama does when it loads its embedded files.
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")


@cache
def named_templates() -> tuple[tuple[str, NamedTemplate], ...]:
    """The index in order: (Jinja text, the named template it stands for)."""
    index = json.loads(_read("index.json") or "[]")
    by_name: dict[str, NamedTemplate] = {}
    out: list[tuple[str, NamedTemplate]] = []
    for entry in index:
        name = entry["name"]
        if name not in by_name:
            text = _read(f"{name}.gotmpl")
            if text is None:
                raise FileNotFoundError(f"template {name}.gotmpl is missing from {_PACKAGE}")
            params = _read(f"{name}.json")
            by_name[name] = NamedTemplate(name, text, json.loads(params) if params else None)
        out.append((entry["template"], by_name[name]))
    return tuple(out)


def levenshtein_below(a: str, b: str, limit: int) -> int | None:
    """The edit distance of ``a`` and ``b`` if it is below ``limit``, else None.

    Only the diagonal band ``|i - j| < limit`` can hold a distance below the limit, so the
    work is ``len(a) * 2 * limit`` rather than ``len(a) * len(b)``, and it stops as soon as
    a whole row of the band reaches the limit.
    """
    if abs(len(a) - len(b)) >= limit:
        return None
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    previous = list(range(m + 1))
    for i in range(1, len(a) + 1):
        lo, hi = max(1, i - limit + 1), min(m, i + limit - 1)
        current = [limit] * (m + 1)
        if i < limit:
            current[0] = i
        ca = a[i - 1]
        best = current[0]
        for j in range(lo, hi + 1):
            cost = previous[j - 1] + (ca != b[j - 1])
            if previous[j] + 1 < cost:
                cost = previous[j] + 1
            if current[j - 1] + 1 < cost:
                cost = current[j - 1] + 1
            if cost > limit:
                cost = limit
            current[j] = cost
            if cost < best:
                best = cost
        if best >= limit:
            return None
        previous = current
    return previous[m] if previous[m] < limit else None


def detect_named_template(chat_template: str | None) -> NamedTemplate | None:
    """The named template nearest to ``chat_template``, or None when none is near enough."""
    if not chat_template:
        return None
    found: NamedTemplate | None = None
    limit = MATCH_LIMIT
    for jinja, named in named_templates():
        distance = levenshtein_below(chat_template, jinja, limit)
        if distance is not None:
            found, limit = named, distance
            if distance == 0:
                break
    return found
