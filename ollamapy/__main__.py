"""``python -m ollamapy``: the same command line as the ``ollamapy`` console script."""

from ollamapy.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
