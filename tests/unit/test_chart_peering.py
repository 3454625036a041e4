"""Two operator replicas, as the chart runs them with operator.replicas=2: each runs
`kubeinfer operator --peering=<name>` with the chart's environment against the same API
(here the emulator, serving kopf's ClusterKopfPeering), and between them they must
reconcile endpoints: one works, the other stands by."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Iterator

import pytest

from kubeemu import DEPLOYMENTS, INFERENCE_ENDPOINTS, EmulatedCluster
from shipping import env_of, named, render

PEERINGS = "kopf.dev/v1/clusterkopfpeerings"


@pytest.fixture
def kube(tmp_path, monkeypatch) -> Iterator[EmulatedCluster]:
    with EmulatedCluster() as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        yield cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replicas_reconcile_with_one_standing_by(kube, tmp_path):
    objs = render({"operator.replicas": 2, "endpoints.gpu.perEndpoint": 0})
    peering = named(objs, "ClusterKopfPeering", "kubeinfer")

    def declare() -> None:
        kube.emulator.declare(PEERINGS, "ClusterKopfPeering", namespaced=False)
        kube.emulator.create(PEERINGS, None, {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                              "metadata": {"name": peering["metadata"]["name"]}})

    kube.call(declare)
    container = named(objs, "Deployment", "kubeinfer-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    processes = []
    try:
        replicas = ("kubeinfer-operator-a", "kubeinfer-operator-b")
        for replica in replicas:
            args = [a for a in container["args"] if not a.startswith("--liveness")]
            args.append(f"--liveness=http://127.0.0.1:{free_port()}/healthz")
            log = open(tmp_path / f"{replica}.log", "w")
            processes.append((subprocess.Popen(
                [sys.executable, "-P", "-m", "kubeinfer.cli", *args],
                env={**os.environ, **env, "POD_ID": replica, "KUBEINFER_METRICS_PORT": "0"},
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path), log))
        # Both announce themselves, and peering has settled, before the endpoint appears.
        kube.wait_until(lambda: len((kube.get(PEERINGS, None, "kubeinfer") or {}).get("status") or {}) == 2,
                        timeout=30, message="both replicas in the peering object")
        logs = [tmp_path / f"{replica}.log" for replica in replicas]
        # kopf starts peered operators paused: the replica with the highest priority says it
        # resumes, a lower one may say it pauses in its favour.
        kube.wait_until(lambda: any(word in log.read_text() for log in logs for word in ("Pausing", "Resuming")),
                        timeout=30, message="peering deciding which replica works")
        kube.create(INFERENCE_ENDPOINTS, {
            "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": "e5", "namespace": "ml"},
            "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                     "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1,
                                         "num_threads": 1}}})
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, "ml", "e5"), timeout=15,
                        message="a Deployment made by one of the replicas")
    finally:
        for proc, log in processes:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
