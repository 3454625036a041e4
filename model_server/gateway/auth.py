"""Elasticsearch's ``manage_inference`` / ``monitor_inference`` privileges, mapped to RBAC.

Every ``/_inference`` request must carry the caller's bearer token. The gateway asks the
API server who the token belongs to (TokenReview) and whether that user may act on
``inferenceendpoints.kubeinfer.io`` in the gateway's namespace (SubjectAccessReview):
``create`` to create, ``update`` to update, ``delete`` to delete, ``get`` to read an
endpoint or run inference. No token, or one the API server does not accept: 401. Not
allowed: 403. Both in Elasticsearch's ``security_exception`` shape, or in OpenAI's error
shape on the OpenAI-compatible ``/v1`` routes (where every call is inference or a read:
``get``; an OpenAI SDK sends its API key as the bearer token). Answers are cached
for a few seconds per token and question, so inference does not cost two API calls each.

``/metrics`` names endpoint ids: it takes a token too, allowed to ``get`` the non-resource
URL ``/metrics`` (what Prometheus' service account is usually granted). A create or
update whose settings reference Secrets (``secretKeyRef``) needs the caller to be allowed
to ``get`` each of them (``SecretReferenceCheck``): a user who cannot read a Secret cannot
make kubeinfer send it anywhere.

The inference region policy (``/_inference/_region_policy``) is the cluster's, not a
namespace's: changing it (``PUT``, ``DELETE``: ``manage_inference`` in Elasticsearch) takes
``update`` or ``delete`` on ``inferenceregionpolicies.kubeinfer.io`` cluster-wide, which
only a ClusterRole bound by a ClusterRoleBinding grants (``cluster-admin`` has it);
reading it takes ``get`` on inferenceendpoints, as reading endpoints does.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from kubeinfer.errors import ElasticsearchError
from kubeinfer.kube import KubeClient, KubeError
from kubeinfer.resource import GROUP, PLURAL as RESOURCE
from ..api.errors import is_openai_path, openai_error_body

_UPDATE = re.compile(r"^/_inference/(?:[^/]+/)?[^/]+/_update/?$")


@dataclass(frozen=True)
class Privilege:
    verb: str
    # The Elasticsearch action the request stands for, as its security errors name it.
    action: str
    # What RBAC must grant: a resource (by group and plural, and a name) or a non-resource URL.
    group: str = GROUP
    resource: str = RESOURCE
    name: str | None = None
    non_resource_path: str | None = None
    # Asked of the cluster, not of the gateway's namespace: only a ClusterRoleBinding grants it.
    cluster_scoped: bool = False

    def attributes(self, namespace: str) -> dict[str, Any]:
        if self.non_resource_path is not None:
            return {"nonResourceAttributes": {"path": self.non_resource_path, "verb": self.verb}}
        attributes = {"verb": self.verb, "group": self.group, "resource": self.resource}
        if not self.cluster_scoped:
            attributes = {"namespace": namespace, **attributes}
        if self.name is not None:
            attributes["name"] = self.name
        return {"resourceAttributes": attributes}

    def granted_by(self) -> str:
        if self.non_resource_path is not None:
            return f"the Kubernetes RBAC verb [{self.verb}] on the non-resource URL [{self.non_resource_path}]"
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        named = f" named [{self.name}]" if self.name is not None else ""
        where = " cluster-wide" if self.cluster_scoped else ""
        return f"the Kubernetes RBAC verb [{self.verb}] on [{what}]{named}{where}"


METRICS = Privilege("get", "cluster:monitor/prometheus/metrics", non_resource_path="/metrics")
REGION_POLICY_PATH = "/_inference/_region_policy"
REGION_POLICY_RESOURCE = "inferenceregionpolicies"


def required_privilege(method: str, path: str) -> Privilege | None:
    """What a request needs; None for paths outside the inference APIs and ``/metrics``."""
    if path == "/metrics" or path.startswith("/metrics/"):
        return METRICS
    if is_openai_path(path):
        if method == "POST":
            return Privilege("get", "cluster:monitor/xpack/inference")
        return Privilege("get", "cluster:monitor/xpack/inference/get")
    if not (path == "/_inference" or path.startswith("/_inference/")):
        return None
    if path.rstrip("/") == REGION_POLICY_PATH:
        if method in ("PUT", "DELETE"):
            verb, action = ("update", "put") if method == "PUT" else ("delete", "delete")
            return Privilege(verb, f"cluster:admin/xpack/inference/region_policy/{action}",
                             resource=REGION_POLICY_RESOURCE, cluster_scoped=True)
        return Privilege("get", "cluster:monitor/xpack/inference/region_policy/get")
    if method == "PUT":
        if _UPDATE.match(path):
            return Privilege("update", "cluster:admin/xpack/inference/update")
        return Privilege("create", "cluster:admin/xpack/inference/put")
    if method == "DELETE":
        return Privilege("delete", "cluster:admin/xpack/inference/delete")
    if method == "POST":
        return Privilege("get", "cluster:monitor/xpack/inference")
    if path == "/_inference/_services" or path.startswith("/_inference/_services/"):
        return Privilege("get", "cluster:monitor/xpack/inference/services/get")
    return Privilege("get", "cluster:monitor/xpack/inference/get")


def unauthenticated(path: str) -> ElasticsearchError:
    return ElasticsearchError(
        401, "security_exception", f"missing authentication credentials for REST request [{path}]"
    )


def unauthorized(privilege: Privilege, user: str) -> ElasticsearchError:
    return ElasticsearchError(
        403,
        "security_exception",
        f"action [{privilege.action}] is unauthorized for user [{user}], this action is granted by "
        f"{privilege.granted_by()}",
    )


def secret_privilege(name: str, action: str) -> Privilege:
    return Privilege("get", action, group="", resource="secrets", name=name)


class SubjectAccessReviewer:
    """Answers "may this token do that?" with TokenReview and SubjectAccessReview."""

    def __init__(self, api: KubeClient, namespace: str, *, cache_seconds: float = 10.0) -> None:
        self.api = api
        self.namespace = namespace
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, Privilege], tuple[float, ElasticsearchError | str]] = {}

    async def check(self, token: str, privilege: Privilege, path: str) -> str:
        """The caller's user name, when allowed."""
        key = (hashlib.sha256(token.encode()).hexdigest(), privilege)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached and cached[0] > now:
            if isinstance(cached[1], ElasticsearchError):
                raise cached[1]
            return cached[1]
        answer = await self._review(token, privilege, path)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.cache_seconds, answer)
        if isinstance(answer, ElasticsearchError):
            raise answer
        return answer

    async def _review(self, token: str, privilege: Privilege, path: str) -> ElasticsearchError | str:
        try:
            review = await self.api.create(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
            )
            status = review.get("status") or {}
            if not status.get("authenticated"):
                return ElasticsearchError(
                    401,
                    "security_exception",
                    f"unable to authenticate with provided credentials for REST request [{path}]",
                )
            user = status.get("user") or {}
            access = await self.api.create(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": user.get("username", ""),
                        "uid": user.get("uid"),
                        "groups": user.get("groups", []),
                        "extra": user.get("extra"),
                        **privilege.attributes(self.namespace),
                    },
                },
            )
        except KubeError as exc:
            reason = exc.reason or exc.status
            return ElasticsearchError(503, "status_exception", f"Authorization check failed: {reason}")
        if (access.get("status") or {}).get("allowed"):
            return user.get("username", "")
        return unauthorized(privilege, user.get("username", "unknown"))


