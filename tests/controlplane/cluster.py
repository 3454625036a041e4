"""A real Kubernetes control plane on loopback, for tests and for `make cluster`.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the upstream
components, built from Go modules into one binary (``cmd/controlplane``); KWOK (``kwok/``)
stands in for kubelets, so pods scheduled on its fake node become Running and Ready with
no container runtime. Security is a real cluster's: serving certificates signed by a CA of
the cluster's own, client certificates per component, service-account signing keys,
``--authorization-mode=Node,RBAC`` and the default admission plugins (PodSecurity
included).

What this module must not do: change how a component behaves. It only starts them,
waits for them, and writes kubeconfigs; tests and ``make cluster`` use the same start.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = REPO / ".cache"
KUBERNETES_VERSION = "v1.37.2"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_NAME = "kwok-node-0"
# What the fake node offers: room for every pod the tests and the operator benchmark
# (a thousand endpoints) create, GPUs included.
NODE_CAPACITY = {"cpu": "4k", "memory": "64Ti", "pods": "2k", "nvidia.com/gpu": "2k", "ephemeral-storage": "64Ti"}


class ToolMissing(RuntimeError):
    """Go is not installed, so the control plane cannot be built here."""


# ---- building ---------------------------------------------------------------------------------

def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise ToolMissing("the Go toolchain (`go`) is not installed; it builds Kubernetes' control plane")
    return go


def _source_key(go: str, module: Path) -> str:
    digest = hashlib.sha256(subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout.encode())
    for path in sorted(module.rglob("*")):
        if path.suffix in {".go", ".mod", ".sum"} and (module.name == "kwok" or "kwok" not in path.relative_to(module).parts):
            digest.update(str(path.relative_to(module)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build(*, quiet: bool = False) -> tuple[Path, Path]:
    """Build (or find already built) the control-plane binary and KWOK; returns their paths.

    Outputs live under ``.cache/controlplane/<key>/``, the key hashing the Go version and
    the modules' sources, so a warm machine never builds twice and a version bump builds anew.
    """
    go = _go()
    version = "k8s.io/component-base/version"
    targets = [
        (HERE, "./cmd/controlplane", "controlplane",
         [f"-X {version}.gitVersion={KUBERNETES_VERSION}", f"-X {version}.gitMajor=1",
          f"-X {version}.gitMinor={KUBERNETES_VERSION.split('.')[1]}", f"-X {version}.gitTreeState=clean"]),
        (HERE / "kwok", ".", "kwok", []),
    ]
    built = []
    for module, package, name, ldflags in targets:
        out = CACHE / "controlplane" / f"{name}-{_source_key(go, module)}" / name
        if not out.exists():
            if not quiet:
                print(f"building {name} from Go modules (a cold machine takes several minutes)...", flush=True)
            tmp = out.with_suffix(".tmp")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([go, "build", "-o", str(tmp), "-ldflags", " ".join(["-s", "-w", *ldflags]), package],
                           cwd=module, check=True)
            tmp.rename(out)
        built.append(out)
    return built[0], built[1]


# ---- certificates -----------------------------------------------------------------------------

def _pki(directory: Path) -> None:
    """A CA of the cluster's own, serving and client certificates, service-account keys."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def name(cn: str, org: str | None = None) -> x509.Name:
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(parts)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("kubeinfer-test-ca")).issuer_name(name("kubeinfer-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(key_pem(ca_key))

    def issue(file: str, subject: x509.Name, usage, sans: list | None = None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        (directory / f"{file}.crt").write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        (directory / f"{file}.key").write_bytes(key_pem(key))

    service_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
    issue("apiserver", name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, [
        x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"), x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(service_ip)])
    for file, cn, org in (("admin", "kubeinfer-admin", "system:masters"),
                          ("kube-controller-manager", "system:kube-controller-manager", None),
                          ("kube-scheduler", "system:kube-scheduler", None),
                          ("kwok", "kwok-controller", "system:masters")):
        issue(file, name(cn, org), ExtendedKeyUsageOID.CLIENT_AUTH)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "sa.key").write_bytes(key_pem(sa))
    (directory / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubeconfig_for(server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None,
                   token: str | None = None, name: str = "kubeinfer-test", namespace: str = "default") -> dict:
    """A kubeconfig for the cluster at ``server``, with a client certificate or a bearer token."""
    user: dict = {"token": token} if token else {
        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode()}
    return {"apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {
                "server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}]}


# ---- the running cluster ----------------------------------------------------------------------

@dataclass
class ControlPlane:
    """The processes of one control plane, their files under ``root``.

    ``up()`` starts a fresh one (any data left in ``root`` is wiped) and returns once
    `/readyz` answers and the fake node is Ready; ``down()`` stops every process it started,
    also from another process (their ids are kept in ``root/state.json``).
    """

    root: Path
    # Whether the processes outlive the one that started them (``make cluster``), or end
    # with it, however it ends (tests and benchmarks: nothing is left running).
    detached: bool = False

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def state(self) -> dict:
        path = self.root / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def server(self) -> str:
        return self.state["server"]

    def up(self, *, timeout: float = 120.0) -> "ControlPlane":
        controlplane, kwok = build()
        self.down()
        for part in ("etcd", "pki", "logs"):
            shutil.rmtree(self.root / part, ignore_errors=True)
        (self.root / "logs").mkdir(parents=True)
        _pki(self.pki)
        etcd_port, peer_port, api_port, kwok_port = (_free_port() for _ in range(4))
        server = f"https://127.0.0.1:{api_port}"
        state = {"server": server, "pids": {}, "version": KUBERNETES_VERSION}
        pki = self.pki
        kubeconfigs = {}
        for component in ("admin", "kube-controller-manager", "kube-scheduler", "kwok"):
            path = self.root / ("kubeconfig" if component == "admin" else f"{component}.kubeconfig")
            path.write_text(yaml.safe_dump(kubeconfig_for(server, pki / "ca.crt", cert=pki / f"{component}.crt",
                                                          key=pki / f"{component}.key")))
            path.chmod(0o600)
            kubeconfigs[component] = path

        def start(name: str, argv: list[str]) -> None:
            log = open(self.root / "logs" / f"{name}.log", "wb")
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, cwd=self.root,
                                       preexec_fn=None if self.detached else _end_with_parent)
            state["pids"][name] = process.pid
            (self.root / "state.json").write_text(json.dumps(state))

        try:
            start("etcd", [str(controlplane), "etcd", "--name=etcd", f"--data-dir={self.root / 'etcd'}",
                           f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                           f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                           f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                           f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                           f"--initial-cluster=etcd=http://127.0.0.1:{peer_port}",
                           "--listen-metrics-urls=", "--log-level=warn",
                           # a test cluster's data need not survive a power cut
                           "--unsafe-no-fsync"])
            start("kube-apiserver", [
                str(controlplane), "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # the kubernetes Service's endpoints cannot be a loopback address
                "--endpoint-reconciler-type=none",
                "--profiling=false", "-v=1"])
            self._wait_ready(server, timeout)
            start("kube-controller-manager", [
                str(controlplane), "kube-controller-manager",
                f"--kubeconfig={kubeconfigs['kube-controller-manager']}",
                "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
                # Client-side rate limits as a larger control plane sets them (the default, 20
                # requests/s, would make a thousand endpoints measure the limiter).
                "--kube-api-qps=100", "--kube-api-burst=200",
                "--profiling=false", "-v=1"])
            start("kube-scheduler", [
                str(controlplane), "kube-scheduler", f"--kubeconfig={kubeconfigs['kube-scheduler']}",
                "--leader-elect=false", "--secure-port=0", "--profiling=false", "-v=1"])
            start("kwok", [
                str(kwok), f"--kubeconfig={kubeconfigs['kwok']}",
                "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16", "--node-ip=10.244.0.1",
                f"--server-address=127.0.0.1:{kwok_port}"])
            self._register_node()
            self._wait(lambda: self._node_ready() and self._default_service_account(), timeout,
                       "the fake node Ready and the default ServiceAccount made")
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        pids = self.state.get("pids", {})
        for name in reversed(list(pids)):
            try:
                os.killpg(pids[name], signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 15
        for pid in pids.values():
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        state_file = self.root / "state.json"
        if state_file.exists():
            state_file.unlink()

    # ---- calls as the admin --------------------------------------------------------------------
    def admin_tls(self) -> ssl.SSLContext:
        """TLS that trusts the cluster's CA and presents the admin's client certificate."""
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def request(self, method: str, path: str, body: dict | None = None, *, server: str | None = None,
                content_type: str = "application/json") -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request((server or self.server) + path, data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.admin_tls(), timeout=10) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()})
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, (json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()})

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for name, pid in self.state.get("pids", {}).items():
                if not _alive(pid):
                    log = (self.root / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the control plane did not get {what} within {timeout:.0f}s "
                                   f"(logs in {self.root / 'logs'})")
            time.sleep(0.2)

    def _wait_ready(self, server: str, timeout: float) -> None:
        def ready() -> bool:
            try:
                return self.request("GET", "/readyz", server=server)[0] == 200
            except OSError:
                return False
        self._wait(ready, timeout, "/readyz answering 200")

    def _register_node(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE_NAME,
                             "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                             "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "type": "kwok"}},
                "spec": {},
                "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY}}
        status, body = self.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise RuntimeError(f"registering the fake node failed: {status} {body}")

    def _node_ready(self) -> bool:
        status, node = self.request("GET", f"/api/v1/nodes/{NODE_NAME}")
        return status == 200 and any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in node.get("status", {}).get("conditions", []))

    def _default_service_account(self) -> bool:
        return self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200


def _end_with_parent() -> None:
    """In the child, before it runs: kill it when the process that started it dies (its data is
    a test's, not worth a graceful shutdown that may wait on a component already gone)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child not yet reaped) is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True
