"""CLI verbs, one module per group; :mod:`slimdepth.cli` registers them."""
