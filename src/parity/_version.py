"""The package version, kept in one place (mirrors ``pyproject.toml``)."""

__version__ = "0.1.0"
