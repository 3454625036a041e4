"""`python -m controlplane build|up|down [DIR]`: what `make cluster` and `make cluster-down` run.

``up`` starts a fresh control plane whose files (admin kubeconfig included) live in DIR
(default ``.cache/cluster``) and returns once it is ready; its processes run on until
``down``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .cluster import CACHE, ControlPlane, build


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"build", "up", "down"}:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(argv[1]) if len(argv) > 1 else CACHE / "cluster"
    if argv[0] == "build":
        for path in build():
            print(path)
        return 0
    plane = ControlPlane(root.resolve(), detached=True)
    if argv[0] == "down":
        plane.down()
        print("control plane stopped")
        return 0
    plane.up()
    print(f"Kubernetes {plane.state['version']} is ready at {plane.server}\n"
          f"  export KUBECONFIG={plane.kubeconfig}\n  kubectl get nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
