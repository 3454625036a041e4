"""``kubeinfer export``: write a local model's checked ONNX export into the model cache.

A model server without torch (the ``server`` image) serves only models whose export is in
its cache. This step, run where torch is (the ``server-cuda`` image runs it on CPU as well,
or any ``pip install kubeinfer[server]``), loads the model as the server would, exports
its transformer body, checks ONNX Runtime against torch and marks the export servable.
It does the same for a model already exported: the check is cheap next to the export.
"""

from __future__ import annotations

import argparse
import json
import logging

from kubeinfer.catalog import parse_endpoint
from kubeinfer.config import ServerSettings
from kubeinfer.errors import ElasticsearchError

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    from model_server.backends.local.backend import LocalModelBackend

    settings = ServerSettings.from_env()
    service_settings = {"model_id": args.model_id, "num_threads": 1, "num_allocations": 1}
    try:
        config = parse_endpoint("export", args.task_type, {"service": "elasticsearch",
                                                          "service_settings": service_settings})
        backend = LocalModelBackend(config, cache_dir=args.cache_dir, device="cpu", settings=settings,
                                    engine={"engine": "onnx", "quantization": args.quantization})
        backend.load_with_torch(backend.locate()).close()
    except ElasticsearchError as exc:
        print(f"kubeinfer export: {exc.reason}", flush=True)
        return 1
    print(json.dumps({"model_id": args.model_id, "task_type": args.task_type, **backend.running_on}), flush=True)
    return 0 if backend.running_on.get("engine") == "onnx" else 1

