"""Resolving ``secretKeyRef`` settings inside an endpoint pod or in local mode.

The operator passes each secret setting to the pod as an environment variable named by
``secret_env_var``; local mode and hand-run servers read files laid out as Kubernetes
mounts a Secret: ``<secrets_dir>/<secret name>/<key>``. A reference is a Kubernetes
Secret name and key, checked again here: no reference reads a file outside the secrets
folder, whatever the catalog let through.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from .catalog import InferenceEndpointConfig, SecretKeyRef
from .catalog._base import SECRET_KEY_PATTERN, SECRET_NAME_PATTERN
from .errors import ElasticsearchError

DEFAULT_SECRETS_DIR = "/var/run/secrets/kubeinfer"
# A credential is short; a bigger file is not one.
MAX_SECRET_BYTES = 64 * 1024


def secret_env_var(field_name: str) -> str:
    """The environment variable the operator sets for a secret setting, e.g. KUBEINFER_SECRET_API_KEY
    (``secret_parameters.api_key`` gives KUBEINFER_SECRET_SECRET_PARAMETERS__API_KEY)."""
    return "KUBEINFER_SECRET_" + field_name.upper().replace(".", "__")


class SecretResolver:
    def __init__(self, secrets_dir: str | Path = DEFAULT_SECRETS_DIR, environ: Mapping[str, str] | None = None):
        self.secrets_dir = Path(secrets_dir)
        self.environ = os.environ if environ is None else environ

    def __call__(self, field_name: str, ref: SecretKeyRef) -> str:
        env = self.environ.get(secret_env_var(field_name))
        if env:
            return env
        name, key = ref.secret_key_ref.name, ref.secret_key_ref.key
        if not (re.fullmatch(SECRET_NAME_PATTERN, name) and len(name) <= 253
                and re.fullmatch(SECRET_KEY_PATTERN, key) and len(key) <= 253):
            raise ElasticsearchError(
                400, "status_exception",
                f"Secret [{name}] key [{key}] for setting [{field_name}] is not a Kubernetes Secret name and key",
            )
        root = self.secrets_dir.expanduser().resolve()
        path = root / name / key
        missing = ElasticsearchError(
            400, "status_exception",
            f"Secret [{name}] key [{key}] for setting [{field_name}] was not found: looked for the file [{path}]",
        )
        try:
            # Kubernetes mounts keys as symbolic links inside the Secret's folder; none may lead out.
            if not path.resolve().is_relative_to(root) or not path.is_file():
                raise missing
            with path.open("rb") as f:
                raw = f.read(MAX_SECRET_BYTES + 1)
        except OSError:
            raise missing from None
        if len(raw) > MAX_SECRET_BYTES:
            raise ElasticsearchError(
                400, "status_exception",
                f"Secret [{name}] key [{key}] for setting [{field_name}] is larger than {MAX_SECRET_BYTES} bytes",
            )
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ElasticsearchError(
                400, "status_exception", f"Secret [{name}] key [{key}] for setting [{field_name}] is not UTF-8 text"
            ) from None

    def resolve(self, config: InferenceEndpointConfig) -> InferenceEndpointConfig:
        return config.resolve_secrets(self)
