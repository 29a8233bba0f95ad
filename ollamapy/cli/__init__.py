"""The ``ollamapy`` command line: verbs, the interactive chat, and Ollama's output formats."""
