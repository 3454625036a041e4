"""``kubeinfer local``: Elasticsearch's whole inference API in one process, no cluster.

Endpoints come from InferenceEndpoint manifests (``-f`` files or folders) and from PUT
calls; the backends (local models, external providers) run in this process. Endpoints
created by PUT persist in ``--state-dir`` and come back on the next start;
``secretKeyRef`` settings are read from ``--secrets-dir``, laid out as Kubernetes
mounts a Secret (``<dir>/<secret name>/<key>``). Ctrl-C stops cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import socket
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, TextIO

from fastapi import FastAPI

from ..backends.base import Backend
from kubeinfer.catalog import InferenceEndpointConfig, TaskType, from_manifest, preconfigured_endpoints

from ..backends.local.models import cached_model_dir, downloads_forbidden
from ..backends.providers.outbound import OutboundHTTP
from ..backends.registry import create_backend
from kubeinfer.config import ServerSettings
from kubeinfer.errors import ElasticsearchError
from kubeinfer.manifests import ManifestError, load_manifests
from kubeinfer.progress import StartupLine
from kubeinfer.secrets import SecretResolver
from ..api.app import freeze_startup_objects
from .app import create_gateway_app
from .local_store import DEFAULT_STATE_DIR, EndpointState, LocalEndpointStore
from .region_policy import FileRegionPolicy

log = logging.getLogger("kubeinfer.local")

DEFAULT_SECRETS_DIR = Path("~/.kubeinfer/secrets")

# A request body to try, per task type: every task type has one, or the banner cannot be printed.
EXAMPLE_BODIES: dict[TaskType, dict[str, Any]] = {
    TaskType.TEXT_EMBEDDING: {"input": ["The quick brown fox jumps over the lazy dog"]},
    TaskType.EMBEDDING: {"input": [{"content": {"type": "text", "value": "The quick brown fox"}}]},
    TaskType.SPARSE_EMBEDDING: {"input": ["The quick brown fox jumps over the lazy dog"]},
    TaskType.RERANK: {
        "query": "What do foxes jump over?",
        "input": ["Foxes jump over lazy dogs.", "Kubernetes schedules pods.", "Dogs sleep in the sun."],
    },
    TaskType.COMPLETION: {"input": "Say hello in French"},
    TaskType.CHAT_COMPLETION: {"messages": [{"role": "user", "content": "Say hello in French"}]},
}
# Task types answered as a stream only, and those answered either way.
STREAM_ONLY = {TaskType.CHAT_COMPLETION}
STREAMED_TOO = {TaskType.COMPLETION}

# A create call to try; served offline when the model's PyPI package is installed.
EXAMPLE_CREATE_BODY = {
    "service": "elasticsearch",
    "service_settings": {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "num_allocations": 1, "num_threads": 1},
}


def load_endpoint_manifests(paths: list[str]) -> list[InferenceEndpointConfig]:
    """Every InferenceEndpoint under ``paths``, validated; errors name the file."""
    configs: dict[str, tuple[str, InferenceEndpointConfig]] = {}
    for source, manifest in load_manifests(paths):
        try:
            config = from_manifest(manifest)
        except ElasticsearchError as exc:
            raise ManifestError(source, f"{exc.type}: {exc.reason}") from None
        if config.inference_id in configs:
            raise ManifestError(source, f"inference id [{config.inference_id}] is also defined in "
                                        f"{configs[config.inference_id][0]}")
        configs[config.inference_id] = (source, config)
    return [config for _, config in configs.values()]


def curl_commands(base_url: str, configs: list[InferenceEndpointConfig]) -> list[str]:
    """Commands a user can paste to try the endpoints."""
    lines = [f"curl -s {base_url}/_inference"]
    for config in sorted(configs, key=lambda c: c.inference_id):
        body = json.dumps(EXAMPLE_BODIES[config.task_type])
        path = f"{base_url}/_inference/{config.task_type.value}/{config.inference_id}"
        if config.task_type not in STREAM_ONLY:
            lines.append(f"curl -s -X POST {path} -H 'Content-Type: application/json' -d '{body}'")
        if config.task_type in STREAM_ONLY | STREAMED_TOO:
            lines.append(f"curl -s -N -X POST {path}/_stream -H 'Content-Type: application/json' -d '{body}'")
    lines.append(
        f"curl -s -X PUT {base_url}/_inference/text_embedding/my-embeddings -H 'Content-Type: application/json' "
        f"-d '{json.dumps(EXAMPLE_CREATE_BODY)}'"
    )
    return lines


def shown_path(path: Path) -> str:
    """``path`` as a person would type it: under the home folder, with ``~``."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def banner(base_url: str, configs: list[InferenceEndpointConfig], state_dir: Path,
           preconfigured: list[tuple[InferenceEndpointConfig, str, bool]] = (), *,
           downloads_forbidden: bool = False) -> str:
    """What local mode prints once it serves. ``preconfigured`` holds each of
    Elasticsearch's preconfigured endpoints with its model and whether that is cached here."""
    out = [f"kubeinfer local: Elasticsearch's inference API at {base_url}", ""]
    if configs:
        out.append("Endpoints:")
        width = max(len(c.inference_id) for c in configs)
        for c in sorted(configs, key=lambda c: c.inference_id):
            out.append(f"  {c.inference_id:<{width}}  {c.task_type.value:<16} {c.service}")
    else:
        out.append("No endpoints yet: create one with PUT /_inference/<task_type>/<inference_id>.")
    if preconfigured:
        out += ["", "Preconfigured endpoints (Elasticsearch's; GET lists them, as Elasticsearch does):"]
        width = max(len(c.inference_id) for c, _, _ in preconfigured)
        for c, model, cached in sorted(preconfigured, key=lambda p: p[0].inference_id):
            out.append(f"  {c.inference_id:<{width}}  {c.task_type.value:<16} "
                       f"{'cached' if cached else 'not cached'}: {model}")
        if all(cached for _, _, cached in preconfigured):
            out.append("  Each loads its model on its first request.")
        elif downloads_forbidden:
            out.append("  HF_HUB_OFFLINE is set: those not cached cannot answer until `hf download <model>`.")
        else:
            out.append("  Each loads its model on its first request, downloading it if it is not cached")
            out.append("  (`hf download <model>` caches it ahead of time).")
    out += ["", "Try:"]
    out += [f"  {line}" for line in curl_commands(base_url, configs)]
    out += ["", f"Endpoints created with PUT are kept in {shown_path(state_dir)}. Stop with Ctrl-C.", ""]
    return "\n".join(out)


