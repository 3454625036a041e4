"""A Kubernetes API emulator for tests without a cluster, built on kmock.

``EmulatedCluster`` runs it in a thread of its own; ``fixtures`` offers it to pytest.
"""

from .cluster import (
    CONFIGMAPS, DEPLOYMENTS, EVENTS, HPAS, INFERENCE_ENDPOINTS, SECRETS, SERVICES, EmulatedCluster,
)
from .controllers import DeploymentController
from .emulator import APIError, KubeEmulator

__all__ = [
    "APIError", "CONFIGMAPS", "DEPLOYMENTS", "DeploymentController", "EVENTS", "EmulatedCluster", "HPAS",
    "INFERENCE_ENDPOINTS", "KubeEmulator", "SECRETS", "SERVICES",
]
