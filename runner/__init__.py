"""The runner: a child process that holds one model in llama-cpp-python (ollamapy.runner)."""
