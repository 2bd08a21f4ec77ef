"""``python -m inrsr``: the command-line interface."""

from inrsr.cli import main

main(prog_name="inrsr")
