"""Benchmark: how fast the operator brings many InferenceEndpoints to Ready, and its memory.

Runs the real ``kubeinfer operator`` in a subprocess against the Kubernetes API emulator
(tests/kubeemu, in this process, with a Deployment controller stand-in that makes
rollouts available after 50 ms). For each size it creates every endpoint at once (half
local models, half OpenAI proxies with their Secret), waits until all have a Deployment
and Ready=True, then changes the spec of all of them and waits until every one reports
the new observedGeneration, Ready and no rollout in progress. The operator's peak RSS is
its VmHWM from /proc; its CPU time (from /proc too) shows the work done regardless of
other load on the machine, which wall time does not.

The baseline is the same run with 100 endpoints: the report gives per-endpoint time at
1000 against it (1.0 = linear scaling), and the targets (1000 Ready < 60 s, < 300 MiB).

    .venv/bin/python -P bench/operator.py [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kubeemu import DEPLOYMENTS, INFERENCE_ENDPOINTS, SECRETS, EmulatedCluster  # noqa: E402

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
                "serviceSettings": {"model_id": ".multilingual-e5-small", "num_threads": 1}}
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


def count_converged(cluster: EmulatedCluster, ns: str, generation: int) -> int:
    def count() -> int:
        emu = cluster.emulator
        done = 0
        for (key, n, name), obj in emu.store.items():
            if key != INFERENCE_ENDPOINTS or n != ns:
                continue
            st = obj.get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or []}
            ready = conds.get("Ready", {})
            if (st.get("observedGeneration") == generation and ready.get("status") == "True"
                    and conds.get("Progressing", {}).get("status") != "True"
                    and (DEPLOYMENTS, n, name) in emu.store):
                done += 1
        return done
    return cluster.call(count)


def wait_converged(cluster: EmulatedCluster, ns: str, n: int, generation: int, timeout: float) -> float:
    start = time.monotonic()
    while count_converged(cluster, ns, generation) < n:
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out: {count_converged(cluster, ns, generation)}/{n} converged after {timeout}s")
        time.sleep(0.25)
    return time.monotonic() - start


def run_size(n: int, timeout: float) -> dict:
    ns = f"bench-{n}"
    with EmulatedCluster(rollout_delay=0.05) as cluster, tempfile.TemporaryDirectory() as tmp:
        kubeconfig = cluster.write_kubeconfig(Path(tmp) / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBEINFER_METRICS_PORT": "0",
               "KUBEINFER_LOG_LEVEL": "WARNING", "PYTHONSAFEPATH": "1"}
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

            def create_all() -> None:
                for i in range(n):
                    cluster.emulator.create(INFERENCE_ENDPOINTS, ns, endpoint(i, ns))
            cluster.call(create_all)
            create_s = wait_converged(cluster, ns, n, 1, timeout)
            cpu_created = cpu_seconds(proc.pid)

            def change_all() -> None:
                for i in range(n):
                    name = f"ep-{i:05d}"
                    settings = endpoint(i, ns)["spec"]["serviceSettings"]
                    patch = {"spec": {"serviceSettings": {**settings, "rate_limit": {"requests_per_minute": 100}}
                                      if i % 2 else {**settings, "num_threads": 2}}}
                    cluster.emulator.patch(INFERENCE_ENDPOINTS, ns, name, patch, "merge")
            cluster.call(change_all)
            update_s = wait_converged(cluster, ns, n, 2, timeout)
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
    return {"n": n, "create_s": create_s, "update_s": update_s, "idle_mib": idle_mib, "peak_mib": peak,
            "requests": requests, "create_cpu": cpu_created - cpu_start, "update_cpu": cpu_updated - cpu_created,
            "emulator_cpu": emulator_cpu,
            "load": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000",
                        help="comma-separated endpoint counts; the first is the baseline")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = [run_size(n, args.timeout) for n in sizes]
    base = results[0]
    print(f"{'endpoints':>9} {'create->Ready s':>16} {'spec change s':>14} {'per-CR ms':>10} "
          f"{'vs baseline':>12} {'operator CPU s':>15} {'emulator CPU s':>15} {'peak RSS MiB':>13} "
          f"{'idle MiB':>9} {'API requests':>13} {'load':>5}")
    for r in results:
        per_cr = r["create_s"] / r["n"] * 1000
        ratio = (r["create_s"] / r["n"]) / (base["create_s"] / base["n"])
        cpu = f"{r['create_cpu']:.1f}+{r['update_cpu']:.1f}"
        print(f"{r['n']:>9} {r['create_s']:>16.1f} {r['update_s']:>14.1f} {per_cr:>10.1f} {ratio:>11.2f}x "
              f"{cpu:>15} {r['emulator_cpu']:>15.1f} {r['peak_mib']:>13.0f} {r['idle_mib']:>9.0f} "
              f"{r['requests']:>13} {r['load']:>5.1f}")
    largest = results[-1]
    print(f"baseline: {base['n']} endpoints in the same run; ratio = per-endpoint create time against it; "
          "operator CPU = create + spec change; emulator CPU = both phases; "
          "load = the machine's 1-minute load average at the end")
    print(f"target {largest['n']} Ready < {TARGET_SECONDS:.0f} s: {largest['create_s']:.1f} s "
          f"({'met' if largest['create_s'] < TARGET_SECONDS else 'MISSED'}); "
          f"spec change {largest['update_s']:.1f} s "
          f"({'met' if largest['update_s'] < TARGET_SECONDS else 'MISSED'})")
    print(f"target peak RSS < {TARGET_MIB:.0f} MiB: {largest['peak_mib']:.0f} MiB "
          f"({'met' if largest['peak_mib'] < TARGET_MIB else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
