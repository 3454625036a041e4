"""The ``kubeinfer`` command line: one entry point, one subcommand per role.

Each subcommand imports its implementation only when run, so ``kubeinfer validate``
never loads kopf and ``kubeinfer gateway`` never loads torch. Logging is set up here for
every subcommand, and a ``KUBEINFER_*`` setting a subcommand cannot use stops it with
exit code 2 and a message naming the variable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from . import __version__
from .config import KubeinferSettings, SettingsError
from .secrets import DEFAULT_SECRETS_DIR

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


# One function per subcommand: it takes the parsed arguments, imports its role and
# returns the process exit code.
def _operator(args: argparse.Namespace) -> int:
    from kubeinfer_operator.main import run
    return run(args)


def _gateway(args: argparse.Namespace) -> int:
    from model_server.gateway.main import run_gateway
    return run_gateway(args)


def _serve(args: argparse.Namespace) -> int:
    from model_server.api.serve import run
    return run(args)


def _local(args: argparse.Namespace) -> int:
    from model_server.gateway.local import run_local
    return run_local(args)


def _crds(args: argparse.Namespace) -> int:
    from .crd import run
    return run(args)


def _validate(args: argparse.Namespace) -> int:
    from .validate import run
    return run(args)


def _render(args: argparse.Namespace) -> int:
    from kubeinfer_operator.render import run
    return run(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "operator": _operator, "gateway": _gateway, "serve": _serve, "local": _local,
    "crds": _crds, "validate": _validate, "render": _render,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeinfer", description="The Elasticsearch inference API on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"kubeinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("operator", help="run the operator that reconciles InferenceEndpoints")
    p.add_argument("--namespace", "-n", action="append", default=[],
                   help="namespace to watch (repeatable); all namespaces when omitted")
    p.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    p.add_argument("--peering", default=None, help="kopf peering object name, for more than one replica")
    p.add_argument("--verbose", action="store_true")

    p = sub.add_parser("gateway", help="serve Elasticsearch's inference API for every endpoint in the cluster")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=9200)
    p.add_argument("--namespace", "-n", default=None,
                   help="namespace where endpoints are created (the pod's own by default)")
    p.add_argument("--no-auth", action="store_true",
                   help="skip the SubjectAccessReview check (development only)")

    p = sub.add_parser("serve", help="serve one inference endpoint (what every endpoint pod runs)")
    p.add_argument("--config", required=True, help="InferenceEndpoint manifest (YAML or JSON)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--secrets-dir", default=DEFAULT_SECRETS_DIR,
                   help="Secrets mounted as <dir>/<secret name>/<key>")
    p.add_argument("--cache-dir", default=None, help="model cache directory")

    p = sub.add_parser("local", help="run the whole API in one process, with no cluster")
    p.add_argument("-f", "--file", action="append", default=[], dest="files",
                   help="InferenceEndpoint manifest file or directory (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9200)
    p.add_argument("--state-dir", default=None, help="where endpoints created by PUT persist")
    p.add_argument("--secrets-dir", default=None, help="Secrets as <dir>/<secret name>/<key>")
    p.add_argument("--cache-dir", default=None, help="model cache directory")

    sub.add_parser("crds", help="print the InferenceEndpoint CustomResourceDefinition as YAML")

    policy_help = ("deployment policy file (YAML: the policy, or chart values holding it under "
                   "deploymentPolicy); default: the operator's, from KUBEINFER_DEPLOYMENT_POLICY or safe defaults")
    p = sub.add_parser("validate", help="check InferenceEndpoint manifests offline")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR")
    p.add_argument("--policy", default=None, metavar="FILE", help=policy_help)

    p = sub.add_parser("render", help="print the objects the operator would create for a manifest")
    p.add_argument("path", metavar="FILE")
    p.add_argument("--uid", default=None, help="the CR's uid for ownerReferences")
    p.add_argument("--policy", default=None, metavar="FILE", help=policy_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = KubeinferSettings.from_env()
        logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else settings.log_level,
                            format=LOG_FORMAT)
        code = COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"kubeinfer {args.command}: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
