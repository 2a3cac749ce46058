"""A fake language model and fake tools on 127.0.0.1, unreliable on purpose.

`POST /model` takes `{"prompt": ...}` and answers `{"text": ..., "call": ID}`;
`POST /tool/search` takes `{"query": ...}` and answers `{"hits": [...], "call": ID}`.
Every 4th request fails with a 500 and every 7th is refused with a 429 and a
Retry-After, so a caller must retry. Each answered request is logged (key, call id)
to `log_path`, in order, so a test can count the calls that really happened.

Run alone: `python fake_services.py 8765` (the test starts it in a thread).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeServices(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, log_path: Path, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.log_path = log_path
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        n = next(self.counter)
        if n % 4 == 0:
            return 500, {"error": "the model is overloaded"}
        if n % 7 == 0:
            return 429, {"error": "rate limited", "retry_after": 0.05}
        call = uuid.uuid4().hex
        if path == "/model":
            prompt = str(body.get("prompt", ""))
            if prompt.startswith("plan:"):
                topic = prompt.removeprefix("plan:").strip()
                text: Any = [f"{topic} history", f"{topic} today", f"{topic} risks"]
            else:
                text = f"answer to {prompt[:60]!r}"
            result: dict[str, Any] = {"text": text, "call": call}
        else:
            result = {"hits": [f"{body.get('query')} #{i}" for i in range(2)], "call": call}
        with self.lock, self.log_path.open("a") as log:
            log.write(f"{path} {key} {call}\n")
        return 200, result


class _Handler(BaseHTTPRequestHandler):
    server: FakeServices

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        status, answer = self.server.answer(self.path, self.headers.get("X-Key", "-"), body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0.05")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


if __name__ == "__main__":
    server = FakeServices(Path("fake_services.log"), int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.url, flush=True)
    server.serve_forever()
