"""The plain-ASGI examples and their asgikit versions answer alike.

``examples/asgi_*.py`` are the programs a newcomer meets first; ``examples/asgikit_*.py``
are the same apps written with asgikit. Each pair is driven through the test client, and
the streaming pair is also called directly to check the ASGI messages themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import asgi_echo_request
import asgi_hello
import asgi_stream
import asgikit_echo_request
import asgikit_hello
import asgikit_stream
from _uvicorn import run_uvicorn

from asgikit.testing import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HELLO_APPS = {"asgi": asgi_hello.app, "asgikit": asgikit_hello.router}
ECHO_APPS = {"asgi": asgi_echo_request.app, "asgikit": asgikit_echo_request.router}
STREAM_DELAY = 0.01  # the examples pause 1 s; the tests do not need to wait that long


def stream_apps() -> dict[str, Any]:
    return {
        "asgi": asgi_stream.make_app(STREAM_DELAY),
        "asgikit": asgikit_stream.make_router(STREAM_DELAY),
    }


@pytest.mark.parametrize("kind", HELLO_APPS)
def test_hello(kind: str) -> None:
    with TestClient(HELLO_APPS[kind]) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("kind", ECHO_APPS)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("POST", "/predict"), ("DELETE", "/models/small"), ("PUT", "/a/b/c")],
)
def test_echo_request(kind: str, method: str, path: str) -> None:
    with TestClient(ECHO_APPS[kind]) as client:
        response = client.request(method, path)
    assert response.status_code == 200
    assert response.text == f"Received {method} request to {path}"


@pytest.mark.parametrize("kind", ["asgi", "asgikit"])
def test_stream_arrives_in_three_chunks(kind: str) -> None:
    with TestClient(stream_apps()[kind]) as client, client.stream("GET", "/") as response:
        assert response.status_code == 200
        chunks = [chunk for chunk in response.iter_raw() if chunk]
    assert chunks == [b"Hello", b", ", b"world!"]


@pytest.mark.parametrize("kind", ["asgi", "asgikit"])
def test_stream_sends_more_body_until_the_end(kind: str) -> None:
    app = stream_apps()[kind]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }

    async def main() -> None:
        with anyio.fail_after(5):
            await app(scope, receive, send)

    anyio.run(main)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    bodies = [(m["body"], m.get("more_body", False)) for m in sent[1:]]
    pieces = [(body, more) for body, more in bodies if body]
    assert [body for body, _ in pieces] == [b"Hello", b", ", b"world!"]
    assert all(more for _, more in pieces[:2])  # the first two announce more to come
    assert bodies[-1][1] is False  # and the response ends


@pytest.mark.parametrize(
    ("app", "path", "expected"),
    [
        ("asgi_hello:app", "/", "Hello, world!"),
        ("asgikit_hello:router", "/", "Hello, world!"),
        ("asgi_echo_request:app", "/models/small", "Received GET request to /models/small"),
        ("asgikit_echo_request:router", "/models/small", "Received GET request to /models/small"),
        ("asgi_stream:app", "/", "Hello, world!"),
        ("asgikit_stream:router", "/", "Hello, world!"),
    ],
)
def test_examples_under_uvicorn(app: str, path: str, expected: str) -> None:
    # As the docstrings say to run them: uvicorn --app-dir examples module:attribute.
    env = {"ASGI_STREAM_DELAY": str(STREAM_DELAY)}
    with run_uvicorn(app, app_dir=EXAMPLES, env=env) as url, httpx.Client(timeout=10) as client:
        response = client.get(url + path)
    assert response.status_code == 200
    assert response.text == expected
    if "stream" in app:  # no content-length: the body went out chunk by chunk
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
