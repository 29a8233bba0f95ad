"""Go's formatting and parsing rules that Ollama's wire formats inherit (durations, quoting, numbers)."""
