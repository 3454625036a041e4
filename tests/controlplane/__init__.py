"""Kubernetes' own control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) and KWOK, built from Go modules and run on loopback for the tests and
`make cluster`. The Go sources are beside this file; ``cluster`` starts and stops them."""

from .cluster import ControlPlane, ToolMissing, build, kubeconfig_for

__all__ = ["ControlPlane", "ToolMissing", "build", "kubeconfig_for"]
