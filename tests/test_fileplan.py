"""Opening and reading files for `FileResponse` and `StaticFiles`: the edges of the disk.

Special files are 404s, a file that shrinks while it is read is an error rather than a
short body, and `StaticFiles` mounted or served on its own answers every ASGI scope type.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asgikit import Router
from asgikit._fileplan import FileUnavailable, open_regular_file, read_exactly
from asgikit.staticfiles import StaticFiles
from asgikit.testing import TestClient
from asgikit.types import Message


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "model.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        yield path
    finally:
        server.close()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")
def test_a_unix_socket_is_not_found_not_a_server_error(unix_socket: Path) -> None:
    # Regression: opening a socket fails with ENXIO, which escaped as an OSError: a
    # directory served with StaticFiles that held a socket answered 500 for its name.
    with pytest.raises(FileUnavailable) as info:
        open_regular_file(str(unix_socket))
    assert info.value.status == 404
    router = Router()
    router.mount("/static", StaticFiles(directory=unix_socket.parent))
    with TestClient(router) as client:
        assert client.get("/static/model.sock").status_code == 404


def test_a_file_that_shrinks_while_it_is_read_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 100)
    fd, file_stat = open_regular_file(str(path))
    try:
        assert file_stat.st_size == 100
        assert read_exactly(fd, 10, 20) == b"x" * 10
        os.truncate(path, 50)  # another process rewrites the file
        with pytest.raises(RuntimeError, match="got shorter"):
            read_exactly(fd, 40, 100)
        with pytest.raises(RuntimeError, match="got shorter"):
            read_exactly(fd, 60, 100)
    finally:
        os.close(fd)


@pytest.mark.anyio
async def test_served_on_its_own_it_answers_lifespan_and_refuses_websockets(
    tmp_path: Path,
) -> None:
    app = StaticFiles(directory=tmp_path)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        return incoming.pop(0)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]

    sent.clear()
    incoming = [{"type": "websocket.connect"}]
    await app({"type": "websocket", "path": "/x", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]

    async def no_receive() -> Any:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="cannot serve a 'email' scope"):
        await app({"type": "email", "headers": []}, no_receive, send)
