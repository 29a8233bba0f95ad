"""An interpreter for Go's text/template language, as Ollama's TEMPLATEs use it."""
