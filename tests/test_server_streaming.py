"""Streams whose iterators never await, under uvicorn (ASGI spec 2.3: ``send`` does not
raise after a disconnect) on 127.0.0.1: a client that leaves stops the stream (its
``finally`` runs, ``background`` does not), and other requests are answered while such
a stream is written. The app is tests/apps/streams.py."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

APPS = Path(__file__).resolve().parent / "apps"
TOTAL = 1_000_000  # items per stream unless the client leaves: minutes of writing


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """uvicorn on a free port of 127.0.0.1 (the OS picks it), always stopped by PID."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "streams:router"),
            *("--host", "127.0.0.1", "--port", "0", "--lifespan", "off"),
        ],
        cwd=APPS,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:  # ends if the server exits
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "uvicorn did not start"
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


def wait_for_stats(client: httpx.Client, request_id: str, key: str) -> dict[str, int]:
    """Poll the server's counters until ``key`` is set (bounded: 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        stats: dict[str, int] = client.get(f"/stats/{request_id}").json()
        if stats[key] or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


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
