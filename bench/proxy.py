"""Proxy overhead: kubeinfer's provider proxy against LiteLLM's proxy, in front of the
same local fake OpenAI server that answers at once.

Three targets, each measured in this run on this machine:
  direct     the fake OpenAI server itself (POST /v1/embeddings) - the floor;
  kubeinfer  `kubeinfer serve`'s app for an openai text_embedding endpoint
             (POST /_inference/text_embedding/bench) in front of the fake;
  litellm    LiteLLM's proxy (`litellm --config`, POST /v1/embeddings) in front of the
             fake - the named baseline, one uvicorn worker as it starts by default.
             Skipped, with a message, if LiteLLM's proxy is not installed; it is not a
             kubeinfer dependency and goes in a venv of its own, from which this script
             then runs: `python -m pip install 'litellm[proxy]' torch==2.13.0` (the torch
             pin keeps the CPU build of a copied project venv).

Two phases per target: one client sending requests one after another (latency: p50
and p99, and what the proxy adds to the direct p50), then many concurrent keep-alive
clients for a fixed time (throughput in requests per second, p50/p99 under load).
Each server runs in its own process under uvicorn; the load generator is a minimal
HTTP/1.1 keep-alive client so that it costs every target the same.

    python -P bench/proxy.py [--concurrency 32] [--duration 5] [--sequential 400] [--rounds 3]
    python -P bench/proxy.py --smoke    # a few seconds, tiny sizes: does it still run?
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
EMBEDDING = [0.0125 * i for i in range(16)]
# Every target gets the same Authorization header; LiteLLM's proxy checks it.
MASTER_KEY = "sk-" + secrets.token_hex(24)
INPUT = ["the quick brown fox jumps over the lazy dog"]
LITELLM_INSTALL = "pip install 'litellm[proxy]' torch==2.13.0"


# ---- the servers (each runs as `python -P bench/proxy.py --serve NAME --port P`) ----------

async def fake_openai(scope, receive, send):
    """The OpenAI embeddings API, answering at once."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    count = len(json.loads(body or b"{}").get("input") or [1]) if scope["method"] == "POST" else 0
    payload = json.dumps({
        "object": "list", "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": i, "embedding": EMBEDDING} for i in range(count)],
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def serve(name: str, port: int, upstream: int) -> None:
    import uvicorn

    if name == "direct":
        uvicorn.run(fake_openai, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    # As `kubeinfer serve` runs it, from the endpoint's config on.
    from kubeinfer.catalog import parse_endpoint
    from kubeinfer.config import ServerSettings
    from model_server.api.serve import serve as serve_endpoint
    from model_server.backends.providers.outbound import OutboundHTTP
    from model_server.backends.registry import create_backend

    config = parse_endpoint("bench", "text_embedding", {"service": "openai", "service_settings": {
        "api_key": "sk-bench", "model_id": "text-embedding-3-small", "url": f"http://127.0.0.1:{upstream}/v1",
        "rate_limit": {"requests_per_minute": 1_000_000_000}}})
    outbound = OutboundHTTP(ServerSettings.from_env())
    serve_endpoint(config, create_backend(config, outbound=outbound), "127.0.0.1", port, log_level="warning",
                   outbound=outbound)


# ---- the load generator -------------------------------------------------------------------

class Connection:
    """One HTTP/1.1 keep-alive connection sending the same POST again and again."""

    def __init__(self, port: int, path: str, body: bytes, key: str) -> None:
        self.port = port
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def open(self) -> "Connection":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def send(self) -> tuple[int, bytes]:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        body = b""
        while True:  # chunked
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return status, body
            body += chunk[:-2]

    def close(self) -> None:
        self.writer.close()


def check(status: int, body: bytes) -> bool:
    if status != 200:
        return False
    answer = json.loads(body)
    vectors = answer.get("text_embedding") or answer.get("data")
    return bool(vectors) and (vectors[0].get("embedding") == EMBEDDING)


async def sequential(port: int, path: str, body: bytes, count: int) -> dict:
    conn = await Connection(port, path, body, MASTER_KEY).open()
    for _ in range(min(100, count)):  # warm up
        await conn.send()
    latencies, errors = [], 0
    for _ in range(count):
        start = time.perf_counter()
        status, answer = await conn.send()
        latencies.append(time.perf_counter() - start)
        errors += not check(status, answer)
    conn.close()
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "errors": errors}


async def concurrent(port: int, path: str, body: bytes, clients: int, duration: float) -> dict:
    conns = [await Connection(port, path, body, MASTER_KEY).open() for _ in range(clients)]
    await asyncio.gather(*(c.send() for c in conns))  # warm up every connection
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def run(conn: Connection) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            start = time.perf_counter()
            status, answer = await conn.send()
            latencies.append(time.perf_counter() - start)
            errors += status != 200
    began = time.perf_counter()
    await asyncio.gather(*(run(c) for c in conns))
    elapsed = time.perf_counter() - began
    for c in conns:
        c.close()
    return {"rps": len(latencies) / elapsed, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "errors": errors}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# ---- orchestration --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not come up")


def start_self(name: str, port: int, upstream: int) -> subprocess.Popen:
    cmd = [sys.executable, "-P", str(HERE), "--serve", name, "--port", str(port), "--upstream", str(upstream)]
    return subprocess.Popen(cmd, start_new_session=True)


