"""Benchmark: how fast the operator brings many InferenceEndpoints to Ready, its memory,
and the watch traffic it receives, beside objects that are none of its business.

Runs the real ``kubeinfer operator`` in a subprocess against the Kubernetes API emulator
(tests/kubeemu, in this process, with a Deployment controller stand-in that makes
rollouts available after 50 ms). For each size it creates every endpoint at once (half
local models, half OpenAI proxies with their Secret), waits until all have a Deployment
and Ready=True, then changes the spec of all of them and waits until every one reports
the new observedGeneration, Ready and no rollout in progress. An endpoint the operator
refuses (Ready=False InvalidSpec) ends the run at once, named with its message.

Each size runs twice: alone, and beside ``--unrelated`` Secrets and as many Deployments
(unlabelled, in another namespace) created before the operator starts. The operator
watches its owned objects with a label selector and Secrets by metadata, so its memory
and watch traffic must not grow with them: the report gives both runs and their ratio.
The operator's peak RSS is its VmHWM from /proc; its CPU time (from /proc too) shows the
work done regardless of other load on the machine, which wall time does not. Watch
traffic is what the emulator wrote on the operator's watch streams (events and bytes),
per endpoint, with every unrelated object changed once during the run; lists are
counted in objects.

The baseline is the same run with the first size: the report gives per-endpoint time at
the largest against it (1.0 = linear scaling), and the targets (1000 Ready < 60 s,
< 300 MiB). ``--smoke`` runs a tiny size in seconds (make test runs it).

    .venv/bin/python -P bench/operator.py [--sizes 100,1000] [--unrelated 5000] [--smoke]
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp.web  # noqa: E402
from kubeemu import DEPLOYMENTS, INFERENCE_ENDPOINTS, SECRETS, EmulatedCluster, KubeEmulator  # noqa: E402

TARGET_SECONDS = 60.0
TARGET_MIB = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoint(i: int, ns: str) -> dict:
    if i % 2:
        spec = {"taskType": "completion", "service": "openai",
                "serviceSettings": {"model_id": "gpt-4o", "api_key": {"secretKeyRef": {"name": "openai", "key": "k"}}}}
    else:
        spec = {"taskType": "text_embedding", "service": "elasticsearch",
                "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": f"ep-{i:05d}", "namespace": ns}, "spec": spec}


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process: unlike wall time, not inflated by other load."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class WatchTraffic:
    """Counts what the emulator writes on watch streams, per resource (its plural), and
    the objects it answers lists with."""

    def __init__(self) -> None:
        self.events: collections.Counter[str] = collections.Counter()
        self.bytes: collections.Counter[str] = collections.Counter()
        self.listed: collections.Counter[str] = collections.Counter()
        self._write = aiohttp.web.StreamResponse.write
        self._list = KubeEmulator._list

    def __enter__(self) -> "WatchTraffic":
        traffic, original = self, self._write

        async def write(response: aiohttp.web.StreamResponse, data: bytes) -> None:
            request = getattr(response, "_req", None)
            if request is not None and request.query.get("watch") in ("true", "1") and b'"BOOKMARK"' not in data:
                resource = request.path.rstrip("/").rsplit("/", 1)[-1]
                traffic.events[resource] += data.count(b"\n")
                traffic.bytes[resource] += len(data)
            await original(response, data)

        def list_(emulator: KubeEmulator, request: object, key: str, ns: str | None) -> dict:
            listing = traffic._list(emulator, request, key, ns)
            traffic.listed[key.rsplit("/", 1)[-1]] += len(listing["items"])
            return listing

        aiohttp.web.StreamResponse.write = write  # type: ignore[method-assign]
        KubeEmulator._list = list_  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        aiohttp.web.StreamResponse.write = self._write  # type: ignore[method-assign]
        KubeEmulator._list = self._list  # type: ignore[method-assign]


def count_converged(cluster: EmulatedCluster, ns: str, generation: int) -> tuple[int, list[str]]:
    """How many endpoints are Ready at ``generation``, and those refused as invalid."""
    def count() -> tuple[int, list[str]]:
        emu = cluster.emulator
        done, refused = 0, []
        for (key, n, name), obj in emu.store.items():
            if key != INFERENCE_ENDPOINTS or n != ns:
                continue
            st = obj.get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or []}
            ready = conds.get("Ready", {})
            if ready.get("status") == "False" and ready.get("reason") == "InvalidSpec":
                refused.append(f"{name}: {ready.get('message')}")
            if (st.get("observedGeneration") == generation and ready.get("status") == "True"
                    and conds.get("Progressing", {}).get("status") != "True"
                    and (DEPLOYMENTS, n, name) in emu.store):
                done += 1
        return done, refused
    return cluster.call(count)


def wait_converged(cluster: EmulatedCluster, ns: str, n: int, generation: int, timeout: float,
                   proc: subprocess.Popen) -> float:
    start = time.monotonic()
    done = 0
    while True:
        try:
            done, refused = count_converged(cluster, ns, generation)
        except TimeoutError:  # the emulator's loop is busy serving: ask again
            refused = []
        if refused:
            raise SystemExit(f"{len(refused)} endpoint(s) refused as InvalidSpec, e.g.\n  " + "\n  ".join(refused[:5]))
        if done >= n:
            return time.monotonic() - start
        if proc.poll() is not None:
            raise SystemExit(f"the operator exited with {proc.returncode} ({done}/{n} converged)")
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out: {done}/{n} converged after {timeout}s")
        time.sleep(0.25)


def in_chunks(cluster: EmulatedCluster, count: int, each: Callable[[int], None], chunk: int = 50) -> None:
    """``each(i)`` for every ``i`` below ``count``, in the emulator's loop, a chunk per call
    (one call must end within its time limit)."""
    for start in range(0, count, chunk):
        def run(start: int = start) -> None:
            for i in range(start, min(start + chunk, count)):
                each(i)
        cluster.call(run)


def add_unrelated(cluster: EmulatedCluster, count: int) -> None:
    """``count`` Secrets and ``count`` Deployments that are none of the operator's business."""
    cluster.call(cluster.emulator.ensure_namespace, "unrelated")

    def create(i: int) -> None:
        emu = cluster.emulator
        emu.create(SECRETS, "unrelated", {"apiVersion": "v1", "kind": "Secret",
                                          "metadata": {"name": f"s-{i:05d}", "labels": {"app": "web"}},
                                          "data": {"token": "c2VjcmV0LXZhbHVlLW9mLWEtc29ydA==" * 8}})
        emu.create(DEPLOYMENTS, "unrelated", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"d-{i:05d}", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": f"d-{i:05d}"}},
                     "template": {"metadata": {"labels": {"app": f"d-{i:05d}"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    in_chunks(cluster, count, create)


def touch_unrelated(cluster: EmulatedCluster, count: int) -> None:
    """Change every unrelated object once, as a busy cluster does."""
    def touch(i: int) -> None:
        cluster.emulator.patch(SECRETS, "unrelated", f"s-{i:05d}", {"metadata": {"labels": {"rev": "2"}}}, "merge")
        cluster.emulator.patch(DEPLOYMENTS, "unrelated", f"d-{i:05d}", {"metadata": {"labels": {"rev": "2"}}}, "merge")
    in_chunks(cluster, count, touch)


def run_size(n: int, timeout: float, unrelated: int = 0) -> dict:
    ns = f"bench-{n}"
    with EmulatedCluster(rollout_delay=0.05, history_window=20_000) as cluster, \
            tempfile.TemporaryDirectory() as tmp, WatchTraffic() as traffic:
        kubeconfig = cluster.write_kubeconfig(Path(tmp) / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBEINFER_METRICS_PORT": "0",
               "KUBEINFER_LOG_LEVEL": "WARNING", "PYTHONSAFEPATH": "1"}
        cluster.call(cluster.emulator.ensure_namespace, ns)
        add_unrelated(cluster, unrelated)
        cluster.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": ns},
                                 "data": {"k": "c2stYmVuY2g="}})
        log = open(Path(tmp) / "operator.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "kubeinfer.cli", "operator",
             "--liveness", f"http://127.0.0.1:{free_port()}/healthz"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
        )
        try:
            time.sleep(2.0)  # let the operator start and list the (empty) cluster
            idle_mib = peak_rss_mib(proc.pid)
            cpu_start = cpu_seconds(proc.pid)
            emulator_start = time.process_time()

            in_chunks(cluster, n, lambda i: cluster.emulator.create(INFERENCE_ENDPOINTS, ns, endpoint(i, ns)))
            create_s = wait_converged(cluster, ns, n, 1, timeout, proc)
            cpu_created = cpu_seconds(proc.pid)

            def change(i: int) -> None:
                settings = endpoint(i, ns)["spec"]["serviceSettings"]
                patch = {"spec": {"serviceSettings": {**settings, "rate_limit": {"requests_per_minute": 100}}
                                  if i % 2 else {**settings, "num_threads": 2}}}
                cluster.emulator.patch(INFERENCE_ENDPOINTS, ns, f"ep-{i:05d}", patch, "merge")
            in_chunks(cluster, n, change)
            touch_unrelated(cluster, unrelated)
            update_s = wait_converged(cluster, ns, n, 2, timeout, proc)
            cpu_updated = cpu_seconds(proc.pid)
            emulator_cpu = time.process_time() - emulator_start
            peak = peak_rss_mib(proc.pid)
            requests = len(cluster.requests())
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            if proc.returncode not in (0, -15):
                print((Path(tmp) / "operator.log").read_text()[-3000:], file=sys.stderr)
    return {"n": n, "unrelated": unrelated, "watch_events": sum(traffic.events.values()),
            "watch_bytes": sum(traffic.bytes.values()), "watch_by_resource": dict(traffic.events),
            "listed": dict(traffic.listed), "create_s": create_s, "update_s": update_s, "idle_mib": idle_mib, "peak_mib": peak,
            "requests": requests, "create_cpu": cpu_created - cpu_start, "update_cpu": cpu_updated - cpu_created,
            "emulator_cpu": emulator_cpu,
            "load": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000",
                        help="comma-separated endpoint counts; the first is the baseline")
    parser.add_argument("--unrelated", type=int, default=5000,
                        help="unrelated Secrets (and as many Deployments) beside the endpoints in the second run")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.unrelated, args.timeout = "4", 40, 60
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for n in sizes:
        results.append(run_size(n, args.timeout))
        results.append(run_size(n, args.timeout, args.unrelated))
    base = results[0]
    print(f"{'endpoints':>9} {'unrelated':>9} {'create->Ready s':>16} {'spec change s':>14} {'per-CR ms':>10} "
          f"{'vs baseline':>12} {'operator CPU s':>15} {'emulator CPU s':>15} {'peak RSS MiB':>13} "
          f"{'idle MiB':>9} {'watch ev/CR':>12} {'watch KiB/CR':>13} {'API requests':>13} {'load':>5}")
    for r in results:
        per_cr = r["create_s"] / r["n"] * 1000
        ratio = (r["create_s"] / r["n"]) / (base["create_s"] / base["n"])
        cpu = f"{r['create_cpu']:.1f}+{r['update_cpu']:.1f}"
        print(f"{r['n']:>9} {r['unrelated']:>9} {r['create_s']:>16.1f} {r['update_s']:>14.1f} {per_cr:>10.1f} "
              f"{ratio:>11.2f}x {cpu:>15} {r['emulator_cpu']:>15.1f} {r['peak_mib']:>13.0f} {r['idle_mib']:>9.0f} "
              f"{r['watch_events'] / r['n']:>12.1f} {r['watch_bytes'] / r['n'] / 1024:>13.1f} "
              f"{r['requests']:>13} {r['load']:>5.1f}")
    for r in results:
        events = ", ".join(f"{k} {v}" for k, v in sorted(r["watch_by_resource"].items()))
        listed = ", ".join(f"{k} {v}" for k, v in sorted(r["listed"].items()))
        print(f"{r['n']} endpoints, {r['unrelated']} unrelated: watch events {events}; objects listed {listed}")
    largest, beside = results[-2], results[-1]
    print(f"baseline: {base['n']} endpoints in the same run; ratio = per-endpoint create time against it; "
          "operator CPU = create + spec change; emulator CPU = both phases; "
          "load = the machine's 1-minute load average at the end")
    print(f"target {largest['n']} Ready < {TARGET_SECONDS:.0f} s: {largest['create_s']:.1f} s "
          f"({'met' if largest['create_s'] < TARGET_SECONDS else 'MISSED'}); "
          f"spec change {largest['update_s']:.1f} s "
          f"({'met' if largest['update_s'] < TARGET_SECONDS else 'MISSED'})")
    print(f"target peak RSS < {TARGET_MIB:.0f} MiB: {largest['peak_mib']:.0f} MiB "
          f"({'met' if largest['peak_mib'] < TARGET_MIB else 'MISSED'})")
    print(f"beside {beside['unrelated']} unrelated Secrets and Deployments: peak RSS "
          f"{beside['peak_mib'] / largest['peak_mib']:.2f}x, watch events "
          f"{beside['watch_events'] / max(largest['watch_events'], 1):.2f}x the run without them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
