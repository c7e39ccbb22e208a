"""Real servers (uvicorn, hypercorn) on 127.0.0.1 serve examples/hello.py; httpx drives them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from _server import EXAMPLES, serving


@pytest.fixture(scope="module", params=["hypercorn", "uvicorn-h11"])
def server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Serve examples/hello.py with a real server on a free port of 127.0.0.1."""
    tmp_dir = tmp_path_factory.mktemp(f"hello-{request.param}")
    with serving(request.param, "hello:router", tmp_dir=tmp_dir, cwd=EXAMPLES) as server:
        yield server.url


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
