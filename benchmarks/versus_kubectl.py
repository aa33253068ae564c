"""The reconciler beside kubectl on the same objects of a real API server: a first apply (kubectl with one
process, and with four and with eight at once: the faster of the two is the server's own limit here; the
reconciler with four writers and with its default eight), then a no-op diff, each timed from the shell's
view (whole processes, start-up included). The reconciler reads its specs from a Git checkout, as a pull
request's check would.

A server's speed depends on what it went through just before: objects written or being deleted, its
heap, its compactions. So every first apply gets namespaces of its own on a settled server (the namespaces
of the apply before it deleted and gone), and the tools take turns over several rounds, each round begun
by the next tool; each prints its median. The no-op diffs then run against one more apply by each, kept until the end.

Needs RECONCILER_TEST_KUBECONFIG and kubectl on PATH (or KUBECTL). Namespaces are
`bench-XXXXXX-<round><tool>-team-N`, each deleted after its apply.

Usage: python benchmarks/versus_kubectl.py [AGENTS] [ROUNDS]
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import generate  # noqa: E402

from reconciler.render import KIND_ORDER  # noqa: E402

RECONCILE = str(Path(sys.executable).with_name("reconcile"))
TEAMS = 50  # pipeline.generate's namespaces
# What each first apply runs: kubectl with 1, 4 and 8 processes at once, the reconciler with 4 and 8 writers.
TOOLS = (("kubectl", 1), ("kubectl", 4), ("kubectl", 8), ("reconcile", 4), ("reconcile", 8))


def timed(*command: str, ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started


class Bench:
    def __init__(self, kubectl: list[str], kubeconfig: str, root: Path, count: int) -> None:
        self.kc, self.kubeconfig, self.root, self.count = kubectl, kubeconfig, root, count
        self.run = uuid.uuid4().hex[:6]

    def specs(self, name: str) -> tuple[Path, str]:
        """Specs of their own namespaces (`bench-RUN-NAME-team-N`) in a Git checkout; and the source name."""
        source = f"bench-{self.run}-{name}"
        folder = self.root / name
        folder.mkdir()
        generate(folder, self.count, namespace_prefix=f"{source}-")
        who = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        for command in (["init", "-q"], ["add", "-A"], [*who, "commit", "-qm", "specs"]):
            subprocess.run(["git", "-C", str(folder), *command], check=True)
        subprocess.run(self.kc + ["apply", "-f", "-"], input="\n---\n".join(
            f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {source}-team-{t}}}" for t in range(TEAMS)),
            text=True, check=True, stdout=subprocess.DEVNULL)
        return folder, source

    def kubectl_apply(self, folder: Path, source: str, processes: int) -> float:
        """Seconds for `processes` kubectl processes at once to apply the rendered objects, stage by stage
        (templates before the sandboxes that name them)."""
        rendered = subprocess.run([RECONCILE, "render", str(folder), "--source-name", source],
                                  check=True, capture_output=True, text=True).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        stages = []
        for rank in sorted({KIND_ORDER.get(d["kind"], 9) for d in docs}):
            part = [d for d in docs if KIND_ORDER.get(d["kind"], 9) == rank]
            files = []
            for i in range(processes):
                path = folder.parent / f"{folder.name}-stage{rank}-{i}.yaml"
                path.write_text(yaml.safe_dump_all(part[i::processes]))
                files.append(path)
            stages.append(files)
        (folder.parent / f"{folder.name}.yaml").write_text(rendered)
        started = time.perf_counter()
        for files in stages:
            procs = [subprocess.Popen([*self.kc, "apply", "--server-side", "--field-manager=bench", "-f", str(f)],
                                      stdout=subprocess.DEVNULL) for f in files]
            if any(p.wait() for p in procs):
                raise SystemExit("a kubectl apply failed")
        return time.perf_counter() - started

    def reconcile_apply(self, folder: Path, source: str, writers: int) -> float:
        return timed(RECONCILE, "apply", str(folder), "--kubeconfig", self.kubeconfig, "--database",
                     str(folder.parent / f"{folder.name}.db"), "--source-name", source,
                     "--concurrency", str(writers))

    def drop(self, source: str) -> None:
        """Delete the namespaces and wait until they are gone, objects and all."""
        names = [f"{source}-team-{t}" for t in range(TEAMS)]
        subprocess.run(self.kc + ["delete", "namespace", "--wait=false", "--ignore-not-found", *names],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            listed = subprocess.run(self.kc + ["get", "namespaces", "-o", "name"], capture_output=True, text=True,
                                    check=False).stdout
            if f"namespace/{source}-" not in listed:
                return
            time.sleep(2)
        raise SystemExit(f"the namespaces {source}-team-* were not deleted within 10 minutes")

    def first_apply(self, name: str, tool: str, processes: int) -> float:
        folder, source = self.specs(name)
        try:
            if tool == "kubectl":
                return self.kubectl_apply(folder, source, processes)
            return self.reconcile_apply(folder, source, processes)
        finally:
            self.drop(source)


def _label(tool: str, processes: int) -> str:
    if tool == "kubectl":
        return "kubectl apply --server-side, one process" if processes == 1 else \
            f"kubectl apply --server-side, {processes} processes at once"
    return f"reconcile apply --concurrency {processes}"


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    kubeconfig = os.environ.get("RECONCILER_TEST_KUBECONFIG")
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not kubeconfig or not kubectl:
        raise SystemExit("set RECONCILER_TEST_KUBECONFIG to a kubeconfig and put kubectl on PATH (or KUBECTL)")
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench([kubectl, "--kubeconfig", kubeconfig], kubeconfig, Path(tmp), count)
        print(f"{count} agents in {TEAMS} namespaces, {rounds} round(s) of first applies on {kubeconfig}; "
              "each on a settled server, the tools taking turns", flush=True)
        took: dict[tuple[str, int], list[float]] = {}
        for round_ in range(rounds):
            # One kubectl process is slow, and only compared with, not a limit: once is enough. The others
            # start each round one place further on, so that none always follows the same one.
            turns = [t for t in TOOLS if t != ("kubectl", 1)]
            turns = turns[round_ % len(turns):] + turns[:round_ % len(turns)]
            for tool, processes in ([("kubectl", 1)] if not round_ else []) + turns:
                seconds = bench.first_apply(f"{round_}{tool[0]}{processes}", tool, processes)
                took.setdefault((tool, processes), []).append(seconds)
                print(f"  round {round_ + 1}: {_label(tool, processes):<52} {seconds:6.1f}s", flush=True)
        median = {key: statistics.median(values) for key, values in took.items()}
        limit = min(median[("kubectl", 4)], median[("kubectl", 8)])
        print("first apply, medians:")
        for key, value in median.items():
            against = f" ({value / limit - 1:+.0%} against the limit)" if key[0] == "reconcile" else ""
            print(f"  {_label(*key):<52} {value:6.1f}s{against}")
        print(f"  the server's limit (the faster median of 4 and 8 kubectl processes) {limit:.1f}s")

        # The no-op: one more apply by each, kept for their diffs.
        theirs_folder, theirs = bench.specs("diff-kubectl")
        ours_folder, ours = bench.specs("diff-reconcile")
        try:
            bench.kubectl_apply(theirs_folder, theirs, 4)
            bench.reconcile_apply(ours_folder, ours, 8)
            rendered = theirs_folder.parent / f"{theirs_folder.name}.yaml"
            kubectl_diff = timed(kubectl, "--kubeconfig", kubeconfig, "diff", "--server-side",
                                 "--field-manager=bench", "-f", str(rendered))
            print(f"no-op, kubectl diff --server-side  {kubectl_diff:7.1f}s")
            common = ["--kubeconfig", kubeconfig, "--source-name", ours]
            for label, database in (("", ours_folder.parent / f"{ours_folder.name}.db"),
                                    (" with no state recorded here", Path(tmp) / "none.db")):
                # A pull request's runner: the cluster, but no state of this machine's recorded yet.
                for _ in range(3):
                    seconds = timed(RECONCILE, "diff", str(ours_folder), *common, "--database", str(database))
                    print(f"no-op, reconcile diff{label}  {seconds:7.2f}s ({kubectl_diff / seconds:.0f}x faster; "
                          "goal 20x)")
        finally:
            for source in (theirs, ours):
                bench.drop(source)


if __name__ == "__main__":
    main()
