"""The project's one client of the Kubernetes API server, used by the operator and the gateway.

What it does: log in (a kubeconfig, with its exec credential plugin if it names one; the
pod's service account; or details handed over by kopf's own login), send requests by path, server-side apply with a field manager, list
and watch (``watch`` streams events; ``Informer`` keeps a label-scoped list-and-watch
running, re-listing after a 410), and turn every refusal into one ``KubeError``.

Why our own module over httpx rather than lightkube or kr8s: httpx is already the
project's HTTP client (the gateway forwards with it); both roles need only untyped dicts
by path, which those libraries wrap in models of their own; the operator's identity comes
from kopf's ``ConnectionInfo``, which neither takes; and a projected service-account
token must be re-read when the kubelet rotates it, which is a dozen lines here.

Credentials: a bearer token given as a file is re-read whenever the file changes (bound
service-account tokens rotate every hour or so), and again after a 401. Client
certificates given as data are loaded into the TLS context through a private temporary
folder that is gone before the call returns: no key file outlives the load.

It knows no InferenceEndpoint, no builder and no Elasticsearch error: callers map
``KubeError`` to their own.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Mapping

import httpx
import yaml
from httpx_aiohttp import AiohttpTransport

log = logging.getLogger("kubeinfer.kube")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    """The API server refused a request (or could not be reached: status 503)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        # Seconds the server asked to wait before trying again (429, some 5xx).
        self.retry_after: float | None = None


class LoginError(Exception):
    """No usable credentials: neither a service account nor a kubeconfig."""


