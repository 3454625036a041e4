"""The project's Kubernetes client against the API emulator: logging in from a kubeconfig
and as a pod's service account, a rotated service-account token picked up by the gateway,
server-side apply as a field manager, watches, one error type, and no key file left on
disk after loading a client certificate."""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
import ssl
import tempfile

import aiohttp.web
import httpx
import pytest
import trustme
import yaml
from kubeemu import SECRETS, faults

from kubeinfer.kube import Connection, Informer, KubeClient, KubeError, LoginError, path_of
from model_server.gateway.main import build_gateway_app

NS = "default"


def bearer_tokens(kube, path_part: str) -> list[str]:
    return [r.headers.get("Authorization", "") for r in kube.requests() if path_part in str(r.url)]


async def test_gateway_picks_up_a_rotated_service_account_token(kube, tmp_path, monkeypatch):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("first-token\n")
    (sa / "namespace").write_text(NS)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    connection = Connection.in_cluster(sa)
    assert (connection.server, connection.namespace) == ("https://kubernetes.default.svc:443", NS)
    # The emulator speaks plain HTTP; everything else is the in-cluster login.
    app = build_gateway_app(Connection(kube.url, token_file=connection.token_file), NS, auth=False)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
            assert (await gw.get("/_inference")).status_code == 200
            # The kubelet swaps the projected token through a symlinked folder: a new file.
            (sa / "token.new").write_text("second-token\n")
            os.replace(sa / "token.new", sa / "token")
            body = {"service": "elasticsearch", "service_settings": {
                "model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}
            created = await gw.put("/_inference/text_embedding/rotated?timeout=0s", json=body)
            assert created.status_code == 200, created.text
    tokens = bearer_tokens(kube, "inferenceendpoints")
    # the gateway's list and watch went with the first token, its next write with the second
    assert tokens[0] == "Bearer first-token" and tokens[-1] == "Bearer second-token"


def test_in_cluster_login_needs_a_service_account(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(LoginError):
        Connection.in_cluster(tmp_path)


async def test_kubeconfig_login_with_a_token_file_and_the_context_namespace(kube, tmp_path, monkeypatch):
    (tmp_path / "token").write_text("file-token")
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "work",
        "clusters": [{"name": "emu", "cluster": {"server": kube.url}}],
        "users": [{"name": "me", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "work", "context": {"cluster": "emu", "user": "me", "namespace": "ml"}}],
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing"), str(tmp_path / "config")]))
    connection = Connection.discover()
    assert connection.namespace == "ml"
    assert connection.token_file == str(tmp_path / "token")  # relative to the kubeconfig
    client = KubeClient(connection)
    try:
        listing = await client.get(path_of("v1", "secrets", NS))
        assert listing["items"] == []
    finally:
        await client.close()
    assert bearer_tokens(kube, "secrets") == ["Bearer file-token"]


def test_kubeconfig_without_the_context_is_a_login_error(tmp_path):
    (tmp_path / "config").write_text(yaml.safe_dump({"contexts": [], "clusters": [], "users": []}))
    with pytest.raises(LoginError):
        Connection.from_kubeconfig(str(tmp_path / "config"))


async def test_apply_watch_and_errors(kube):
    client = KubeClient(Connection(kube.url, token="t"))
    path = path_of("v1", "configmaps", NS, "cm")
    try:
        created = await client.apply(path, {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": "cm", "namespace": NS}, "data": {"a": "1"}},
                                     field_manager="tester")
        assert created["data"] == {"a": "1"}
        assert any(r.params.get("fieldManager") == "tester" for r in kube.requests())
        with pytest.raises(KubeError) as refused:
            await client.get(path_of("v1", "configmaps", NS, "nope"))
        assert (refused.value.status, refused.value.reason) == (404, "NotFound")
        assert await client.get_or_none(path_of("v1", "configmaps", NS, "nope")) is None

        events = []
        async for event in client.watch(path_of("v1", "configmaps", NS), resource_version=None, timeout_seconds=1):
            events.append((event["type"], event["object"]["metadata"]["name"]))
        assert events == [("ADDED", "cm")]
    finally:
        await client.close()


async def test_informer_relists_after_a_410_and_drops_what_vanished(kube):
    client = KubeClient(Connection(kube.url, token="t"))
    seen: dict[str, str] = {}
    relists: list[list[str]] = []

    async def handler(event_type: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if event_type == "DELETED":
            seen.pop(name, None)
        else:
            seen[name] = obj["metadata"]["uid"]

    async def relisted(items: list[dict]) -> None:
        relists.append(sorted(o["metadata"]["name"] for o in items))
        seen.clear()
        for obj in items:
            await handler("ADDED", obj)

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "namespace": NS,
                                                                  "labels": {"mine": "yes"}}}
    kube.create(SECRETS, secret)
    kube.create(SECRETS, {**secret, "metadata": {"name": "other", "namespace": NS}})
    informer = Informer(client, path_of("v1", "secrets"), handler, relisted, label_selector="mine=yes",
                        timeout_seconds=60)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.listed.wait(), 5)
        assert seen.keys() == {"s1"}  # the selector is the server's: "other" never arrives
        for _ in range(200):  # until the informer's watch is open
            if kube.call(lambda: any(w.resource == SECRETS for w in kube.emulator.watchers)):
                break
            await asyncio.sleep(0.02)
        # A stream that stalls and misses a delete and a create, then drops; by then the
        # server's history has moved on, so the watch is answered 410 and must re-list.
        kube.call(faults.stall_watches, kube.emulator, SECRETS)
        kube.delete(SECRETS, NS, "s1")
        kube.create(SECRETS, {**secret, "metadata": {**secret["metadata"], "name": "s2"}})
        kube.call(faults.expire_history, kube.emulator, SECRETS)
        kube.call(faults.drop_watches, kube.emulator, SECRETS)
        for _ in range(300):
            if seen.keys() == {"s2"}:
                break
            await asyncio.sleep(0.05)
        assert seen.keys() == {"s2"}
        assert relists[0] == ["s1"] and relists[1:] and set(map(tuple, relists[1:])) == {("s2",)}
    finally:
        task.cancel()
        await client.close()


def test_client_certificates_given_as_data_leave_no_file_behind(tmp_path, monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeinfer-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:9",
                                                "certificate-authority-data": base64.b64encode(cert_pem).decode()}}],
        "users": [{"name": "u", "user": {"client-certificate-data": base64.b64encode(cert_pem).decode(),
                                         "client-key-data": base64.b64encode(key_pem).decode()}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    connection = Connection.from_kubeconfig(str(tmp_path / "config"))
    assert connection.tls() is not False
    assert list(scratch.iterdir()) == []
    assert b"PRIVATE" not in repr(connection).encode()


async def test_the_client_speaks_tls_with_the_clusters_ca_and_a_client_certificate():
    """Most clusters are reached over TLS with the cluster's CA and, often, a client
    certificate: an API server stand-in that verifies both answers a list."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("kubeinfer-operator")
    seen: list[dict] = []

    async def configmaps(request: aiohttp.web.Request) -> aiohttp.web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        seen.append({"path": request.path, "peer": (peer or {}).get("subjectAltName")})
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "ConfigMapList",
                                          "metadata": {"resourceVersion": "7"}, "items": []})

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_tls)
    ca.configure_trust(server_tls)
    server_tls.verify_mode = ssl.CERT_REQUIRED
    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/namespaces/default/configmaps", configmaps)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = KubeClient(Connection(f"https://127.0.0.1:{port}", ca_data=ca.cert_pem.bytes(),
                                   cert_data=client_cert.cert_chain_pems[0].bytes(),
                                   key_data=client_cert.private_key_pem.bytes()))
    untrusting = KubeClient(Connection(f"https://127.0.0.1:{port}", cert_data=client_cert.cert_chain_pems[0].bytes(),
                                       key_data=client_cert.private_key_pem.bytes()))
    try:
        listing = await client.get(path_of("v1", "configmaps", NS))
        assert listing["metadata"]["resourceVersion"] == "7"
        assert seen == [{"path": "/api/v1/namespaces/default/configmaps", "peer": (("DNS", "kubeinfer-operator"),)}]
        with pytest.raises(KubeError) as refused:  # a server whose CA it does not trust
            await untrusting.get(path_of("v1", "configmaps", NS))
        assert refused.value.status == 503 and len(seen) == 1
    finally:
        await client.close()
        await untrusting.close()
        await runner.cleanup()


async def test_an_informer_lists_in_pages_and_keeps_only_what_it_is_told(kube):
    client = KubeClient(Connection(kube.url, token="t"))
    relists: list[list[dict]] = []

    async def relisted(items: list[dict]) -> None:
        relists.append(items)

    async def handler(event_type: str, obj: dict) -> None:
        pass

    for i in range(7):
        kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "data": {"k": "c2VjcmV0"},
                              "metadata": {"name": f"paged-{i}", "namespace": NS, "labels": {"paged": "yes"}}})
    informer = Informer(client, path_of("v1", "secrets", NS), handler, relisted, label_selector="paged=yes",
                        metadata_only=True, page_size=3, timeout_seconds=1,
                        keep=lambda obj: {"name": obj["metadata"]["name"]})
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.listed.wait(), 5)
        assert relists == [[{"name": f"paged-{i}"} for i in range(7)]]
        pages = [r for r in kube.requests() if r.method.value == "GET" and r.params.get("labelSelector") == "paged=yes"
                 and r.params.get("watch") is None]
        assert [r.params.get("limit") for r in pages] == ["3", "3", "3"]
        assert [bool(r.params.get("continue")) for r in pages] == [False, True, True]
    finally:
        task.cancel()
        await client.close()


async def test_a_metadata_only_informer_never_receives_secret_data(kube):
    client = KubeClient(Connection(kube.url, token="t"))
    received: list[dict] = []

    async def handler(event_type: str, obj: dict) -> None:
        received.append(obj)

    kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "listed", "namespace": NS},
                          "data": {"k": "c2VjcmV0"}})
    informer = Informer(client, path_of("v1", "secrets", NS), handler, metadata_only=True, timeout_seconds=1)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.listed.wait(), 5)
        kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "watched", "namespace": NS},
                              "data": {"k": "c2VjcmV0"}})
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.05)
        assert [o["metadata"]["name"] for o in received] == ["listed", "watched"]
        assert all(o["kind"] == "PartialObjectMetadata" and "data" not in o for o in received)
    finally:
        task.cancel()
        await client.close()


async def test_kubeconfig_exec_plugin_gives_the_token_and_is_asked_again_when_it_expires(kube, tmp_path):
    import sys

    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import datetime, json, os, pathlib\n"
        "count = pathlib.Path(os.environ['COUNT_FILE'])\n"
        "n = int(count.read_text() or 0) + 1 if count.exists() else 1\n"
        "count.write_text(str(n))\n"
        "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        "soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        "                  'status': {'token': f'exec-{n}', 'expirationTimestamp': soon.isoformat()}}))\n")
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": kube.url}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(plugin)], "env": [{"name": "COUNT_FILE", "value": str(tmp_path / "count")}]}}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    client = KubeClient(Connection.from_kubeconfig(str(tmp_path / "config")))
    try:
        for _ in range(2):  # the token expires within the renewal margin: asked for again
            await client.get(path_of("v1", "configmaps", NS))
    finally:
        await client.close()
    assert bearer_tokens(kube, "configmaps") == ["Bearer exec-1", "Bearer exec-2"]
