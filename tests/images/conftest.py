"""The image tests' clusters: Kubernetes' own control plane (tests/controlplane) where it
builds here, else the API emulator (tests/kubeemu)."""

from controlplane.fixtures import control_plane, real_kube  # noqa: F401
