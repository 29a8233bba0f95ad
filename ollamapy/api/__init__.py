"""Wire types and the HTTP client: Ollama's native API, tools, options, the runner protocol."""
