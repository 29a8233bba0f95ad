"""Model names, parsed and validated exactly as Ollama's ``types/model/name.go`` does.

A name is also a path: ``manifests/<host>/<namespace>/<model>/<tag>``. So a name that is
valid can never contain anything that escapes a directory (``..``, ``/``, ``\\``, NUL,
``%``): every part must start with ``[A-Za-z0-9_]`` and use only a few ASCII characters.

Grammar (``[scheme://][host/][namespace/]model[:tag]``)::

    host:       [A-Za-z0-9_][A-Za-z0-9_.:-]*   1..350 characters   default registry.ollama.ai
    namespace:  [A-Za-z0-9_][A-Za-z0-9_-]*     1..80  (no dots)    default library
    model:      [A-Za-z0-9_][A-Za-z0-9_.-]*    1..80               required
    tag:        [A-Za-z0-9_][A-Za-z0-9_.-]*    1..80               default latest

The tag is split off only when the last ``:`` comes after the last ``/`` (so
``host:port/ns/m`` has no tag). A separator that promises a part which is not there
(``a/:b``, ``/m``, ``m:``) makes the name invalid rather than falling back to a default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ollamapy.errors import InvalidModelName

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SCHEME",
    "DEFAULT_TAG",
    "ModelName",
    "parse_model_name",
]

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"

# Stands in for a part that a separator promised but the string left empty; it can never
# be valid (``!``), so defaults never paper over it. Same value Ollama logs.
_MISSING = "!MISSING!"

# Always used with fullmatch: ``match`` + ``$`` would accept a trailing newline.
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")


def _cut_promised(s: str, sep: str) -> tuple[str, str, bool]:
    """Split ``s`` at the last ``sep``; an empty side becomes ``_MISSING`` (Ollama's cutPromised)."""
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i] or _MISSING, s[i + len(sep):] or _MISSING, True


@dataclass(frozen=True)
class ModelName:
    """A model reference as the user spelled it, with defaults filled in.

    Parsing never raises: check :meth:`is_valid` (or use :func:`parse_model_name`). Equality
    is exact (case-sensitive) like Go's struct comparison; use :meth:`equal_fold` to compare
    names the way Ollama matches them. ``scheme`` only matters to the registry client and
    does not take part in comparisons.
    """

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = field(default=DEFAULT_SCHEME, compare=False)

    @classmethod
    def parse(cls, s: str) -> ModelName:
        """Parse ``[scheme://][host/][namespace/]model[:tag]``, filling absent parts with defaults."""
        host = namespace = tag = ""
        scheme = DEFAULT_SCHEME
        # "/" can never be in a tag, so a ":" after the last "/" is the tag separator.
        if s.rfind(":") > s.rfind("/"):
            s, tag, _ = _cut_promised(s, ":")
        s, model, promised = _cut_promised(s, "/")
        if not promised:
            model = s
        else:
            s, namespace, promised = _cut_promised(s, "/")
            if not promised:
                namespace = s
            else:
                given_scheme, sep, rest = s.partition("://")
                if sep:
                    scheme, host = given_scheme, rest
                else:
                    host = s
        return cls(
            host=host or DEFAULT_HOST,
            namespace=namespace or DEFAULT_NAMESPACE,
            model=model,
            tag=tag or DEFAULT_TAG,
            scheme=scheme,
        )

    def is_valid(self) -> bool:
        """True when every part is present and obeys its character and length rules."""
        return bool(
            _HOST_RE.fullmatch(self.host)
            and _NAMESPACE_RE.fullmatch(self.namespace)
            and _MODEL_TAG_RE.fullmatch(self.model)
            and _MODEL_TAG_RE.fullmatch(self.tag)
        )

    def display_shortest(self) -> str:
        """The short form Ollama shows in lists: ``m:latest``, ``ns/m:t``, ``host/ns/m:t``."""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        else:
            prefix = ""
        return f"{prefix}{self.model}:{self.tag}"

    def manifest_parts(self) -> tuple[str, str, str, str]:
        """``(host, namespace, model, tag)``: the directories and file under ``manifests/``.

        Only meaningful for a valid name; the store refuses invalid ones before using this.
        """
        return (self.host, self.namespace, self.model, self.tag)

    def equal_fold(self, other: ModelName) -> bool:
        """Case-insensitive equality of all four parts (Ollama's ``EqualFold``)."""
        return all(a.lower() == b.lower() for a, b in zip(self.manifest_parts(), other.manifest_parts(), strict=True))

    def __str__(self) -> str:
        """The full form ``host/namespace/model:tag``; empty parts and their separators are left out."""
        out = "".join(f"{part}/" for part in (self.host, self.namespace) if part) + self.model
        return f"{out}:{self.tag}" if self.tag else out


def parse_model_name(s: str) -> ModelName:
    """Parse and require validity: ``InvalidModelName("invalid model name")`` otherwise.

    Handlers that answer with a different text (``name "x" is invalid``) catch and re-raise.
    """
    name = ModelName.parse(s)
    if not name.is_valid():
        raise InvalidModelName("invalid model name")
    return name
