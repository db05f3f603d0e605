"""The single source of ssehub's version (read by hatchling and by ``ssehub.__version__``)."""

__version__ = "0.1.0"
