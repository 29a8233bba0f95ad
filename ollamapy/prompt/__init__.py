"""From messages to prompt text and from model text to answers: templates, thinking, tool calls."""