class InferenceAuthorization:
    """ASGI middleware guarding the inference API with a ``SubjectAccessReviewer``."""

    def __init__(self, app: Any, reviewer: SubjectAccessReviewer) -> None:
        self.app = app
        self.reviewer = reviewer

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        privilege = required_privilege(scope.get("method", "GET"), path)
        if privilege is None:
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        try:
            if token is None:
                raise unauthenticated(path)
            user = await self.reviewer.check(token, privilege, path)
        except ElasticsearchError as exc:
            await _send_error(send, exc, openai=is_openai_path(path))
            return
        # For the checks a route makes on what the request names (the Secrets it references),
        # and for the records that name who made a change.
        state = scope.setdefault("state", {})
        state[CALLER_TOKEN] = token
        state[CALLER_NAME] = user
        await self.app(scope, receive, send)


CALLER_TOKEN = "kubeinfer.caller_token"
CALLER_NAME = "kubeinfer.caller_name"


def authenticated_user(request: Any) -> str | None:
    """The user name the gateway authenticated the request as."""
    return request.scope.get("state", {}).get(CALLER_NAME) or None


class SecretReferenceCheck:
    """Refuses a create or update that references a Secret its caller may not ``get``."""

    def __init__(self, reviewer: SubjectAccessReviewer) -> None:
        self.reviewer = reviewer

    async def __call__(self, request: Any, config: Any, existing: Any = None) -> None:
        token = request.scope.get("state", {}).get(CALLER_TOKEN)
        known = {ref.secret_key_ref.name for ref in existing.secret_refs().values()} if existing is not None else set()
        names = sorted({ref.secret_key_ref.name for ref in config.secret_refs().values()} - known)
        if not names:
            return
        if token is None:
            raise unauthenticated(request.url.path)
        action = ("cluster:admin/xpack/inference/update" if existing is not None
                  else "cluster:admin/xpack/inference/put")
        for name in names:
            await self.reviewer.check(token, secret_privilege(name, action), request.url.path)


def _bearer_token(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


async def _send_error(send: Any, error: ElasticsearchError, *, openai: bool = False) -> None:
    if openai:
        code = "invalid_api_key" if error.status == 401 else error.type
        body = json.dumps(openai_error_body(error.status, error.reason, code=code)).encode()
    else:
        body = json.dumps(error.to_body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-elastic-product", b"Elasticsearch"),
    ]
    if error.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="kubeinfer"'))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
