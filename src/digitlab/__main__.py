"""`python -m digitlab` is the `digitlab` command."""

from digitlab.cli import main

main()
