"""The gateway: Elasticsearch's whole inference API for every endpoint, over a store
of endpoints (Kubernetes custom resources, or in-process in local mode)."""
