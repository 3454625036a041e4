"""``kubeinfer operator`` run as a user runs it: a process of its own, stopped at the end,
and failing the test if its log holds a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_operator(env: Mapping[str, str], workdir: Path, liveness_port: int) -> Iterator[subprocess.Popen]:
    """The operator, with ``env`` as its whole environment; its log is ``workdir/operator.log``."""
    log = open(workdir / "operator.log", "w+")
    proc = subprocess.Popen([sys.executable, "-P", "-m", "kubeinfer.cli", "operator",
                             "--liveness", f"http://127.0.0.1:{liveness_port}/healthz"],
                            env=dict(env), stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        output = log.read()
        log.close()
        assert "Traceback" not in output, output[-4000:]
