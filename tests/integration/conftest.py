"""Integration tests run against the Kubernetes API emulator in tests/kubeemu."""

from kubeemu.fixtures import kube, kubeconfig  # noqa: F401
