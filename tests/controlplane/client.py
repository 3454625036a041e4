"""The tests' handle on a real control plane, with the calls ``EmulatedCluster`` offers.

Tests written against ``kube.get(DEPLOYMENTS, ns, name)``, ``kube.create(...)`` and
``kube.wait_until(...)`` run unchanged on either API server. The calls go over HTTPS
with the admin's client certificate, as ``kubectl`` would; nothing reaches into a
component. Faults, held rollouts and recorded requests are the emulator's alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import httpx
import yaml
from polling import wait_until

from .cluster import ControlPlane, kubeconfig_for

T = TypeVar("T")

CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
# Resources that belong to no namespace, by the keys the tests use ("group/version/plural").
CLUSTER_SCOPED = {"v1/namespaces", "v1/nodes", "apiextensions.k8s.io/v1/customresourcedefinitions",
                  "rbac.authorization.k8s.io/v1/clusterroles", "rbac.authorization.k8s.io/v1/clusterrolebindings",
                  "admissionregistration.k8s.io/v1/validatingadmissionpolicies",
                  "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"}
# Namespaces a fresh cluster has, left alone by ``reset``.
SYSTEM_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


class APIStatusError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status, self.body = status, body


def path_of(key: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
    *group_version, plural = key.split("/")
    prefix = "/api/" if len(group_version) == 1 else "/apis/"
    path = prefix + "/".join(group_version)
    if namespace and key not in CLUSTER_SCOPED:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class RealCluster:
    """A started ``ControlPlane`` seen through its API, as the admin."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.url = plane.server
        self.http = httpx.Client(base_url=self.url, verify=plane.admin_tls(), timeout=30)

    def close(self) -> None:
        self.http.close()

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """The admin's kubeconfig (or one that authenticates with ``token``) at ``path``."""
        pki = self.plane.pki
        config = kubeconfig_for(self.url, pki / "ca.crt", cert=pki / "admin.crt", key=pki / "admin.key", token=token)
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # ---- the calls tests make ------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            raise APIStatusError(response.status_code, body)
        return body

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        try:
            self._call("POST", "/api/v1/namespaces",
                       json={"metadata": {"name": name, "labels": labels or {}}})
        except APIStatusError as error:
            if error.status != 409:
                raise

    def create(self, key: str, obj: dict[str, Any], namespace: str | None = None, *,
               ensure_namespace: bool = True) -> dict[str, Any]:
        """Create an object, and its namespace first if there is none yet (as a test's set-up would)."""
        ns = None if key in CLUSTER_SCOPED else (namespace or obj.get("metadata", {}).get("namespace") or "default")
        if ns and ensure_namespace:
            self.create_namespace(ns)
        return self._call("POST", path_of(key, ns), json=obj)

    def get(self, key: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", path_of(key, namespace, name))
        except APIStatusError as error:
            if error.status == 404:
                return None
            raise

    def list(self, key: str, namespace: str | None = None, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        return self._call("GET", path_of(key, namespace), params=params)["items"]

    def patch(self, key: str, namespace: str | None, name: str, patch: dict[str, Any], *,
              subresource: str | None = None) -> dict[str, Any]:
        return self._call("PATCH", path_of(key, namespace, name, subresource), json=patch,
                          headers={"Content-Type": "application/merge-patch+json"})

    def delete(self, key: str, namespace: str | None, name: str, *, propagation: str | None = None) -> dict[str, Any]:
        body = {"propagationPolicy": propagation} if propagation else None
        return self._call("DELETE", path_of(key, namespace, name), json=body)

    def install_crds(self, directory: Path) -> None:
        """Create every CustomResourceDefinition in ``directory``'s YAML files, as `kubectl
        apply -f` would, and wait until the server serves each (Established)."""
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                self.create(CRDS, doc)
                self.wait_until(lambda name=doc["metadata"]["name"]: self._established(name),
                                message=f"CRD {doc['metadata']['name']} Established")

    def _established(self, name: str) -> bool:
        crd = self.get(CRDS, None, name) or {}
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in (crd.get("status") or {}).get("conditions") or ())

    def token_for(self, namespace: str, service_account: str, *, seconds: int = 3600) -> str:
        """A bound token of ``service_account`` from the TokenRequest API, as a pod would get."""
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": seconds}}
        return self._call("POST", path_of("v1/serviceaccounts", namespace, service_account, "token"),
                          json=request)["status"]["token"]

    def wait_until(self, predicate: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.1,
                   message: str = "") -> T:
        """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

        A real control plane's controllers take seconds where the emulator's take
        milliseconds, and its garbage collector watches a kind only from its next discovery
        (every 30 s) after the CRD was made: the default wait is longer than the emulator's.
        """
        return wait_until(predicate, timeout=timeout, interval=interval, message=message)

    def delete_quietly(self, key: str, namespace: str | None, name: str) -> None:
        """Delete, unless it is gone already."""
        try:
            self.delete(key, namespace, name)
        except APIStatusError as error:
            if error.status != 404:
                raise

    def wait_until_served(self, crd: dict[str, Any]) -> None:
        """Wait until the API server can list ``crd``'s objects. A CRD deleted while its
        storage still initializes (just after its creation) stays Terminating for good:
        the API server's finalizer fails to list its instances ("storage is (re)initializing")
        and does not get past it."""
        spec = crd["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("storage"))
        path = f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"
        self.wait_until(lambda: self.http.get(path, params={"limit": 1}).status_code == 200, timeout=60,
                        message=f"the objects of {crd['metadata']['name']} listed")

    def reset(self) -> None:
        """Leave the cluster as a test found it: every namespace a test made is deleted and
        waited for, and the CRDs and kubeinfer's cluster-wide objects (RBAC, admission
        policies) a test installed go too."""
        for crd in self.list(CRDS):
            self.wait_until_served(crd)
            self.delete_quietly(CRDS, None, crd["metadata"]["name"])
        for key in ("rbac.authorization.k8s.io/v1/clusterroles", "rbac.authorization.k8s.io/v1/clusterrolebindings",
                    "admissionregistration.k8s.io/v1/validatingadmissionpolicies",
                    "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"):
            for obj in self.list(key):
                if "kubeinfer" in obj["metadata"]["name"]:
                    self.delete_quietly(key, None, obj["metadata"]["name"])
        made = [ns["metadata"]["name"] for ns in self.list("v1/namespaces")
                if ns["metadata"]["name"] not in SYSTEM_NAMESPACES]
        for name in made:
            self.delete_quietly("v1/namespaces", None, name)
        self.wait_until(lambda: not self.list(CRDS) and not any(self.get("v1/namespaces", None, name) for name in made),
                        timeout=240, message=f"the CRDs and namespaces {made} deleted")
