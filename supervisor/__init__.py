"""The front process: aiohttp app, scheduler and placement (ollamapy.supervisor)."""
