"""Running ``kubeinfer local`` as a user does, for tests: a real process on a free port,
driven over HTTP; and serving a ``FakeProvider`` over real HTTP for it to call.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fake_providers import FakeProvider, Received, Reply

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-local-test-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedFake:
    """A ``FakeProvider`` served by uvicorn in a thread, at ``url``."""

    def __init__(self, fake: FakeProvider) -> None:
        self.fake = fake
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(fake, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "ServedFake":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake provider did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(5)


def openai_embeddings(*vectors: list[float]) -> dict[str, Any]:
    return {"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2},
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]}


def openai_chat(text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}


def openai_chat_stream(*deltas: str) -> Reply:
    """OpenAI's streamed chat completion: one chunk per delta, then ``[DONE]``."""
    events: list[tuple[str | None, str]] = []
    for delta in deltas:
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}
        events.append((None, json.dumps(chunk)))
    events.append((None, "[DONE]"))
    return Reply(events=events)


def openai_fake() -> FakeProvider:
    """Answers OpenAI's embeddings and (streamed or not) chat completions."""
    fake = FakeProvider()

    def embeddings(received: Received) -> Reply:
        texts = received.json["input"]
        texts = texts if isinstance(texts, list) else [texts]
        # A vector that tells the inputs apart: its first number is the text's length.
        return Reply(json=openai_embeddings(*[[float(len(t)), 0.5, -0.25] for t in texts]))

    fake.on("/v1/embeddings", embeddings)
    fake.on("/v1/chat/completions", lambda r: openai_chat_stream("Bon", "jour", "!") if r.json.get("stream")
            else Reply(json=openai_chat("Bonjour!")))
    return fake


class KubeinferProcess:
    """``kubeinfer <command>`` in a child process on a free port; ``client`` talks to it."""

    ready_path = "/"

    def __init__(self, command: str, *args: str, env: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-P", "-m", "kubeinfer.cli", command, "--port", str(self.port), *args]
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    **(env or {})}
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=60, headers=headers)

    def start(self, timeout: float = 120) -> "KubeinferProcess":
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self._lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"kubeinfer exited with {self.process.returncode}:\n{self.text}")
            try:
                if self.client.get(self.ready_path).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kubeinfer did not start in {timeout}s:\n{self.text}")
            time.sleep(0.1)

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self._lines)

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout)
        time.sleep(0.05)  # let the reader thread drain the last lines
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.interrupt()
        self.client.close()

    def __enter__(self) -> "KubeinferProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.client.close()


class LocalMode(KubeinferProcess):
    """``kubeinfer local`` with its own state directory."""

    def __init__(self, *args: str, state_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__("local", "--state-dir", str(state_dir), *args, env=env)
        self.state_dir = state_dir
