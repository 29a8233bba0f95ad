"""The error hierarchy shared by the server, the store and the CLI.

Every error a user can cause carries the HTTP status Ollama answers with, so one aiohttp
middleware (``supervisor.middleware``) maps any of them to ``{"error": message}`` and no
handler has to match on message text.

    OllamapyError (500)
    ├── InvalidRequest (400)
    │   ├── InvalidModelName (400)
    │   ├── InvalidDigest (400)
    │   ├── ParserError (400)       Modelfile syntax, with the line number
    │   └── TemplateError (400)     Go template parse/exec, with the line number
    ├── ModelNotFound (404)
    ├── BlobNotFound (404)
    ├── RequestCancelled (499)
    ├── QueueFull (503)
    └── RunnerCrashed (500)
"""

from __future__ import annotations

__all__ = [
    "BlobNotFound",
    "InvalidDigest",
    "InvalidModelName",
    "InvalidRequest",
    "ModelNotFound",
    "OllamapyError",
    "ParserError",
    "QueueFull",
    "RequestCancelled",
    "RunnerCrashed",
    "TemplateError",
]


class OllamapyError(Exception):
    """Base class: ``str(err)`` is the message users see, ``status_code`` the HTTP status."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidRequest(OllamapyError):
    status_code = 400


class InvalidModelName(InvalidRequest):
    pass


class InvalidDigest(InvalidRequest):
    pass


class ParserError(InvalidRequest):
    """A Modelfile error; the message names the line as Ollama does: ``(line N): msg``."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"(line {line}): {message}" if line is not None else message)


class TemplateError(InvalidRequest):
    """A Go template that does not parse or execute; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(message)


class ModelNotFound(OllamapyError):
    status_code = 404


class BlobNotFound(OllamapyError):
    status_code = 404


class RequestCancelled(OllamapyError):
    status_code = 499


class QueueFull(OllamapyError):
    status_code = 503

    def __init__(self, message: str = "server busy, please try again.  maximum pending requests exceeded") -> None:
        super().__init__(message)


class RunnerCrashed(OllamapyError):
    status_code = 500
