"""The reconciler beside kubectl on the same objects of a real API server: a first apply (kubectl with one
process, and with four and with eight at once: the faster of the two is the server's own limit here; the
reconciler with four writers and with its default eight), then a no-op diff, each timed from the shell's
view (whole processes, start-up included). The reconciler reads its specs from a Git checkout, as a pull
request's check would.

Needs RECONCILER_TEST_KUBECONFIG and kubectl on PATH (or KUBECTL). Each tool gets namespaces of its own,
`bench-XXXXXX-<tool>-team-N`, deleted at the end.

Usage: python benchmarks/versus_kubectl.py [AGENTS]
"""
from __future__ import annotations

import os
import shutil
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


def timed(*command: str, ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started


def parallel_apply(apply: list[str], rendered: Path, processes: int, root: Path) -> float:
    """Seconds for `processes` kubectl processes at once to apply `rendered`, stage by stage (templates
    before the sandboxes that name them)."""
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    stages = []
    for rank in sorted({KIND_ORDER.get(d["kind"], 9) for d in docs}):
        part = [d for d in docs if KIND_ORDER.get(d["kind"], 9) == rank]
        files = []
        for i in range(processes):
            path = root / f"stage{rank}-{i}-of-{processes}.yaml"
            path.write_text(yaml.safe_dump_all(part[i::processes]))
            files.append(path)
        stages.append(files)
    started = time.perf_counter()
    for files in stages:
        procs = [subprocess.Popen([*apply, "-f", str(f)], stdout=subprocess.DEVNULL) for f in files]
        if any(p.wait() for p in procs):
            raise SystemExit("a parallel kubectl apply failed")
    took = time.perf_counter() - started
    print(f"first apply, {processes} kubectl processes at once  {took:7.1f}s")
    return took


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    kubeconfig = os.environ.get("RECONCILER_TEST_KUBECONFIG")
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not kubeconfig or not kubectl:
        raise SystemExit("set RECONCILER_TEST_KUBECONFIG to a kubeconfig and put kubectl on PATH (or KUBECTL)")
    run = uuid.uuid4().hex[:6]
    kc = [kubectl, "--kubeconfig", kubeconfig]
    prefixes = {tool: f"bench-{run}-{tool}-" for tool in ("kubectl", "kubectl4", "kubectl8", "reconcile",
                                                          "reconcile8")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for tool, prefix in prefixes.items():
            (root / tool).mkdir()
            generate(root / tool, count, namespace_prefix=prefix)
            if tool.startswith("reconcile"):  # as a pull request's check reads them: from a Git checkout
                who = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
                for command in (["init", "-q"], ["add", "-A"], [*who, "commit", "-qm", "specs"]):
                    subprocess.run(["git", "-C", str(root / tool), *command], check=True)
            subprocess.run(kc + ["apply", "-f", "-"], input="\n---\n".join(
                f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {prefix}team-{t}}}" for t in range(50)),
                text=True, check=True, stdout=subprocess.DEVNULL)
        rendered = {}
        for tool in ("kubectl", "kubectl4", "kubectl8"):
            out = subprocess.run([RECONCILE, "render", str(root / tool), "--source-name", f"bench-{run}-{tool}"],
                                 check=True, capture_output=True, text=True).stdout
            rendered[tool] = root / f"{tool}.yaml"
            rendered[tool].write_text(out)
        objects = sum(1 for d in yaml.safe_load_all(rendered["kubectl"].read_text()) if d)
        print(f"{count} agents, {objects} objects each, on {kubeconfig}")
        try:
            apply = [*kc, "apply", "--server-side", "--field-manager=bench"]
            one = timed(*apply, "-f", str(rendered["kubectl"]))
            print(f"first apply, kubectl apply --server-side (one process)  {one:7.1f}s")
            limit = min(parallel_apply(apply, rendered[f"kubectl{n}"], n, root) for n in (4, 8))
            ours = [RECONCILE]
            for tool, writers in (("reconcile", 4), ("reconcile8", 8)):
                settings = ["--database", str(root / f"{tool}.db"), "--source-name", f"bench-{run}-{tool}",
                            "--concurrency", str(writers)]
                took = timed(*ours, "apply", str(root / tool), "--kubeconfig", kubeconfig, *settings)
                print(f"first apply, reconcile apply --concurrency {writers}  {took:7.1f}s "
                      f"({took / limit - 1:+.0%} against the limit)")
            common = ["--kubeconfig", kubeconfig, "--database", str(root / "reconcile.db"),
                      "--source-name", f"bench-{run}-reconcile"]
            diff = [*kc, "diff", "--server-side", "--field-manager=bench", "-f", str(rendered["kubectl"])]
            theirs = timed(*diff)
            print(f"no-op, kubectl diff --server-side  {theirs:7.1f}s")
            for _ in range(3):
                took = timed(*ours, 'diff', str(root / 'reconcile'), *common)
                print(f"no-op, reconcile diff  {took:7.2f}s ({theirs / took:.0f}x faster; goal 20x)")
            # A pull request's runner: the cluster, but no state of this machine's recorded yet.
            fresh = [arg if arg != str(root / "reconcile.db") else str(root / "none.db") for arg in common]
            for _ in range(3):
                took = timed(*ours, 'diff', str(root / 'reconcile'), *fresh)
                print(f"no-op, reconcile diff with no state recorded here  {took:7.2f}s ({theirs / took:.0f}x faster)")
        finally:
            for prefix in prefixes.values():
                subprocess.run(kc + ["delete", "namespace", "--wait=false",
                                     *(f"{prefix}team-{t}" for t in range(50))],
                               check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
