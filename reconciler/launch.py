"""The `reconcile` command as a process: its collector set before anything else is imported."""
from __future__ import annotations

from reconciler.heap import one_shot_process


def run() -> None:
    one_shot_process()  # `watch` and `serve` turn it back on (cli.LONG_RUNNING)
    from reconciler.cli import main

    main(prog_name="reconcile")
