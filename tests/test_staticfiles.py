"""StaticFiles: serving, caching, ranges, html mode, and never leaving the directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from helpers import Recorder, http_scope, receive_body

from asgikit import Router
from asgikit.staticfiles import StaticFiles
from asgikit.testing import TestClient


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``tmp_path/secret.txt`` outside, ``tmp_path/static/...`` inside."""
    (tmp_path / "secret.txt").write_text("top secret")
    static = tmp_path / "static"
    (static / "docs").mkdir(parents=True)
    (static / "empty").mkdir()
    (static / "app.js").write_text("console.log('hi')")
    (static / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (static / "docs" / "index.html").write_text("<h1>Docs</h1>")
    return static


def _router(static: Path, **options: Any) -> Router:
    router = Router()
    router.mount("/static", StaticFiles(directory=static, **options), name="static")
    return router


async def raw_get(app: Any, raw_path: bytes, method: str = "GET") -> tuple[int | None, bytes]:
    """Call ``app`` the way a server would for ``raw_path``: ``path`` percent-decoded once,
    dot segments left alone (httpx would normalise them away)."""
    path = unquote(raw_path.decode("latin-1"))
    scope = http_scope(
        path,
        method=method,
        headers=[(b"host", b"testserver")],
        spec_version="2.4",
        raw_path=raw_path,
    )
    send = Recorder()
    await app(scope, receive_body(), send)
    return send.status, send.body


def test_serves_files_with_caching_and_ranges(site: Path) -> None:
    with TestClient(_router(site)) as client:
        response = client.get("/static/app.js")
        assert response.status_code == 200
        assert response.text == "console.log('hi')"
        assert response.headers["content-type"].startswith(("text/javascript", "application/"))
        etag = response.headers["etag"]
        assert client.get("/static/app.js", headers={"if-none-match": etag}).status_code == 304
        ranged = client.get("/static/weights.bin", headers={"range": "bytes=256-511"})
        assert ranged.status_code == 206
        assert ranged.content == bytes(range(256))
        assert ranged.headers["content-range"] == "bytes 256-511/1024"
        head = client.head("/static/weights.bin")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == "1024"
        assert client.get("/static/docs/index.html").text == "<h1>Docs</h1>"


def test_only_get_and_head(site: Path) -> None:
    with TestClient(_router(site)) as client:
        response = client.post("/static/app.js")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_missing_files_and_directories_are_404_without_html(site: Path) -> None:
    with TestClient(_router(site)) as client:
        assert client.get("/static/nope.txt").status_code == 404
        assert client.get("/static/docs").status_code == 404
        assert client.get("/static/docs/").status_code == 404
        assert client.get("/static/").status_code == 404
        assert client.get("/static/app.js/x").status_code == 404  # a file is not a directory


def test_html_mode(site: Path) -> None:
    (site / "404.html").write_text("<h1>Lost</h1>")
    with TestClient(_router(site, html=True), follow_redirects=False) as client:
        response = client.get("/static/docs/")
        assert response.status_code == 200
        assert response.text == "<h1>Docs</h1>"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        redirect = client.get("/static/docs?x=1")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == "http://testserver/static/docs/?x=1"
        missing = client.get("/static/nope")
        assert missing.status_code == 404
        assert missing.text == "<h1>Lost</h1>"
        assert client.get("/static/empty/").text == "<h1>Lost</h1>"  # no index.html


def test_html_mode_without_404_page(site: Path) -> None:
    with TestClient(_router(site, html=True)) as client:
        response = client.get("/static/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


ESCAPES = [
    b"/static/../secret.txt",
    b"/static/docs/../../secret.txt",
    b"/static/%2e%2e/secret.txt",  # percent-encoded ..
    b"/static/%2E%2E%2Fsecret.txt",  # .. and / both encoded
    b"/static/..%2fsecret.txt",
    b"/static/docs/%2e%2e%2f%2e%2e%2fsecret.txt",
    b"/static/..\\secret.txt",  # backslash
    b"/static/..%5csecret.txt",
    b"/static/%5c..%5csecret.txt",
    b"/static/app.js%00.png",  # NUL byte
    b"/static/%00",
    b"/static/..",
    b"/static/./../secret.txt",
]


@pytest.mark.anyio
@pytest.mark.parametrize("raw_path", ESCAPES)
async def test_paths_that_leave_the_directory_are_404(site: Path, raw_path: bytes) -> None:
    for html in (False, True):
        status, body = await raw_get(_router(site, html=html), raw_path)
        assert status == 404
        assert b"top secret" not in body


@pytest.mark.anyio
async def test_absolute_paths_stay_inside(site: Path) -> None:
    secret = str(site.parent / "secret.txt").encode()
    status, body = await raw_get(_router(site), b"/static/" + secret)
    assert status == 404 and b"top secret" not in body
    status, body = await raw_get(_router(site), b"/static/" + b"/" * 3 + secret)
    assert status == 404
    # Extra slashes inside the directory are harmless.
    status, body = await raw_get(_router(site), b"/static//docs//index.html")
    assert status == 200 and body == b"<h1>Docs</h1>"


@pytest.mark.anyio
async def test_served_on_its_own(site: Path) -> None:
    app = StaticFiles(directory=site)
    assert await raw_get(app, b"/app.js") == (200, b"console.log('hi')")
    assert (await raw_get(app, b"/../secret.txt"))[0] == 404
    assert (await raw_get(app, b"/app.js", method="HEAD")) == (200, b"")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlinks_leaving_the_directory(site: Path) -> None:
    outside = site.parent
    (site / "escape.txt").symlink_to(outside / "secret.txt")
    (site / "escape-dir").symlink_to(outside, target_is_directory=True)
    (site / "alias.js").symlink_to(site / "app.js")  # stays inside: fine
    with TestClient(_router(site)) as client:
        assert client.get("/static/escape.txt").status_code == 404
        assert client.get("/static/escape-dir/secret.txt").status_code == 404
        assert client.get("/static/alias.js").text == "console.log('hi')"
        # The 404 says nothing more about a symlink than about a missing file.
        missing = client.get("/static/missing.txt")
        for path in ("/static/escape.txt", "/static/escape-dir/secret.txt", "/static/docs"):
            answer = client.get(path)
            assert (answer.status_code, answer.content) == (404, missing.content), path
    with TestClient(_router(site, follow_symlinks=True)) as client:
        assert client.get("/static/escape.txt").text == "top secret"
        assert client.get("/static/escape-dir/secret.txt").text == "top secret"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_404_and_never_block(site: Path) -> None:
    os.mkfifo(site / "pipe")
    with TestClient(_router(site)) as client:
        assert client.get("/static/pipe").status_code == 404


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        StaticFiles(directory=tmp_path / "nope")
    StaticFiles(directory=tmp_path / "nope", check_dir=False)


def test_websocket_scope_is_closed(site: Path) -> None:
    from asgikit import WebSocketDisconnect

    with (
        TestClient(_router(site)) as client,
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/static/app.js"),
    ):
        pass
    assert info.value.code == 1000


def test_escapes_against_a_real_server(site: Path) -> None:
    """uvicorn decodes the request target itself; what reaches StaticFiles must still
    stay inside the directory."""
    import http.client
    import socket
    import threading

    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until uvicorn accepts them
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_router(site), lifespan="off", log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for raw_path in [*ESCAPES, b"/static/app.js"]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", raw_path.decode("latin-1"))
                response = connection.getresponse()
                body = response.read()
            finally:
                connection.close()
            if raw_path == b"/static/app.js":
                assert (response.status, body) == (200, b"console.log('hi')")
            else:
                assert response.status in (400, 404), raw_path  # 400: refused by uvicorn
                assert b"top secret" not in body
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()