def preconfigured_models(settings: ServerSettings, cache_dir: str | None) -> list[tuple[InferenceEndpointConfig,
                                                                                           str, bool]]:
    """Each preconfigured endpoint, its model, and whether that is here, found without a download."""
    models = []
    for config in preconfigured_endpoints():
        name = settings.resolve_model(config.service_settings.model_id)
        models.append((config, name, cached_model_dir(name, cache_dir) is not None))
    return models


def build_local_app(
    store: LocalEndpointStore,
    manifests: list[InferenceEndpointConfig],
    *,
    base_url: str,
    out: TextIO | None = None,
    startup_line: StartupLine | None = None,
    settings: ServerSettings | None = None,
    cache_dir: str | None = None,
    outbound: OutboundHTTP | None = None,
) -> FastAPI:
    """The local app; its lifespan opens ``outbound`` (the provider calls' pools the
    store's backends are given), starts the endpoints, takes the start-up status line away
    and prints the banner, and closes the endpoints, then ``outbound``, on the way out."""
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if outbound is not None:
            await outbound.open()
        # Model downloads can take long: no time limit at start-up.
        await store.start(manifests, timeout=math.inf)
        state_dir = store.state.directory if store.state is not None else Path("-")
        preconfigured = preconfigured_models(settings, cache_dir)
        if startup_line is not None:
            startup_line.finish()
        text = banner(base_url, await store.list(), state_dir, preconfigured,
                      downloads_forbidden=downloads_forbidden())
        print(text, file=out or sys.stdout, flush=True)
        try:
            yield
        finally:
            await store.close()
            if outbound is not None:
                await outbound.close()
            log.info("all endpoints closed")

    region_policy = FileRegionPolicy(store.state.directory if store.state is not None else None)
    return create_gateway_app(store, lifespan=lifespan, name="kubeinfer-local", region_policy=region_policy)


def run_local(args: argparse.Namespace) -> int:
    import uvicorn

    settings = ServerSettings.from_env()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    try:
        manifests = load_endpoint_manifests(list(args.files))
    except ManifestError as exc:
        print(f"kubeinfer local: {exc}", file=sys.stderr)
        return 2
    state = EndpointState(args.state_dir or DEFAULT_STATE_DIR)
    # Secrets come from files only: one environment variable cannot serve many endpoints.
    secrets = SecretResolver(Path(args.secrets_dir or DEFAULT_SECRETS_DIR).expanduser(), environ={})
    outbound = OutboundHTTP(settings)
    options: dict[str, Any] = {"settings": settings, "outbound": outbound}
    if getattr(args, "cache_dir", None):
        options["cache_dir"] = args.cache_dir

    def backend_factory(config: InferenceEndpointConfig) -> Backend:
        return create_backend(config, **options)

    store = LocalEndpointStore(state, resolve=secrets.resolve, backend_factory=backend_factory,
                               scale_to_zero_after=settings.scale_to_zero_after)
    # The port first: the banner, printed once endpoints have started, must be true.
    try:
        listening = listen(args.host, args.port)
    except OSError as exc:
        print(f"kubeinfer local: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    app = build_local_app(store, manifests, base_url=f"http://{host}:{args.port}",
                          startup_line=getattr(args, "startup_line", None), settings=settings,
                          cache_dir=getattr(args, "cache_dir", None), outbound=outbound)
    freeze_startup_objects()
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=False))
    try:
        server.run(sockets=[listening])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly
        pass
    finally:
        listening.close()
    return 0 if server.started else 1


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, as uvicorn would open it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock
