"""Requests per second and latency through the chat endpoint vs straight to the LiteLLM gateway:
same fake upstream model, same concurrency, same messages.

Each phase runs its routes in interleaved rounds, each round starting with another route. The
direct route runs twice: the second copy is a control, and what it "adds" shows how finely the
benchmark resolves. A bare relay (an aiohttp server passing requests on, no database, no checks)
shows what any hop in front of the gateway costs at the least. Round-by-round figures pair each
round with the direct round beside it, so a stall of the gateway (its p99) weighs on one round,
not on a whole route.

The fake model, the LiteLLM proxy and `reconcile serve` (on a fresh PostgreSQL database) each run
in their own process; the load comes from this one. Needs .venv-gateway (scripts/test makes it).

With --split-cpus, the gateway runs on CPU 0 and everything else (this load, the fake model,
`reconcile serve` and its PostgreSQL backends) on CPU 1, as when the gateway has its own pods:
the figures then show what the endpoint adds, without its CPU being taken from the gateway's.
Where the two CPUs share one cache, work on CPU 1 still slows the gateway (its CPU per request is
printed). The endpoint's own part of each request, its latency less the gateway's part as the
endpoint's Server-Timing header gives it, is printed apart from that.

Usage: python benchmarks/chat_endpoint.py [--split-cpus] [--rounds N] [REQUESTS] [CONCURRENCY]
(at concurrency 16 one round of 100 requests varies by about 10 ms at p50 even on the control route:
more rounds narrow what a run can resolve, about as the square root of their number)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx
from chatting import AGENTS, server_timing
from databases import postgres_database
from litellm_gateway import INSTALL_HINT, LiteLLMGateway, find_litellm, free_port

# A hop that only passes requests on (aiohttp server and client, no database, no checks): what any
# service between the caller and the gateway costs at the least.
RELAY = """
import sys
import aiohttp
from aiohttp import web

