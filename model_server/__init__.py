"""kubeinfer's data plane: the service catalog, backends, the _inference HTTP API,
the gateway and local mode. Nothing here talks to the Kubernetes control plane
except the gateway's store."""

__version__ = "0.1.0"