def litellm_executable() -> str | None:
    """LiteLLM's proxy command beside this interpreter, if LiteLLM and its [proxy] extra are here."""
    exe = Path(sys.executable).with_name("litellm")
    if not exe.exists():
        exe = Path(shutil.which("litellm") or exe)
    if importlib.util.find_spec("litellm") is None or not exe.exists() or (
        importlib.util.find_spec("backoff") is None  # one of the [proxy] extra's packages
    ):
        return None
    return str(exe)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("uvicorn", "fastapi", "httpx", "aiohttp", "litellm"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def start_litellm(exe: str, port: int, upstream: int, workdir: Path) -> subprocess.Popen:
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/text-embedding-3-small\n"
        f"      api_base: http://127.0.0.1:{upstream}/v1\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    return subprocess.Popen([exe, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """End a server this benchmark started (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--sequential", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every target this many times, taking turns; report the medians")
    parser.add_argument("--serve", choices=["direct", "kubeinfer"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--upstream", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds at tiny sizes, LiteLLM left out; figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.sequential, args.concurrency, args.duration = 20, 4, 0.5
    if args.serve:
        serve(args.serve, args.port, args.upstream)
        return 0

    litellm_exe = litellm_executable()
    if litellm_exe is None:
        print(f"LiteLLM's proxy is not installed, so it is not measured; `{LITELLM_INSTALL}` in a venv of its "
              "own and run this script from it to measure the baseline.")
    elif args.smoke:
        print("LiteLLM's proxy is left out of --smoke; run without --smoke to measure it.")
    load_before = os.getloadavg()[0]
    fake_port = free_port()
    procs = [start_self("direct", fake_port, 0)]
    targets = {"direct": (fake_port, "/v1/embeddings", {"model": "text-embedding-3-small", "input": INPUT})}
    try:
        wait_until_up(fake_port, procs[0])
        port = free_port()
        procs.append(start_self("kubeinfer", port, fake_port))
        wait_until_up(port, procs[-1])
        targets["kubeinfer"] = (port, "/_inference/text_embedding/bench", {"input": INPUT})
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            litellm = None if args.smoke or litellm_exe is None else start_litellm(litellm_exe, port, fake_port,
                                                                                   Path(tmp))
            if litellm is not None:
                procs.append(litellm)
                wait_until_up(port, litellm)
                targets["litellm"] = (port, "/v1/embeddings", {"model": "bench", "input": INPUT})
            # Targets take turns, each round in a rotated order, so that other work on a
            # shared machine weighs on all of them alike.
            names = list(targets)
            runs: dict[str, list[tuple[dict, dict]]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                    port, path, body = targets[name]
                    data = json.dumps(body).encode()
                    seq = asyncio.run(sequential(port, path, data, args.sequential))
                    load = asyncio.run(concurrent(port, path, data, args.concurrency, args.duration))
                    runs[name].append((seq, load))
    finally:
        for proc in procs:
            stop(proc)

    def added(name: str, round_: int) -> float:
        """What a target adds to the fake's own sequential p50, both measured in one round."""
        return runs[name][round_][0]["p50"] - runs["direct"][round_][0]["p50"]

    rounds = range(args.rounds)
    print(f"\nProxy benchmark: {args.sequential} sequential requests, then {args.concurrency} concurrent clients "
          f"for {args.duration:g}s, {args.rounds} round(s) (medians shown); {os.cpu_count()} CPUs; one embedding "
          f"per request; load average before the run {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"{versions()}\n")
    print(f"{'target':<10} {'seq p50 ms':>10} {'seq p99 ms':>10} {'added p50 ms':>12} {'req/s':>9} "
          f"{'load p50 ms':>11} {'load p99 ms':>11} {'errors':>6}")
    for name, rows in runs.items():
        seq, load = sorted(rows, key=lambda row: row[1]["rps"])[len(rows) // 2]  # the median round by req/s
        errors = sum(s["errors"] + c["errors"] for s, c in rows)
        print(f"{name:<10} {statistics.median(s['p50'] for s, _ in rows) * 1000:>10.2f} "
              f"{seq['p99'] * 1000:>10.2f} {statistics.median(added(name, r) for r in rounds) * 1000:>12.2f} "
              f"{load['rps']:>9.0f} {load['p50'] * 1000:>11.2f} {load['p99'] * 1000:>11.2f} {errors:>6}")
    if "litellm" in runs:
        ours, base = runs["kubeinfer"], runs["litellm"]
        throughput = [ours[r][1]["rps"] / base[r][1]["rps"] for r in rounds]
        each = f" (round by round: {', '.join(f'x{x:.2f}' for x in throughput)})" if args.rounds > 1 else ""
        sequential_p50 = statistics.median(ours[r][0]["p50"] / base[r][0]["p50"] for r in rounds)
        added_p50 = statistics.median(added("kubeinfer", r) / max(1e-9, added("litellm", r)) for r in rounds)
        print(f"\nkubeinfer / litellm (baseline): throughput x{statistics.median(throughput):.2f}{each}, "
              f"sequential p50 x{sequential_p50:.2f}, added p50 x{added_p50:.2f}")
    else:
        print("\nLiteLLM baseline skipped: no ratio to report.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
