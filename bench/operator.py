"""Benchmark: how fast the operator brings many InferenceEndpoints to Ready, its memory,
and the watch traffic it receives, beside objects that are none of its business.

Runs the real ``kubeinfer operator`` in a subprocess against an API server:
``--apiserver emulator`` is the Kubernetes API emulator (tests/kubeemu, in this process,
with a Deployment controller stand-in that makes rollouts available after 50 ms);
``--apiserver real`` is Kubernetes' own control plane (tests/controlplane: etcd,
kube-apiserver, the controller manager and the scheduler, with KWOK running the pods on
a fake node), so a rollout is the real Deployment controller's; ``both`` (the default)
runs one, then the other, and prints their ratios. For each size it creates every
endpoint at once (half local models, half OpenAI proxies with their Secret), waits until
all have a Deployment and Ready=True, then changes the spec of all of them and waits
until every one reports the new observedGeneration, Ready and no rollout in progress. An
endpoint the operator refuses (Ready=False InvalidSpec) ends the run at once, named with
its message.

Each size runs twice: alone, and beside ``--unrelated`` Secrets and as many Deployments
(unlabelled, at zero replicas, in another namespace) created before the operator
starts. The operator watches its owned objects with a label selector and Secrets by
metadata, so its memory and watch traffic must not grow with them: the report gives both
runs and their ratio. The operator's peak RSS is its VmHWM from /proc; its CPU time (from
/proc too) shows the work done regardless of other load on the machine, which wall time
does not. Watch traffic is what the emulator wrote on the operator's watch streams
(events and bytes), per endpoint, with every unrelated object changed once during the
run; lists are counted in objects (the emulator's figures only).

The baseline is the same run with the first size on the same API server: the report
gives per-endpoint time at the largest against it (1.0 = linear scaling), and the
targets (1000 Ready < 60 s, < 300 MiB). ``--smoke`` runs a tiny size on both API servers
in under a minute (make test runs it).

    .venv/bin/python -P bench/operator.py [--apiserver both] [--sizes 100,1000] [--unrelated 5000] [--smoke]
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
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
from controlplane import ControlPlane  # noqa: E402
from controlplane.client import RealCluster  # noqa: E402
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


class EmulatorAPI:
    """The Kubernetes API emulator in this process, driven inside its own loop."""

    name = "emulator"

    def __init__(self) -> None:
        self.cluster = EmulatedCluster(rollout_delay=0.05, history_window=20_000)

    def __enter__(self) -> "EmulatorAPI":
        self.cluster.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.stop()

    def kubeconfig(self, path: Path) -> Path:
        return self.cluster.write_kubeconfig(path)

    def namespace(self, ns: str) -> None:
        self.cluster.call(self.cluster.emulator.ensure_namespace, ns)

    def create_all(self, key: str, ns: str, objs: Callable[[int], dict], count: int) -> None:
        self._chunks(count, lambda i: self.cluster.emulator.create(key, ns, objs(i)))

    def patch_all(self, key: str, ns: str, name: Callable[[int], str], patch: Callable[[int], dict], count: int) -> None:
        self._chunks(count, lambda i: self.cluster.emulator.patch(key, ns, name(i), patch(i), "merge"))

    def _chunks(self, count: int, each: Callable[[int], None], chunk: int = 50) -> None:
        """``each(i)`` for every ``i`` below ``count``, in the emulator's loop, a chunk per call
        (the loop serves the operator between chunks; on a loaded machine a chunk may wait)."""
        for start in range(0, count, chunk):
            def run(start: int = start) -> None:
                for i in range(start, min(start + chunk, count)):
                    each(i)
            self.cluster.call(run, call_timeout=120)

    def items(self, key: str, ns: str) -> list[dict]:
        def listed() -> list[dict]:
            return [obj for (k, n, _), obj in self.cluster.emulator.store.items() if k == key and n == ns]
        return self.cluster.call(listed, call_timeout=120)

    def requests(self) -> int | None:
        return len(self.cluster.requests())

    def reset(self) -> None:
        """A fresh emulator for the next run."""
        self.cluster.stop()
        self.cluster = EmulatedCluster(rollout_delay=0.05, history_window=20_000).start()


class RealAPI:
    """Kubernetes' own control plane (tests/controlplane): etcd, kube-apiserver, the
    controllers and the scheduler, with KWOK running the pods; one for the whole run."""

    name = "real"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.plane = ControlPlane(Path(self._tmp.name))
        self.cluster: RealCluster

    def __enter__(self) -> "RealAPI":
        self.plane.up()
        self.cluster = RealCluster(self.plane)
        self.cluster.install_crds(ROOT / "crds")
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.close()
        self.plane.down()
        self._tmp.cleanup()

    def kubeconfig(self, path: Path) -> Path:
        return self.cluster.write_kubeconfig(path)

    def namespace(self, ns: str) -> None:
        self.cluster.create_namespace(ns)

    def _each(self, count: int, call: Callable[[int], object]) -> None:
        # As many writes in flight as a busy client would have; the server's own limits decide.
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for future in [pool.submit(call, i) for i in range(count)]:
                future.result()

    def create_all(self, key: str, ns: str, objs: Callable[[int], dict], count: int) -> None:
        self._each(count, lambda i: self.cluster.create(key, objs(i), ns, ensure_namespace=False))

    def patch_all(self, key: str, ns: str, name: Callable[[int], str], patch: Callable[[int], dict], count: int) -> None:
        self._each(count, lambda i: self.cluster.patch(key, ns, name(i), patch(i)))

    def items(self, key: str, ns: str) -> list[dict]:
        return self.cluster.list(key, ns)

    def requests(self) -> int | None:
        return None  # the API server's own counters would mix in its controllers' requests

    def reset(self) -> None:
        for ns in self.cluster.list("v1/namespaces"):
            if ns["metadata"]["name"].startswith(("bench-", "unrelated")):
                self.cluster.delete("v1/namespaces", None, ns["metadata"]["name"])
        self.cluster.wait_until(lambda: not any(ns["metadata"]["name"].startswith(("bench-", "unrelated"))
                                                for ns in self.cluster.list("v1/namespaces")),
                                timeout=600, message="the last run's namespaces deleted")


def count_converged(api, ns: str, generation: int) -> tuple[int, list[str]]:
    """How many endpoints are Ready at ``generation``, and those refused as invalid."""
    deployments = {d["metadata"]["name"] for d in api.items(DEPLOYMENTS, ns)}
    done, refused = 0, []
    for obj in api.items(INFERENCE_ENDPOINTS, ns):
        name = obj["metadata"]["name"]
        st = obj.get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        ready = conds.get("Ready", {})
        if ready.get("status") == "False" and ready.get("reason") == "InvalidSpec":
            refused.append(f"{name}: {ready.get('message')}")
        if (st.get("observedGeneration") == generation and ready.get("status") == "True"
                and conds.get("Progressing", {}).get("status") != "True" and name in deployments):
            done += 1
    return done, refused


def wait_converged(api, ns: str, n: int, generation: int, timeout: float, proc: subprocess.Popen) -> float:
    start = time.monotonic()
    done = 0
    while True:
        try:
            done, refused = count_converged(api, ns, generation)
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
        time.sleep(0.25 if api.name == "emulator" else 1.0)


def unrelated_secret(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s-{i:05d}", "labels": {"app": "web"}},
            "data": {"token": base64.b64encode(b"secret-value-of-a-sort" * 8).decode()}}


def unrelated_deployment(i: int) -> dict:
    # No replicas: on the real control plane, thousands of pods would measure KWOK, not the operator.
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"d-{i:05d}", "labels": {"app": "web"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": f"d-{i:05d}"}},
                     "template": {"metadata": {"labels": {"app": f"d-{i:05d}"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}


def run_size(api, n: int, timeout: float, unrelated: int = 0) -> dict:
    """``count`` Secrets and ``count`` Deployments that are none of the operator's business
    are made first; each is changed once while the endpoints' specs change, as a busy
    cluster does."""
    ns = f"bench-{n}"
    with tempfile.TemporaryDirectory() as tmp, WatchTraffic() as traffic:
        kubeconfig = api.kubeconfig(Path(tmp) / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBEINFER_METRICS_PORT": "0",
               "KUBEINFER_LOG_LEVEL": "WARNING", "PYTHONSAFEPATH": "1"}
        api.namespace(ns)
        if unrelated:
            api.namespace("unrelated")
            api.create_all(SECRETS, "unrelated", unrelated_secret, unrelated)
            api.create_all(DEPLOYMENTS, "unrelated", unrelated_deployment, unrelated)
        api.create_all(SECRETS, ns, lambda i: {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai"},
                                               "data": {"k": "c2stYmVuY2g="}}, 1)
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

            api.create_all(INFERENCE_ENDPOINTS, ns, lambda i: endpoint(i, ns), n)
            create_s = wait_converged(api, ns, n, 1, timeout, proc)
            cpu_created = cpu_seconds(proc.pid)

            def change(i: int) -> dict:
                settings = endpoint(i, ns)["spec"]["serviceSettings"]
                return {"spec": {"serviceSettings": {**settings, "rate_limit": {"requests_per_minute": 100}}
                                 if i % 2 else {**settings, "num_threads": 2}}}
            api.patch_all(INFERENCE_ENDPOINTS, ns, lambda i: f"ep-{i:05d}", change, n)
            for key in (SECRETS, DEPLOYMENTS) if unrelated else ():
                api.patch_all(key, "unrelated", lambda i, k=key: f"{'s' if k == SECRETS else 'd'}-{i:05d}",
                              lambda i: {"metadata": {"labels": {"rev": "2"}}}, unrelated)
            update_s = wait_converged(api, ns, n, 2, timeout, proc)
            cpu_updated = cpu_seconds(proc.pid)
            emulator_cpu = time.process_time() - emulator_start
            peak = peak_rss_mib(proc.pid)
            requests = api.requests()
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            if proc.returncode not in (0, -15):
                print((Path(tmp) / "operator.log").read_text()[-3000:], file=sys.stderr)
            api.reset()
    return {"apiserver": api.name, "n": n, "unrelated": unrelated, "watch_events": sum(traffic.events.values()),
            "watch_bytes": sum(traffic.bytes.values()), "watch_by_resource": dict(traffic.events),
            "listed": dict(traffic.listed), "create_s": create_s, "update_s": update_s, "idle_mib": idle_mib,
            "peak_mib": peak, "requests": requests, "create_cpu": cpu_created - cpu_start,
            "update_cpu": cpu_updated - cpu_created, "emulator_cpu": emulator_cpu if api.name == "emulator" else None,
            "load": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000",
                        help="comma-separated endpoint counts; the first is the baseline")
    parser.add_argument("--unrelated", type=int, default=5000,
                        help="unrelated Secrets (and as many Deployments) beside the endpoints in the second run")
    parser.add_argument("--apiserver", choices=("emulator", "real", "both"), default="both",
                        help="the API server to run against: tests/kubeemu, Kubernetes' own control plane "
                             "(tests/controlplane, built with Go), or both in turn")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.unrelated, args.timeout = "4", 40, 120
    sizes = [int(s) for s in args.sizes.split(",")]
    apis = {"emulator": [EmulatorAPI], "real": [RealAPI], "both": [EmulatorAPI, RealAPI]}[args.apiserver]
    results = []
    for make_api in apis:
        with make_api() as api:
            for n in sizes:
                results.append(run_size(api, n, args.timeout))
                results.append(run_size(api, n, args.timeout, args.unrelated))
    print(f"{'apiserver':>9} {'endpoints':>9} {'unrelated':>9} {'create->Ready s':>16} {'spec change s':>14} "
          f"{'per-CR ms':>10} {'vs baseline':>12} {'operator CPU s':>15} {'emulator CPU s':>15} "
          f"{'peak RSS MiB':>13} {'idle MiB':>9} {'watch ev/CR':>12} {'watch KiB/CR':>13} {'API requests':>13} "
          f"{'load':>5}")
    for r in results:
        base = next(b for b in results if b["apiserver"] == r["apiserver"])
        per_cr = r["create_s"] / r["n"] * 1000
        ratio = (r["create_s"] / r["n"]) / (base["create_s"] / base["n"])
        cpu = f"{r['create_cpu']:.1f}+{r['update_cpu']:.1f}"
        emulated = r["apiserver"] == "emulator"
        print(f"{r['apiserver']:>9} {r['n']:>9} {r['unrelated']:>9} {r['create_s']:>16.1f} {r['update_s']:>14.1f} "
              f"{per_cr:>10.1f} {ratio:>11.2f}x {cpu:>15} "
              f"{(format(r['emulator_cpu'], '.1f') if emulated else '-'):>15} {r['peak_mib']:>13.0f} "
              f"{r['idle_mib']:>9.0f} "
              f"{(format(r['watch_events'] / r['n'], '.1f') if emulated else '-'):>12} "
              f"{(format(r['watch_bytes'] / r['n'] / 1024, '.1f') if emulated else '-'):>13} "
              f"{(r['requests'] if emulated else '-'):>13} {r['load']:>5.1f}")
    for r in results:
        if r["apiserver"] == "emulator":
            events = ", ".join(f"{k} {v}" for k, v in sorted(r["watch_by_resource"].items()))
            listed = ", ".join(f"{k} {v}" for k, v in sorted(r["listed"].items()))
            print(f"{r['n']} endpoints, {r['unrelated']} unrelated: watch events {events}; objects listed {listed}")
    print("baseline: the first size on the same API server in the same run; ratio = per-endpoint create time "
          "against it; operator CPU = create + spec change; emulator CPU = both phases (watch and request counts "
          "are the emulator's, which sees every byte); load = the machine's 1-minute load average at the end")
    for name in dict.fromkeys(r["apiserver"] for r in results):
        mine = [r for r in results if r["apiserver"] == name]
        largest, beside = mine[-2], mine[-1]
        print(f"{name}: target {largest['n']} Ready < {TARGET_SECONDS:.0f} s: {largest['create_s']:.1f} s "
              f"({'met' if largest['create_s'] < TARGET_SECONDS else 'MISSED'}); "
              f"spec change {largest['update_s']:.1f} s "
              f"({'met' if largest['update_s'] < TARGET_SECONDS else 'MISSED'})")
        print(f"{name}: target peak RSS < {TARGET_MIB:.0f} MiB: {largest['peak_mib']:.0f} MiB "
              f"({'met' if largest['peak_mib'] < TARGET_MIB else 'MISSED'})")
        traffic = (f", watch events {beside['watch_events'] / max(largest['watch_events'], 1):.2f}x"
                   if name == "emulator" else "")
        print(f"{name}: beside {beside['unrelated']} unrelated Secrets and Deployments: peak RSS "
              f"{beside['peak_mib'] / largest['peak_mib']:.2f}x{traffic} the run without them")
    if len(apis) == 2:
        for n in sizes:
            emulated, real = (next(r for r in results if r["apiserver"] == a and r["n"] == n and not r["unrelated"])
                              for a in ("emulator", "real"))
            print(f"real vs emulator, {n} endpoints: create->Ready x{real['create_s'] / emulated['create_s']:.2f}, "
                  f"spec change x{real['update_s'] / emulated['update_s']:.2f}, "
                  f"operator CPU x{(real['create_cpu'] + real['update_cpu']) / max(emulated['create_cpu'] + emulated['update_cpu'], 1e-9):.2f}, "
                  f"peak RSS x{real['peak_mib'] / emulated['peak_mib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
