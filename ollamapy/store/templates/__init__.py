"""Ollama's named chat templates, shipped as package data.

``index.json`` lists Jinja chat templates found in published GGUFs, each with the name of
the Go template (``<name>.gotmpl``) Ollama renders that family with; ``<name>.json``, when
present, holds the stop parameters that go with it. :mod:`ollamapy.store.template_detect`
reads them.
"""

__all__: list[str] = []
