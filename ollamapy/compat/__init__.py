"""Other vendors' APIs (OpenAI chat/completions/responses, Anthropic messages) as pure converters to and from the native API."""
