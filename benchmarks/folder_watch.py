"""Seconds from saving a spec to its agent being applied, in local-folder watch mode.

Usage: python benchmarks/folder_watch.py [AGENTS]   (default 100)
"""
from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import SPEC, generate  # noqa: E402

from reconciler.config import Settings  # noqa: E402
from reconciler.store.state_store import open_state  # noqa: E402
from reconciler.watcher import FolderWatcher  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "specs"
        folder.mkdir()
        generate(folder, count)
        database = Path(tmp) / "state.db"
        loop = FolderWatcher(folder, Settings(database=str(database), environ={}))
        thread = threading.Thread(target=loop.run)
        thread.start()
        state = open_state(f"sqlite:///{database}", create=True)
        while loop.state.runs < 1 or len(state.agents()) < count:
            time.sleep(0.01)
        figures = []
        for attempt in range(5):
            name = f"late-{attempt}"
            started = time.perf_counter()
            (folder / f"{name}.yaml").write_text(SPEC.format(i=name, team=0, tier=1, mode="always-on"))
            while not any(a.name == f"agent-{name}" for a in state.agents()):
                time.sleep(0.005)
            figures.append(time.perf_counter() - started)
        loop.stop.set()
        thread.join(5)
    figures.sort()
    print(f"{count} agents: save -> applied median {figures[2]:.3f}s, max {figures[-1]:.3f}s "
          f"(debounce {loop.debounce_ms} ms; goal <= 1 s)")


if __name__ == "__main__":
    main()
