"""A stand-in for OpenAI's embeddings API inside the kind cluster.

Answers POST /v1/embeddings as OpenAI documents it (a list of {object, index,
embedding} under "data", the model, usage) with deterministic vectors, and keeps what
it received for GET /received, so the end-to-end run can check both sides. Standard
library only: it runs in the kubeinfer image as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVED: list[dict] = []


def vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


class OpenAIEmbeddings(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/received":
            self._send(200, {"received": RECEIVED})
        else:
            self._send(200, {"status": "ok"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        RECEIVED.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
        if self.path != "/v1/embeddings":
            self._send(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error"}})
            return
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            self._send(401, {"error": {"message": "Missing API key", "type": "invalid_request_error"}})
            return
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dimensions = int(body.get("dimensions") or 8)
        self._send(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": vector(text, dimensions)}
                     for i, text in enumerate(inputs)],
            "model": body.get("model", ""),
            "usage": {"prompt_tokens": sum(len(t.split()) for t in inputs),
                      "total_tokens": sum(len(t.split()) for t in inputs)},
        })

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer(("0.0.0.0", port), OpenAIEmbeddings).serve_forever()


if __name__ == "__main__":
    main()
