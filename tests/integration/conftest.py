"""Integration tests run against the Kubernetes API emulator in tests/kubeemu."""

from kubeemu.fixtures import kube, kubeconfig, kubeinfer_operator  # noqa: F401
