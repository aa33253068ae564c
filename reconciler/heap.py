"""Python's cycle collector, set for what each process does.

Reading, rendering and planning 1,000 agents makes millions of objects but almost no cycles: a no-op
diff spent about 0.35 s of its 1.5 s in some 530 collections, which found some 840 objects in all, and
the interpreter's last act, a full collection of every object left, cost it another 0.2 s. Reference
counting frees everything else at once either way.
"""
from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager


def one_shot_process() -> None:
    """No cycle collection in this process, not even the last one at exit (the system frees it all)."""
    gc.disable()
    atexit.register(gc.freeze)  # frozen objects are left out of the collection at exit


def long_running_process() -> None:
    """The cycle collector back on, for a process that serves or watches until it is stopped."""
    gc.enable()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block without the cycle collector, then put it back as it was (a watch round: the loop
    collects the round's own cycles itself, right after it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
