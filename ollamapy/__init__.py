"""ollamapy: a wire-compatible Python implementation of the Ollama server, CLI and store."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("ollamapy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
