"""``kubeinfer gateway``: Elasticsearch's inference API for every endpoint in a namespace.

Endpoints are InferenceEndpoint resources; callers are checked against Kubernetes RBAC
with their bearer token (unless ``--no-auth``, for development). The gateway runs with
its own service account, which needs: get/list/create/update/patch/delete on
inferenceendpoints, create/patch/delete on secrets, create on tokenreviews and
subjectaccessreviews, and get/list/watch/create/update/delete on the region policy's
ConfigMap in its own namespace.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from ..api.app import freeze_startup_objects
from .app import create_gateway_app
from .auth import InferenceAuthorization, SecretReferenceCheck, SubjectAccessReviewer, authenticated_user
from kubeinfer.config import GatewaySettings
from kubeinfer.kube import Connection, KubeClient
from .kubernetes_store import KubernetesEndpointStore
from .region_policy import ConfigMapRegionPolicy
from .waking import ClientWatch

log = logging.getLogger("kubeinfer.gateway")


def build_gateway_app(connection: Connection, namespace: str, *, auth: bool = True,
                      poll_interval: float = 0.5, settings: GatewaySettings | None = None,
                      region_policy_namespace: str | None = None) -> FastAPI:
    """The gateway over the cluster ``connection`` leads to; endpoints live in ``namespace``,
    the region policy in the settings' namespace, else ``region_policy_namespace`` (the
    gateway's own), else ``namespace``; ``settings`` read from the environment unless given."""
    settings = settings if settings is not None else GatewaySettings.from_env()
    api = KubeClient(connection, user_agent="kubeinfer-gateway")
    store = KubernetesEndpointStore(api, namespace, poll_interval=poll_interval, settings=settings)
    region_policy = ConfigMapRegionPolicy(
        api, settings.region_policy_namespace or region_policy_namespace or namespace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await region_policy.start()
        await store.start()
        try:
            yield
        finally:
            await region_policy.close()
            await store.close()

    reviewer = SubjectAccessReviewer(api, namespace) if auth else None
    app = create_gateway_app(store, lifespan=lifespan, name="kubeinfer-gateway",
                             check_references=SecretReferenceCheck(reviewer) if reviewer is not None else None,
                             region_policy=region_policy, caller=authenticated_user)
    if reviewer is not None:
        app.add_middleware(InferenceAuthorization, reviewer=reviewer)
    app.add_middleware(ClientWatch)  # outermost: it sees each request's own receive
    return app


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    try:
        connection = Connection.discover()
    except Exception as exc:  # no service account and no usable kubeconfig
        print(f"kubeinfer gateway: cannot reach a Kubernetes API server: {exc}", file=sys.stderr)
        return 2
    namespace = args.namespace or connection.namespace
    if args.no_auth:
        log.warning("authorization is off: every caller may create, delete and use endpoints")
    app = build_gateway_app(connection, namespace, auth=not args.no_auth,
                            region_policy_namespace=connection.namespace)
    log.info("serving the inference API for namespace %s on %s:%s", namespace, args.host, args.port)
    freeze_startup_objects()
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=False))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0
