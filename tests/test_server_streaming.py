"""Streams whose iterators never await, under uvicorn (ASGI spec 2.3: ``send`` does not
raise after a disconnect) on 127.0.0.1: a client that leaves stops the stream (its
``finally`` runs, ``background`` does not), and other requests are answered while such
a stream is written. The app is tests/apps/streams.py."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _server import serving
from helpers import wait_until

APPS = Path(__file__).resolve().parent / "apps"
TOTAL = 1_000_000  # items per stream unless the client leaves: minutes of writing


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn (httptools, as plain ``uvicorn`` picks) on a free port of 127.0.0.1, always
    stopped by PID."""
    with serving(
        "uvicorn-httptools",
        "streams:router",
        tmp_dir=tmp_path_factory.mktemp("uvicorn"),
        cwd=APPS,
        extra_args=["--lifespan", "off"],  # the last --lifespan wins
    ) as server:
        yield server.url


def wait_for_stats(client: httpx.Client, request_id: str, key: str) -> dict[str, int]:
    """Poll the server's counters until ``key`` is set (bounded: 20 s)."""

    def stats() -> dict[str, int]:
        values: dict[str, int] = client.get(f"/stats/{request_id}").json()
        return values

    return wait_until(stats, lambda values: values[key], seconds=20)


@pytest.mark.parametrize("kind", ["stream", "ndjson", "sse"])
def test_client_leaving_stops_a_never_awaiting_stream(server_url: str, kind: str) -> None:
    host, port = httpx.URL(server_url).host, httpx.URL(server_url).port
    request_id = f"leave-{kind}"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET /{kind}/{request_id} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        received = 0
        while received < 64 * 1024:  # the stream is under way
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            received += len(data)
        # Leave abruptly (RST), as a client that crashed or cancelled would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with httpx.Client(base_url=server_url) as client:
        stats = wait_for_stats(client, request_id, "finally")
    assert stats["finally"] == 1, stats
    assert stats["finished"] == 0, stats
    assert stats["background"] == 0, stats
    assert stats["produced"] < TOTAL, stats


def test_other_requests_answered_while_a_never_awaiting_stream_is_written(
    server_url: str,
) -> None:
    count = 200_000
    first_bytes = threading.Event()
    body_sizes: list[int] = []

    def read_stream() -> None:
        with (
            httpx.Client(base_url=server_url, timeout=60) as client,
            client.stream("GET", f"/stream/busy?n={count}") as response,
        ):
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                first_bytes.set()
            body_sizes.append(size)

    reader = threading.Thread(target=read_stream)
    reader.start()
    try:
        assert first_bytes.wait(20), "the stream did not start"
        with httpx.Client(base_url=server_url, timeout=60) as client:
            produced_when_hello_ran = client.get("/hello").json()["produced"]
        # /hello was answered while the stream was still being written.
        assert produced_when_hello_ran < count
    finally:
        reader.join(60)
    assert body_sizes == [16 * count]
