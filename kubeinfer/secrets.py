"""Resolving ``secretKeyRef`` settings inside an endpoint pod or in local mode.

The operator passes each secret setting to the pod as an environment variable named by
``secret_env_var``; local mode and hand-run servers read files laid out as Kubernetes
mounts a Secret: ``<secrets_dir>/<secret name>/<key>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .catalog import InferenceEndpointConfig, SecretKeyRef
from .errors import ElasticsearchError

DEFAULT_SECRETS_DIR = "/var/run/secrets/kubeinfer"


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
        path = self.secrets_dir / name / key
        try:
            return path.read_text().strip()
        except OSError:
            raise ElasticsearchError(
                400, "status_exception", f"Secret [{name}] key [{key}] for setting [{field_name}] was not found"
            ) from None

    def resolve(self, config: InferenceEndpointConfig) -> InferenceEndpointConfig:
        return config.resolve_secrets(self)
