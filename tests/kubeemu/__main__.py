"""Serve the emulator on a port until interrupted: ``PYTHONPATH=tests python -P -m kubeemu --port 8001``."""

import argparse
import signal
import threading

from .cluster import EmulatedCluster

parser = argparse.ArgumentParser(prog="kubeemu")
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--rollout-delay", type=float, default=0.05)
args = parser.parse_args()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
with EmulatedCluster(port=args.port or None, rollout_delay=args.rollout_delay) as cluster:
    print(cluster.url, flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
