"""Serve the emulator on a port until interrupted: ``PYTHONPATH=tests python -P -m kubeemu --port 8001``.

It prints the URL it serves; ``--kubeconfig PATH`` also writes a kubeconfig for kubectl
(``KUBECONFIG=PATH kubectl get ie``); ``--no-crds`` starts with no CRD installed.
"""

import argparse
import signal
import threading
from pathlib import Path

from .cluster import EmulatedCluster

parser = argparse.ArgumentParser(prog="kubeemu")
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--rollout-delay", type=float, default=0.05)
parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the emulator to this file")
parser.add_argument("--no-crds", action="store_true", help="start without the project's CRD installed")
args = parser.parse_args()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
with EmulatedCluster(port=args.port or None, rollout_delay=args.rollout_delay, crds=not args.no_crds) as cluster:
    if args.kubeconfig:
        cluster.write_kubeconfig(args.kubeconfig)
    print(cluster.url, flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
