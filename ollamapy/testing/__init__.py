"""Test helpers shipped with the package so tests and benchmarks share them."""

from .tiny_vision import write_tiny_vision_model

__all__ = ["write_tiny_vision_model"]
