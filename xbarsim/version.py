"""The package version (one place; ``xbarsim --version`` and ``xbarsim.__version__``)."""

__version__ = "0.1.0"