# ---- where to connect and as whom -------------------------------------------------------------
@dataclass(frozen=True)
class Connection:
    """An API server's address and the credentials to use there."""

    server: str
    token: str | None = None
    # A file holding the token, re-read when it changes (a projected service-account token).
    token_file: str | None = None
    token_scheme: str = "Bearer"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None  # PEM
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)  # PEM
    key_data: bytes | None = field(default=None, repr=False)  # PEM
    namespace: str = "default"
    # A kubeconfig ``exec`` credential plugin (``aws eks get-token``, ``gke-gcloud-auth-plugin``...).
    exec_plugin: dict[str, Any] | None = None

    @classmethod
    def in_cluster(cls, directory: Path = SERVICE_ACCOUNT_DIR) -> "Connection":
        """The pod's service account: token (re-read as it rotates), CA and namespace."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if not host or not (directory / "token").exists():
            raise LoginError("not running in a pod with a service account")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:
            host = f"[{host}]"
        namespace_file = directory / "namespace"
        namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
        ca = directory / "ca.crt"
        return cls(f"https://{host}:{port}", token_file=str(directory / "token"),
                   ca_file=str(ca) if ca.exists() else None, namespace=namespace)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, context: str | None = None) -> "Connection":
        """The current (or named) context of a kubeconfig; ``$KUBECONFIG`` (a list of files
        merged first-wins, as kubectl does) or ``~/.kube/config`` by default."""
        paths = [Path(p).expanduser() for p in (path or os.environ.get("KUBECONFIG") or "~/.kube/config").split(
            os.pathsep) if p]
        merged: dict[str, dict[str, dict[str, Any]]] = {"clusters": {}, "users": {}, "contexts": {}}
        current = None
        homes: dict[tuple[str, str], Path] = {}
        for file in paths:
            if not file.exists():
                continue
            config = yaml.safe_load(file.read_text()) or {}
            current = current or config.get("current-context")
            for section, item_key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
                for entry in config.get(section) or []:
                    if entry.get("name") not in merged[section]:
                        merged[section][entry["name"]] = entry.get(item_key) or {}
                        homes[(section, entry["name"])] = file.parent
        name = context or current
        if not name or name not in merged["contexts"]:
            raise LoginError(f"no kubeconfig context {name!r} in {os.pathsep.join(map(str, paths))}")
        ctx = merged["contexts"][name]
        cluster = merged["clusters"].get(ctx.get("cluster", ""))
        if cluster is None or not cluster.get("server"):
            raise LoginError(f"the kubeconfig context {name!r} names no cluster with a server")
        user = merged["users"].get(ctx.get("user", ""), {})
        if user.get("auth-provider"):
            raise LoginError("kubeconfig auth-provider plugins are not supported (kubectl dropped them too): "
                             "use an exec plugin, a token, a token file or a client certificate")

        def local(section: str, entry: str, value: str | None) -> str | None:
            return str(homes[(section, entry)] / Path(value).expanduser()) if value else None

        def data(value: str | None) -> bytes | None:
            return base64.b64decode(value) if value else None

        cluster_name, user_name = ctx["cluster"], ctx.get("user", "")
        return cls(
            cluster["server"],
            token=user.get("token"),
            token_file=local("users", user_name, user.get("tokenFile")) if user else None,
            username=user.get("username"), password=user.get("password"),
            ca_file=local("clusters", cluster_name, cluster.get("certificate-authority")),
            ca_data=data(cluster.get("certificate-authority-data")),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            cert_file=local("users", user_name, user.get("client-certificate")) if user else None,
            key_file=local("users", user_name, user.get("client-key")) if user else None,
            cert_data=data(user.get("client-certificate-data")),
            key_data=data(user.get("client-key-data")),
            namespace=ctx.get("namespace") or "default",
            exec_plugin=user.get("exec"),
        )

    @classmethod
    def discover(cls) -> "Connection":
        """The service account in a pod, else the current kubeconfig."""
        try:
            return cls.in_cluster()
        except LoginError:
            return cls.from_kubeconfig()

    # ---- what httpx needs ----------------------------------------------------------------------
    def tls(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        context = ssl.create_default_context(
            cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data:
            # The ssl module reads client certificates from files only: a private folder,
            # removed as soon as the chain is loaded.
            with tempfile.TemporaryDirectory(prefix="kubeinfer-tls-") as folder:
                cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
                cert.write_bytes(self.cert_data)
                key.touch(mode=0o600)
                key.write_bytes(self.key_data or b"")
                context.load_cert_chain(str(cert), str(key) if self.key_data else None)
        return context


class Credentials(httpx.Auth):
    """The connection's token (re-read from its file when the file changes, and after a 401;
    or got from its exec plugin, again when it expires or after a 401) or basic credentials."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._token = connection.token
        self._stamp: tuple[float, int] | None = None
        self._expires: float | None = None  # of an exec plugin's token (time.time())

    async def _exec_token(self, *, force: bool = False) -> None:
        plugin = self.connection.exec_plugin or {}
        if not force and self._token and (self._expires is None or time.time() < self._expires - 30):
            return
        env = {**os.environ, **{e["name"]: e["value"] for e in plugin.get("env") or []},
               "KUBERNETES_EXEC_INFO": json.dumps({
                   "apiVersion": plugin.get("apiVersion", "client.authentication.k8s.io/v1"),
                   "kind": "ExecCredential", "spec": {"interactive": False}})}
        process = await asyncio.create_subprocess_exec(
            plugin["command"], *(plugin.get("args") or []), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        if process.returncode != 0:
            raise KubeError(401, "Unauthorized", f"the kubeconfig's exec plugin {plugin['command']!r} failed: "
                                                 f"{err.decode(errors='replace')[-300:]}")
        status = (json.loads(out) or {}).get("status") or {}
        self._token = status.get("token")
        expiry = status.get("expirationTimestamp")
        self._expires = datetime.datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp() \
            if expiry else None

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.connection.exec_plugin:
            await self._exec_token()
        self._authorize(request)
        response = yield request
        if response.status_code == 401 and (self.connection.token_file or self.connection.exec_plugin):
            if self.connection.exec_plugin:
                await self._exec_token(force=True)
            self._authorize(request, force=True)
            yield request

    def _current_token(self, *, force: bool = False) -> str | None:
        path = self.connection.token_file
        if path is None:
            return self._token
        try:
            stat = os.stat(path)
        except OSError:
            return self._token
        stamp = (stat.st_mtime, stat.st_ino)
        if force or stamp != self._stamp:
            try:
                self._token = Path(path).read_text().strip() or self._token
                self._stamp = stamp
            except OSError:
                pass
        return self._token

    def _authorize(self, request: httpx.Request, *, force: bool = False) -> None:
        token = self._current_token(force=force)
        if token:
            request.headers["Authorization"] = f"{self.connection.token_scheme} {token}"
        elif self.connection.username and self.connection.password:
            pair = f"{self.connection.username}:{self.connection.password}".encode()
            request.headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._authorize(request)
        response = yield request
        if response.status_code == 401 and self.connection.token_file:
            # The kubelet may have rotated the token between our stat and the server's check.
            self._authorize(request, force=True)
            yield request


def path_of(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
            subresource: str | None = None) -> str:
    """``/api/v1/namespaces/ns/secrets/name`` and the like."""
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


# ---- the client -----------------------------------------------------------------------------------
class KubeClient:
    """Requests to one API server; ``relogin`` (optional) gives fresh credentials after a 401."""

    def __init__(self, connection: Connection, *, user_agent: str = "kubeinfer", timeout: float = 60.0,
                 relogin: Callable[[], Connection | None] | None = None, max_connections: int = 64) -> None:
        self.connection = connection
        self._relogin = relogin
        self._user_agent = user_agent
        self._timeout = timeout
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = self._open(connection)

    def _open(self, connection: Connection) -> httpx.AsyncClient:
        verify = connection.tls() if connection.server.startswith("https") else True
        # No pool-wait limit: with many endpoints reconciling at once, requests queue for a
        # connection; connecting and reading are bounded.
        timeout = httpx.Timeout(self._timeout, connect=10.0, pool=None)
        # aiohttp's pool under httpx's API: with hundreds of requests waiting for a
        # connection, httpcore's own pool rescans every waiting request against every
        # connection whenever one is taken or given back (quadratic in the queue);
        # aiohttp's hands connections to its waiters in turn.
        transport = AiohttpTransport(verify=verify, limits=self._limits)
        return httpx.AsyncClient(base_url=connection.server.rstrip("/"), auth=Credentials(connection),
                                 transport=transport, timeout=timeout,
                                 headers={"Accept": "application/json", "User-Agent": self._user_agent})

    async def close(self) -> None:
        await self._client.aclose()

    async def reconnect(self, connection: Connection) -> None:
        """Use new credentials (a fresh login) from now on; open watches end and resume."""
        old, self.connection = self._client, connection
        self._client = self._open(connection)
        await old.aclose()

    async def request(self, method: str, path: str, *, json_body: Any = None, content_type: str | None = None,
                      params: Mapping[str, str] | None = None, accept: str | None = None) -> dict[str, Any]:
        """Send a request and return the decoded answer; ``KubeError`` for any failure."""
        headers = {"Content-Type": content_type or "application/json"} if json_body is not None else {}
        if accept:
            headers["Accept"] = accept
        content = json.dumps(json_body).encode() if json_body is not None else None
        for attempt in (1, 2):
            try:
                response = await self._client.request(method, path, content=content, headers=headers,
                                                      params=dict(params) if params else None)
            except httpx.HTTPError as exc:
                raise KubeError(503, "ServiceUnavailable",
                                f"Kubernetes API unreachable: {type(exc).__name__}") from None
            if response.status_code == 401 and attempt == 1 and self._relogin is not None:
                fresh = self._relogin()
                if fresh is not None:
                    await self.reconnect(fresh)
                    continue
            if response.status_code >= 400:
                raise _error(response)
            return response.json() if response.content else {}
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- conveniences by path ----------------------------------------------------------------
    async def get(self, path: str, *, params: Mapping[str, str] | None = None,
                  accept: str | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params, accept=accept)

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.get(path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, json_body=body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, json_body=body)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, json_body=patch, content_type="application/merge-patch+json")

    async def json_patch(self, path: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("PATCH", path, json_body=operations, content_type="application/json-patch+json")

    async def apply(self, path: str, obj: Mapping[str, Any], *, field_manager: str,
                    force: bool = True) -> dict[str, Any]:
        """Server-side apply ``obj`` as ``field_manager`` (taking over conflicting fields
        when ``force``)."""
        params = {"fieldManager": field_manager}
        if force:
            params["force"] = "true"
        return await self.request("PATCH", path, json_body=obj, content_type="application/apply-patch+yaml",
                                  params=params)

    async def delete(self, path: str, *, propagation: str = "Background") -> dict[str, Any]:
        return await self.request("DELETE", path, json_body={"propagationPolicy": propagation})

    async def watch(self, path: str, *, resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int = 300,
                    bookmarks: bool = True, accept: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events (``{"type", "object"}``) of the collection at ``path``; a 410
        (the resourceVersion is too old) and other ``ERROR`` events raise ``KubeError``."""
        params = {"watch": "true", "timeoutSeconds": str(timeout_seconds)}
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        timeout = httpx.Timeout(self._timeout, connect=10.0, pool=None, read=timeout_seconds + 30)
        try:
            headers = {"Accept": accept} if accept else None
            async with self._client.stream("GET", path, params=params, timeout=timeout,
                                           headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise KubeError(int(status.get("code") or 500), status.get("reason", "") or "Error",
                                        status.get("message", "") or "watch failed")
                    yield event
        except httpx.HTTPError as exc:
            raise KubeError(503, "ServiceUnavailable", f"watch interrupted: {type(exc).__name__}") from None


def _error(response: httpx.Response) -> KubeError:
    try:
        status = response.json()
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    error = KubeError(response.status_code, status.get("reason", "") or response.reason_phrase,
                      status.get("message", "") or response.text[:200])
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        try:
            error.retry_after = float(retry_after)
        except ValueError:
            pass
    return error


# ---- list-and-watch ------------------------------------------------------------------------------
# Metadata only (no Secret data, no spec), where the API server offers it; plain JSON otherwise.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
Relisted = Callable[[list[dict[str, Any]]], Awaitable[None]]


@dataclass
class Informer:
    """Keep up with one collection: list, then watch from the list's resourceVersion;
    after a 410, a dropped stream or a refused request, list again (``relisted`` gets the
    full list, so caches drop what vanished in the gap).

    ``label_selector`` scopes it on the server: unrelated objects never reach this process.
    ``metadata_only`` asks for ``PartialObjectMetadata`` (no ``data``, no ``spec``).
    Objects are handed to ``handler`` and not kept here. Lists come in pages of
    ``page_size`` objects, as client-go's reflector asks for them, so that a namespace of
    thousands of objects is never one answer in memory; ``keep`` (when given) says what of
    each listed object ``relisted`` needs, and only that is held until the list is whole.
    """

    client: KubeClient
    path: str
    handler: Handler
    relisted: Relisted | None = None
    label_selector: str | None = None
    metadata_only: bool = False
    timeout_seconds: int = 300
    backoff: float = 1.0
    page_size: int = 500
    keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Counters for benchmarks and tests: events received, lists made.
    events: int = 0
    lists: int = 0
    listed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        delay = self.backoff
        while True:
            try:
                version = await self._list()
                delay = self.backoff
                while True:
                    async for event in self.client.watch(self.path, resource_version=version,
                                                         label_selector=self.label_selector,
                                                         timeout_seconds=self.timeout_seconds,
                                                         accept=METADATA if self.metadata_only else None):
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if event.get("type") == "BOOKMARK":
                            continue
                        self.events += 1
                        await self._hand(self.handler, event["type"], obj)
            except KubeError as exc:
                if exc.status != 410:
                    log.info("watch of %s interrupted (%s); listing again in %.1fs", self.path, exc, delay)
                    await asyncio.sleep(exc.retry_after or delay)
                    delay = min(delay * 2, 30.0)
            except ValueError as exc:  # a garbled line: start over
                log.warning("watch of %s sent what is not JSON (%s); listing again", self.path, exc)
                await asyncio.sleep(delay)

    async def _hand(self, handler: Callable[..., Awaitable[None]], *args: Any) -> None:
        """A failing handler is logged; the watch goes on."""
        try:
            await handler(*args)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling a change of %s failed", self.path)

    async def _list(self) -> str:
        params = {"limit": str(self.page_size)}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        items: list[dict[str, Any]] = []
        version = ""
        while True:
            listing = await self.client.get(self.path, params=params,
                                            accept=METADATA_LIST if self.metadata_only else None)
            meta = listing.get("metadata") or {}
            version = version or meta.get("resourceVersion") or ""
            for obj in listing.get("items") or []:
                if self.relisted is None:
                    await self._hand(self.handler, "ADDED", obj)
                else:
                    items.append(self.keep(obj) if self.keep is not None else obj)
            del listing
            if not meta.get("continue"):
                break
            params["continue"] = meta["continue"]
        self.lists += 1
        if self.relisted is not None:
            await self._hand(self.relisted, items)
        self.listed.set()
        return version
