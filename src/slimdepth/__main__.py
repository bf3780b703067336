"""``python -m slimdepth`` runs the command line."""

from slimdepth.cli import main

main()
