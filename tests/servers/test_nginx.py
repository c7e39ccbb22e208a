"""asgikit behind nginx, configured by docs/nginx.conf (the file docs/deployment.md shows).

nginx (the Debian package, installed by `make system-deps`) runs on a free port of
127.0.0.1 with its own prefix, pid and temp dirs; uvicorn serves conformance_app.py
behind it with ``--root-path /app --proxy-headers``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from _server import ROOT, RunningServer, free_port, serving, start, stop
from websockets.sync.client import connect

DOCS = ROOT / "docs"
CONFIG = DOCS / "nginx.conf"
DEADLINE = 10.0

# The main config a distribution's nginx.conf would be; docs/nginx.conf goes in `http`.
# One process (no master): it runs as the user who started it and stops with one PID.
MAIN_CONFIG = """\
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/asgikit.conf;
}}
"""


def nginx_binary() -> str:
    """nginx's path; a skip where it is missing, a failure in CI (which installs it)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    reason = "nginx is not installed (`make system-deps` installs it, as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the nginx tests")
    pytest.skip(reason)


def site_config(upstream_port: int, listen_port: int) -> str:
    """docs/nginx.conf with its two ports replaced, nothing else."""
    text = CONFIG.read_text()
    for documented, actual in (
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{listen_port};"),
    ):
        assert text.count(documented) == 1, f"docs/nginx.conf no longer has {documented!r}"
        text = text.replace(documented, actual)
    return text


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    nginx_binary()  # skip (or fail in CI) before starting anything
    tmp_dir = tmp_path_factory.mktemp("behind-nginx")
    data_file = tmp_dir / "data.bin"
    data_file.write_bytes(b"0123456789" * 1000)
    extra = ["--root-path", "/app", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    with serving(
        "uvicorn-h11",
        "conformance_app:app",
        tmp_dir=tmp_dir,
        extra_args=extra,
        env={"CONFORMANCE_FILE": str(data_file)},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(app_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx on a free port in front of ``app_server``; its URL with the /app prefix."""
    binary = nginx_binary()
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    (prefix / "asgikit.conf").write_text(site_config(app_server.port, port))
    (prefix / "nginx.conf").write_text(MAIN_CONFIG.format(prefix=prefix))
    command = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    server = start("nginx", command, cwd=prefix, log_path=prefix / "stderr.log", port=port)
    try:
        yield f"http://127.0.0.1:{port}/app"
    finally:
        stop(server)


@pytest.fixture
def client(proxy: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy, timeout=30) as http:
        yield http


def test_docs_show_the_tested_config() -> None:
    page = (DOCS / "deployment.md").read_text()
    shown = re.findall(r"```nginx\n(.*?)```", page, re.DOTALL)
    assert shown == [CONFIG.read_text()]


def test_requests_pass_through_the_prefix(client: httpx.Client) -> None:
    response = client.get("/hello")
    assert response.status_code == 200 and response.text == "Hello, world!"
    assert client.get("/items/3/x").json()["path_params"] == {"item_id": 3, "name": "x"}
    assert client.get("/nowhere").status_code == 404


def test_proxy_headers_and_root_path_give_the_clients_urls(
    proxy: str, client: httpx.Client
) -> None:
    seen = client.get(
        "/whoami", headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
    ).json()
    assert seen["url"] == f"{proxy}/whoami"
    assert seen["base_url"] == f"{proxy}/"
    assert seen["url_for"] == f"{proxy}/whoami"
    assert seen["root_path"] == "/app"
    # The address nginx saw, not the one the client claimed; from the header (the
    # connection's own peer would carry nginx's port, a header address has none).
    assert seen["client"] == ["127.0.0.1", 0]
    mounted = client.get("/api/users/7").json()
    assert mounted["url_for"] == f"{proxy}/api/users/7"
    assert mounted["root_path"] == "/app/api"


def test_redirects_point_through_the_proxy(proxy: str, client: httpx.Client) -> None:
    redirect = client.get("/api/latest")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == f"{proxy}/api/users/1"
    assert client.get("/api/latest", follow_redirects=True).json()["url"] == (
        f"{proxy}/api/users/1"
    )
    slash = client.get("/hello/")
    assert slash.status_code == 307
    assert slash.headers["location"] == f"{proxy}/hello"


def test_streamed_tokens_are_not_buffered(client: httpx.Client) -> None:
    name = uuid.uuid4().hex
    with client.stream("GET", f"/stream/{name}") as response:
        chunks = response.iter_bytes()
        received = b""
        while b"\n" not in received:
            received += next(chunks)
        # The last chunk is produced only after this release: nginx passed the first on.
        assert received == b"first\n"
        client.post(f"/release/{name}")
        received += b"".join(chunks)
    assert received == b"first\nlast\n"


def test_server_sent_events_are_not_buffered(client: httpx.Client) -> None:
    name = uuid.uuid4().hex
    with client.stream("GET", f"/sse/{name}") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = []
        while (line := next(lines)) != "":
            first.append(line)
        assert 'data: {"text":"Hello"}' in first
        client.post(f"/release/{name}")
        rest = list(lines)
    assert 'data: {"text":"world"}' in rest and "data: [DONE]" in rest


def test_client_leaving_stops_the_generator(client: httpx.Client) -> None:
    name = uuid.uuid4().hex
    with client.stream("GET", f"/endless/{name}") as response:
        assert next(response.iter_bytes()).startswith(b"tick\n")
    deadline = time.monotonic() + DEADLINE
    while client.get(f"/endings/{name}").json()["ending"] is None:
        assert time.monotonic() < deadline, "nginx kept the stream open after the client left"
        time.sleep(0.02)
    assert client.get(f"/endings/{name}").json()["ending"] == "closed"


def test_websocket_upgrade_passes(proxy: str) -> None:
    ws_url = proxy.replace("http://", "ws://")
    with connect(f"{ws_url}/ws/echo") as websocket:
        websocket.send("through nginx")
        assert websocket.recv(timeout=DEADLINE) == "through nginx"
    with connect(f"{ws_url}/ws/tokens") as websocket:
        websocket.send(json.dumps({"prompt": "a b"}))
        messages = [json.loads(websocket.recv(timeout=DEADLINE)) for _ in range(3)]
    assert messages[-1] == {"done": True, "count": 2}


def test_upload_through_the_proxy(client: httpx.Client) -> None:
    content = os.urandom(5 * 1024 * 1024)
    response = client.post("/upload", files={"file": ("x.bin", content)})
    assert response.status_code == 200
    assert response.json()["size"] == len(content)


def test_bare_prefix_redirects_to_the_prefix_with_slash(proxy: str) -> None:
    response = httpx.get(proxy)
    assert response.status_code == 301
    assert response.headers["location"].endswith("/app/")
