"""Shared fixtures. Benchmark images come from ../shared/benchmarks when it exists;
tests that need them skip, visibly, when it does not (a user's clone has no shared/)."""

import http.server
import re
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO.parent / "shared" / "benchmarks"


def benchmark_dir(name: str, kind: str) -> Path:
    """Set5/Set14 HR or LRx4 folder, or a visible skip when the benchmark copy is absent."""
    path = BENCHMARKS / name / kind
    if not path.is_dir():
        pytest.skip(f"benchmark images not found at {path} (shared/ is not part of a plain clone)")
    return path


@pytest.fixture
def photo() -> np.ndarray:
    """A 96x128 RGB uint8 crop of scikit-image's astronaut: real texture, embedded in the wheel."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:196, 150:278])


# ---------------------------------------------------------------- the local server


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        path = srv.root / urllib.parse.unquote(self.path.lstrip("/"))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if asked and srv.mode != "ignore_range":
            start = int(asked.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "cut":  # promise the whole body, send half, hang up
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


def local_server(handler, monkeypatch, **attributes):
    """A threaded HTTP server on 127.0.0.1 with ``handler``, its ``url``, an empty ``requests``
    list and ``attributes`` set on it; yields it, then shuts it down (use with ``yield from``)."""
    # a proxy configured in the environment must not see requests to the local server
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    httpd.requests = []
    for name, value in attributes.items():
        setattr(httpd, name, value)
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def server(tmp_path, monkeypatch):
    (tmp_path / "www").mkdir()
    yield from local_server(_Handler, monkeypatch, root=tmp_path / "www", mode="normal")


def serve(server, name: str, data: bytes) -> str:
    (server.root / name).write_bytes(data)
    return f"{server.url}/{name}"
