"""Integration tests run against the Kubernetes API emulator in tests/kubeemu, and the ones
that need Kubernetes' own control plane against tests/controlplane."""

from controlplane.fixtures import control_plane, real_kube  # noqa: F401
from kubeemu.fixtures import kube, kubeconfig, kubeinfer_operator  # noqa: F401
