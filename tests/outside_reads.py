"""Which files the test process opens (or folders it lists) outside the checkout, and during which test.

A test that reads a folder beside the checkout passes on the machine that has it and fails on a fresh
clone. An audit hook (PEP 578) sees every `open`, `os.listdir`, `os.scandir` and SQLite file of this
process, so conftest installs one before collection and test_isolation fails on what it found. Only
this process is seen: files that subprocesses (git, the LiteLLM proxy) open are not.
"""
from __future__ import annotations

import os
import site
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EVENTS = frozenset({"open", "os.listdir", "os.scandir", "sqlite3.connect"})
# Read by the interpreter, the C library and the libraries the tests use, never project data.
SYSTEM = ("/dev", "/proc", "/sys", "/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin")
# What a search for a Git repository opens in each folder above where it starts (GitPython, as git does).
GIT_PROBES = frozenset({"HEAD", "commondir", ".git"})


def _prefix(path: str | os.PathLike[str]) -> str:
    return os.path.join(os.path.abspath(path), "")


def git_dirs(checkout: Path) -> list[Path]:
    """The checkout's own Git folders when they live elsewhere (a `git worktree` has a `.git` file)."""
    dot_git = checkout / ".git"
    if not dot_git.is_file():
        return []
    text = dot_git.read_text().strip()
    if not text.startswith("gitdir:"):
        return []
    git_dir = (checkout / text.removeprefix("gitdir:").strip()).resolve()
    common = git_dir / "commondir"
    return [git_dir, (git_dir / common.read_text().strip()).resolve()] if common.is_file() else [git_dir]


def python_dirs() -> list[str]:
    """The interpreter, its standard library and every site-packages this process imports from."""
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()]
    dirs += [p for p in sysconfig.get_paths().values() if p]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return dirs


def home_dirs() -> list[str]:
    """Caches and Git configuration in the user's home that libraries read on their own."""
    home = Path.home()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [os.environ.get("XDG_CACHE_HOME") or str(home / ".cache"), str(config / "git"), str(home / ".gitconfig")]


class OutsideReads:
    """An audit hook recording each path outside the allowed roots, with the tests that opened it.

    `inside` roots are always allowed (the checkout, the CRD folder, Python's own folders); `system`
    roots are allowed too, except for what lies beside the checkout (in its parent folder).
    """

    def __init__(self, checkout: Path, inside: Iterable[str | os.PathLike[str]],
                 system: Iterable[str | os.PathLike[str]], above: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.checkout = os.path.abspath(checkout)
        self.parent = _prefix(os.path.dirname(self.checkout))
        self.inside = tuple({_prefix(self.checkout), *(_prefix(p) for p in inside)})
        system = {_prefix(p) for p in system}
        # A system root above the checkout's folder (/tmp for a clone in /tmp/x/) must not excuse its
        # neighbours. One that is that folder (a clone in /tmp itself) has to: its files are the system's.
        self.beside_ok = tuple(p for p in system if not self.parent.startswith(p) or p == self.parent)
        self.system = tuple(system)
        # The folders that searches walk up through: the checkout's and those above it (and above `above`).
        self.ancestors: set[str] = set()
        for start in (self.checkout, *above):
            self._above(start)
        self.current = "start-up"  # until conftest names the collector or test
        self.found: dict[str, set[str]] = {}
        self.reported: set[str] = set()

    def _above(self, path: str | os.PathLike[str]) -> None:
        path = os.path.abspath(path)
        self.ancestors.update((path, *map(str, Path(path).parents)))

    def allow(self, path: str | os.PathLike[str], *, above: bool = False) -> None:
        """Allow `path` too (and, with `above`, the searches that walk up from it)."""
        self.inside = (*self.inside, _prefix(path))
        if above:
            self._above(path)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in EVENTS:
            return
        path = args[0] if args else None
        if isinstance(path, int):  # an open file descriptor: its path was seen when it was opened
            return
        path = os.fsdecode(path) if path is not None else "."
        if event == "sqlite3.connect":
            path = urlsplit(path).path if path.startswith("file:") else path
            if path in ("", ":memory:"):
                return
        path = os.path.abspath(path)
        if not self.allowed(path, listing=event in ("os.listdir", "os.scandir")):
            self.found.setdefault(path, set()).add(self.current)

    def allowed(self, path: str, listing: bool = False) -> bool:
        probe = os.path.join(path, "")  # so that a root itself matches, and /a/bc does not match /a/b
        if probe.startswith(self.inside):
            return True
        if listing and path in self.ancestors:  # imports and pytest list the folders above the checkout
            return True
        if os.path.basename(path) in GIT_PROBES and os.path.dirname(path) in self.ancestors:
            return True
        if probe.startswith(self.parent) and not probe.startswith(self.beside_ok):
            return False
        return probe.startswith(self.system)

    def report(self, paths: Iterable[str] | None = None) -> str:
        """What was found (or just `paths` of it), one path a line with the tests that opened it; marks it reported."""
        paths = sorted(self.found if paths is None else paths)
        self.reported.update(paths)
        lines = [f"{path}  (by {', '.join(sorted(self.found[path]))})" for path in paths]
        return (f"{len(lines)} path(s) outside the checkout {self.checkout} were read; a fresh clone does not "
                "have them (the agent-sandbox CRDs come from AGENT_SANDBOX_CRDS):\n  " + "\n  ".join(lines))


ACTIVE: OutsideReads | None = None


def install(checkout: Path, extra: Iterable[Path | None] = ()) -> OutsideReads:
    """Start recording for the rest of this process (an audit hook cannot be removed)."""
    global ACTIVE
    if ACTIVE is None:
        inside = [*python_dirs(), *git_dirs(checkout), *(p for p in extra if p is not None)]
        temp = tempfile.gettempdir()
        ACTIVE = OutsideReads(checkout, inside, [*SYSTEM, temp, *home_dirs()], above=[temp])
        sys.addaudithook(ACTIVE)
    return ACTIVE
