"""After-sale deadline enforcer: a pure engine, its faust app and its adapters."""

__version__ = "0.1.0"