async def client(app):
    app["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    yield
    await app["client"].close()

async def relay(request):
    async with request.app["client"].post(sys.argv[1] + "/v1/chat/completions", data=await request.read(),
            headers={"Authorization": request.headers["Authorization"], "Content-Type": "application/json"}) as answer:
        return web.Response(body=await answer.read(), status=answer.status, content_type="application/json")

app = web.Application()
app.cleanup_ctx.append(client)
app.router.add_post("/v1/chat/completions", relay)
app.router.add_get("/healthz", lambda _: web.Response(text="ok"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None)
"""
MESSAGE = "my printer is on fire, what should I do first?"


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@dataclass
class Round:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    # Per request, from the endpoint's Server-Timing header: the latency less the gateway's part.
    own: list[float] = field(default_factory=list)


async def load(call: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]], requests: int,
               concurrency: int) -> Round:
    result = Round(0.0)
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                answer = await call(client)
                took = time.perf_counter() - started
                if answer.status_code != 200:
                    raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")
                result.latencies.append(took)
                gateway = server_timing(answer).get("gateway")
                if gateway is not None:
                    result.own.append(took - gateway / 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
        return result


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its children, from /proc; None once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu_used(pids: list[int], before: dict[int, float | None]) -> float:
    """CPU seconds the processes used since `before` (their cpu_seconds then); one gone since counts 0."""
    used = 0.0
    for pid in pids:
        now, then = cpu_seconds(pid), before[pid]
        if now is not None and then is not None:
            used += now - then
    return used


def figures(name: str, seconds: float, latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    rps = len(ordered) / seconds
    print(f"{name:34} {rps:8.1f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    return rps, p50


def compare(routes: dict[str, Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]],
            watched: dict[str, list[int]], requests: int, concurrency: int, round_count: int) -> None:
    print(f"\n{requests} requests per route, concurrency {concurrency}, in {round_count} interleaved rounds "
          "(the gateway's speed drifts; interleaving spreads the drift over every route)")
    for call in routes.values():
        asyncio.run(load(call, concurrency * 4, concurrency))  # warm-up, not measured
    rounds: dict[str, list[Round]] = {name: [] for name in routes}
    cpu: dict[str, dict[str, float]] = {name: dict.fromkeys(watched, 0.0) for name in routes}
    names = list(routes)
    for number in range(round_count):
        # Each round starts with another route: a route never always runs right after the same one.
        for name in names[number % len(names):] + names[:number % len(names)]:
            call = routes[name]
            before = {pid: cpu_seconds(pid) for pids in watched.values() for pid in pids}
            rounds[name].append(asyncio.run(load(call, requests // round_count, concurrency)))
            for k, pids in watched.items():
                cpu[name][k] += cpu_used(pids, before)
    results = {}
    for name in routes:
        seconds = sum(r.seconds for r in rounds[name])
        latencies = [x for r in rounds[name] for x in r.latencies]
        results[name] = figures(name, seconds, latencies)
        print(" " * 35 + "CPU per request: " + ", ".join(
            f"{k} {v * 1000 / len(latencies):.1f} ms" for k, v in cpu[name].items() if v))
        own = sorted(x for r in rounds[name] for x in r.own)
        if own:
            print(" " * 35 + f"its own part (latency less the gateway's, by Server-Timing): "
                  f"p50 {statistics.median(own) * 1000:.1f} ms, p99 {own[int(len(own) * 0.99)] * 1000:.1f} ms")
    base_rps, base_p50 = results["gateway directly"]
    direct = rounds["gateway directly"]
    for name in list(routes)[1:]:
        rps, p50 = results[name]
        print(f"{name}: {p50 - base_p50:+.1f} ms at p50, {100 * rps / base_rps:.0f}% of the direct throughput")
        # The gateway stalls now and then (p99); a stall lands on one route's round. Pairing each round
        # with the direct round next to it, the median over rounds is what the endpoint itself adds.
        added = [statistics.median(r.latencies) * 1000 - statistics.median(d.latencies) * 1000
                 for r, d in zip(rounds[name], direct)]
        share = [100 * d.seconds / r.seconds for r, d in zip(rounds[name], direct)]
        print(" " * 4 + f"round by round: median {statistics.median(added):+.1f} ms at p50 "
              f"(quartiles {quartiles(added, '+.1f')}), median {statistics.median(share):.0f}% of the "
              f"direct throughput (quartiles {quartiles(share, '.0f')})")


def quartiles(values: list[float], spec: str) -> str:
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:{spec}} to {high:{spec}}"


def postgres_backends(database: str) -> list[int]:
    import psycopg
    from databases import POSTGRES
    name = database.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        return [pid for (pid,) in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split-cpus", action="store_true", help="the gateway on CPU 0, everything else on CPU 1")
    parser.add_argument("--rounds", type=int, default=16, help="interleaved rounds per phase (default 16)")
    parser.add_argument("requests", type=int, nargs="?", default=1600, help="requests per route (default 1600)")
    parser.add_argument("concurrency", type=int, nargs="?", default=16, help="default 16")
    options = parser.parse_args()
    split, rounds, requests, concurrency = options.split_cpus, options.rounds, options.requests, options.concurrency
    if split and len(os.sched_getaffinity(0)) < 2:
        sys.exit("--split-cpus needs two CPUs")
    if split:
        # Children inherit the CPUs of the thread that starts them.
        os.sched_setaffinity(0, {1})
    binary = find_litellm()
    if binary is None:
        sys.exit(f"the LiteLLM proxy is not installed: {INSTALL_HINT}")
    tmp = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    upstream_port, serve_port, relay_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {str(ROOT / 'tests')!r})
        from fakellm import FakeModelServer
        FakeModelServer(port={upstream_port}).start()
        time.sleep(10**6)""")])
    processes: list[subprocess.Popen[bytes]] = [upstream]
    gateway = LiteLLMGateway(binary, f"http://127.0.0.1:{upstream_port}/v1", tmp)
    try:
        wait_for(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        if split:
            os.sched_setaffinity(0, {0})
        gateway.start()
        if split:
            os.sched_setaffinity(0, {1})
        with postgres_database() as database:
            (tmp / "agents").mkdir()
            (tmp / "agents" / "agents.yaml").write_text(AGENTS)
            reconcile = [sys.executable, "-m", "reconciler"]
            env = {**os.environ, "DATABASE_URL": database, "LITELLM_API_BASE": gateway.url,
                   "LITELLM_API_KEY": gateway.key}
            subprocess.run([*reconcile, "migrate"], env=env, check=True, capture_output=True)
            subprocess.run([*reconcile, "apply", str(tmp / "agents")], env=env, check=True, capture_output=True)
            key = subprocess.run([*reconcile, "keys", "create", "bench"], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()
            serve = subprocess.Popen([*reconcile, "serve", "--listen", f"127.0.0.1:{serve_port}"], env=env,
                                     stderr=subprocess.DEVNULL)
            processes.append(serve)
            wait_for(f"http://127.0.0.1:{serve_port}/healthz", serve)
            relay = subprocess.Popen([sys.executable, "-c", RELAY, gateway.url, str(relay_port)])
            processes.append(relay)
            wait_for(f"http://127.0.0.1:{relay_port}/healthz", relay)

            direct_body = {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 256, "messages": [
                {"role": "system", "content": "You triage support tickets."}, {"role": "user", "content": MESSAGE}]}

            def direct(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                return client.post(f"{gateway.url}/v1/chat/completions", json=direct_body,
                                   headers={"Authorization": f"Bearer {gateway.key}"})

            def relayed(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                return client.post(f"http://127.0.0.1:{relay_port}/v1/chat/completions", json=direct_body,
                                   headers={"Authorization": f"Bearer {gateway.key}"})

            def native(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                return client.post(f"http://127.0.0.1:{serve_port}/v1/agents/support/triage/chat",
                                   json={"message": MESSAGE}, headers={"Authorization": f"Bearer {key}"})

            def compatible(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                return client.post(f"http://127.0.0.1:{serve_port}/v1/chat/completions",
                                   json={"model": "support/triage", "messages": [{"role": "user", "content": MESSAGE}]},
                                   headers={"Authorization": f"Bearer {key}"})

            # The direct route twice: what the second copy "adds" is the benchmark's own noise.
            routes = {"gateway directly": direct, "gateway directly (control)": direct,
                      "bare relay (no database)": relayed, "endpoint /v1/agents/.../chat": native,
                      "endpoint /v1/chat/completions": compatible}
            assert gateway.process is not None
            # serve's database connections are opened by its first requests: warm up, then find them.
            for call in routes.values():
                asyncio.run(load(call, concurrency * 2, concurrency))
            backends = postgres_backends(database)
            watched = {"gateway": [gateway.process.pid], "serve": [serve.pid], "its PostgreSQL": backends,
                       "relay": [relay.pid], "model": [upstream.pid]}
            if split:
                for pid in backends:
                    os.sched_setaffinity(pid, {1})
                print("CPU 0: the gateway; CPU 1: load, fake model, serve and its PostgreSQL backends")
            compare(routes, watched, requests, concurrency, rounds)
            # One at a time: the endpoint's own latency, without the CPU contention of a saturated machine.
            compare(routes, watched, max(rounds * 5, requests // 4), 1, rounds)
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        gateway.stop()


if __name__ == "__main__":
    main()
