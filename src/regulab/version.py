"""The package's version (one place; ``regulab.__version__`` and the reports read it)."""

__version__ = "0.1.0"
