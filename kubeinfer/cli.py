"""The ``kubeinfer`` command line: one entry point, one subcommand per role.

Each subcommand imports its implementation only when run, so ``kubeinfer validate``
never loads kopf and ``kubeinfer gateway`` never loads torch. Logging is set up here for
every subcommand, and a ``KUBEINFER_*`` setting a subcommand cannot use stops it with
exit code 2 and a message naming the variable. Every ``--help`` shows the defaults; on a
terminal, ``local`` shows what it is doing while it starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from . import __version__
from .config import KubeinferSettings, SettingsError
from .progress import StartupLine, StartupLogHandler, StatusStream
from .secrets import DEFAULT_SECRETS_DIR

# Local mode's folders, under the user's home (shown as given: a help text is read by a person).
LOCAL_STATE_DIR = "~/.kubeinfer/state"
LOCAL_SECRETS_DIR = "~/.kubeinfer/secrets"

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


def _export(args: argparse.Namespace) -> int:
    from model_server.export import run
    return run(args)


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
    "export": _export, "crds": _crds, "validate": _validate, "render": _render,
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help. Options without one to show (a flag, None, an
    empty list) say in their own words what happens when they are left out."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeinfer", description="The Elasticsearch inference API on Kubernetes.", formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"kubeinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".",
                              formatter_class=HelpFormatter)

    p = command("operator", "run the operator that reconciles InferenceEndpoints")
    p.add_argument("--namespace", "-n", action="append", default=[],
                   help="namespace to watch (repeatable); all namespaces when omitted")
    p.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    p.add_argument("--peering", default=None,
                   help="kopf peering object name, for more than one replica; none when omitted")
    p.add_argument("--verbose", action="store_true", help="log at DEBUG level")

    p = command("gateway", "serve Elasticsearch's inference API for every endpoint in the cluster")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=9200, help="port to listen on")
    p.add_argument("--namespace", "-n", default=None,
                   help="namespace where endpoints are created; the pod's own when omitted")
    p.add_argument("--no-auth", action="store_true",
                   help="check no caller: no TokenReview, no SubjectAccessReview, so whoever reaches the "
                        "port may create, delete and call endpoints (development only)")

    p = command("serve", "serve one inference endpoint (what every endpoint pod runs)")
    p.add_argument("--config", required=True, help="InferenceEndpoint manifest (YAML or JSON)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on")
    p.add_argument("--secrets-dir", default=DEFAULT_SECRETS_DIR,
                   help="Secrets mounted as <dir>/<secret name>/<key>")
    p.add_argument("--cache-dir", default=None,
                   help="model cache directory; Hugging Face's own ($HF_HOME, ~/.cache/huggingface) when omitted")

    p = command("local", "run the whole API in one process, with no cluster")
    p.add_argument("-f", "--file", action="append", default=[], dest="files",
                   metavar="FILE_OR_DIR", help="InferenceEndpoint manifest file or directory (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=9200, help="port to listen on")
    p.add_argument("--state-dir", default=LOCAL_STATE_DIR, help="where endpoints created by PUT persist")
    p.add_argument("--secrets-dir", default=LOCAL_SECRETS_DIR, help="Secrets as <dir>/<secret name>/<key>")
    p.add_argument("--cache-dir", default=None,
                   help="model cache directory; Hugging Face's own ($HF_HOME, ~/.cache/huggingface) when omitted")

    p = command("export", "write a local model's ONNX export into the model cache (needs torch)")
    p.add_argument("model_id", help="built-in model id, Hugging Face id or model folder")
    p.add_argument("--task-type", default="text_embedding",
                   choices=["text_embedding", "sparse_embedding", "rerank"], help="the task the model serves")
    p.add_argument("--quantization", default="none", choices=["none", "int8"],
                   help="int8: the quantized export, for endpoints with quantization int8")
    p.add_argument("--cache-dir", default=None,
                   help="model cache directory; Hugging Face's own ($HF_HOME, ~/.cache/huggingface) when omitted")

    command("crds", "print the InferenceEndpoint CustomResourceDefinition as YAML")

    policy_help = ("deployment policy file (YAML: the policy, or chart values holding it under "
                   "deploymentPolicy); the operator's when omitted, from KUBEINFER_DEPLOYMENT_POLICY or safe defaults")
    region_help = ("inference region policy file (YAML: chart values holding it under regionPolicy, or the body "
                   "of PUT /_inference/_region_policy); endpoints whose cloud region it leaves out are refused; none when omitted")
    p = command("validate", "check InferenceEndpoint manifests offline",
                "Check InferenceEndpoint manifests offline, as the API server and the operator would: "
                "one line per problem, exit status 1 when there is any.")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR",
                   help="manifest files, folders searched for *.yaml, *.yml and *.json, or - for standard input")
    p.add_argument("--policy", default=None, metavar="FILE", help=policy_help)
    p.add_argument("--region-policy", default=None, metavar="FILE", help=region_help)

    p = command("render", "print the objects the operator would create for a manifest")
    p.add_argument("path", metavar="FILE", help="InferenceEndpoint manifest (YAML or JSON)")
    p.add_argument("--uid", default=None, help="the CR's uid for ownerReferences; a placeholder when omitted")
    p.add_argument("--policy", default=None, metavar="FILE", help=policy_help)
    p.add_argument("--region-policy", default=None, metavar="FILE", help=region_help)
    return parser


# Commands a person starts on a terminal and waits for: imports, then models to load.
SLOW_STARTS = ("local",)


def _startup_line(command: str) -> StartupLine | None:
    """A status line under the log while ``command`` starts, where standard error is a terminal."""
    if command not in SLOW_STARTS or not sys.stderr.isatty():
        return None
    line = StartupLine(f"kubeinfer {command}", sys.stderr).start()
    sys.stderr = StatusStream(sys.stderr, line)  # type: ignore[assignment]
    return line


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    line = args.startup_line = _startup_line(args.command)
    try:
        settings = KubeinferSettings.from_env()
        logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else settings.log_level,
                            format=LOG_FORMAT)
        if line is not None:
            logging.getLogger().addHandler(StartupLogHandler(line))
        code = COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"kubeinfer {args.command}: {exc}", file=sys.stderr)
        return 2
    finally:
        if line is not None:
            line.finish()
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
