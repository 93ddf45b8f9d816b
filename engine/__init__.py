"""engine: a container engine whose spine is an SQLite event journal."""

__version__ = "0.1.0"
