"""leadml: predictive lead scoring. Nothing happens at import."""

__version__ = "0.1.0"
