"""Command line: a thin layer over the Python API. `options` defines the options once,
`output` prints, `commands` holds each command (a few lines over one API call).

The top layer: it may import anything; nothing imports it.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """The `digitlab` command (`argv`: its arguments, default `sys.argv[1:]`)."""
    from .commands import main as run_main

    run_main(argv)
