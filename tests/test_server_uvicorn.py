"""Real servers (uvicorn, hypercorn) on 127.0.0.1 serve examples/hello.py; httpx drives them."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


SERVERS = {
    "uvicorn": (
        ["-m", "uvicorn", "hello:router", "--host", "127.0.0.1", "--port", "0", "--lifespan", "on"],
        r"Uvicorn running on (http://127\.0\.0\.1:\d+)",
        "Application startup complete",
    ),
    "hypercorn": (
        ["-m", "hypercorn", "hello:router", "--bind", "127.0.0.1:0", "--log-level", "info"],
        r"Running on (http://127\.0\.0\.1:\d+)",
        "Running on",
    ),
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Start a real server on a free port of 127.0.0.1 (the OS picks it; the server's log
    says which) serving examples/hello.py, and always stop it."""
    arguments, url_pattern, ready_text = SERVERS[request.param]
    process = subprocess.Popen(
        [sys.executable, *arguments],
        cwd=ROOT / "examples",
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        started = False
        for line in process.stderr:  # ends if the server exits
            found = re.search(url_pattern, line)
            if found:
                url = found.group(1)
            if ready_text in line:
                started = True
            if url and started:
                break
        assert url and started, f"{request.param} did not start"
        # Keep reading the log so a full pipe can never block the server.
        drain = threading.Thread(target=process.stderr.read, daemon=True)
        drain.start()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_hello_over_real_http(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        response = client.get("/hello")
        assert response.status_code == 200
        assert response.text == "Hello, world!"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert "server-timing" in response.headers  # the example's middleware ran


def test_lifespan_state_params_and_url_for(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        assert client.get("/hello/Ada", params={"lang": "fr"}).json() == {
            "greeting": "Bonjour, Ada!"
        }
        assert client.get("/hello/Ada", params={"lang": "xx"}).status_code == 404
        port = server_url.rsplit(":", 1)[1]
        assert client.get("/users/7").json() == {"id": 7, "url": f"http://127.0.0.1:{port}/users/7"}


def test_errors_and_methods(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        assert client.get("/users/seven").status_code == 404
        wrong = client.delete("/hello")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET, HEAD"
        head = client.head("/hello")
        assert (
            head.status_code == 200
            and head.content == b""
            and head.headers["content-length"] == "13"
        )
        assert client.post("/echo", json={"a": [1, 2]}).json() == {"a": [1, 2]}
        bad = client.post(
            "/echo", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400 and "Invalid JSON" in bad.json()["detail"]
        too_big = client.post("/echo", content=b"x" * 1_000_001)
        assert too_big.status_code == 413
