"""The wheel users install carries the schema, and the schema it carries is the repository's."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_schema(tmp_path):
    # Built from a clean copy: a build/ folder left by an earlier build would hide a missing package.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("reconciler", "schemas"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(tmp_path)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("agent_reconciler-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("reconciler/schemas/agent.schema.json")
        names = archive.namelist()
    assert shipped == (ROOT / "schemas" / "agent.schema.json").read_bytes()
    assert not any(n.startswith("tests/") for n in names)
    # Every module of the package, migrations included (a package missing from pyproject's list is not shipped).
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "reconciler").rglob("*.py")}
    assert modules - set(names) == set()
