"""The version of slimdepth (a leaf module: the checkpoint writer and the CLI read it)."""

__version__ = "0.1.0"
