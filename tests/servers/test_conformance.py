"""One app (conformance_app.py), every ASGI server: real processes, real clients.

Each server is started once for this module on a free port of 127.0.0.1 and stopped by
its PID afterwards. A case a server cannot do is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _server import SERVER_COMMANDS, RunningServer, serving
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

# What a server does not offer, and so what the app falls back to (checked, not skipped).
NO_LIFESPAN = {"daphne"}  # daphne does not run the lifespan protocol: request.state is empty
# Servers without the websocket.http.response extension refuse a denial with a plain 403.
NO_DENIAL_RESPONSE = {"daphne"}
# Servers whose keep-alive connection stalls after a response that did not read the
# request body and took a moment: the next request on it is never answered (hypercorn
# 0.18 does it to any ASGI app, a raw one included).
STALLS_ON_UNREAD_BODY = {"hypercorn", "hypercorn-trio"}
# Servers that send a close frame with the app's code but not its reason.
NO_CLOSE_REASON = {"daphne"}
# Servers that ignore a websocket.send after the client closed (no error to the app).
SILENT_SEND_AFTER_CLOSE = {"daphne", "granian", "hypercorn", "hypercorn-trio"}

# A stream whose last chunk outgrows every buffer (/background-cut), its client leaving
# once the generator is done: the servers whose sends return before they notice it, so
# the stream counts as delivered (its background task runs; docs/streaming.md).
DELIVERS_WHILE_SENDING = {
    **{
        name: "takes the whole body into its own buffers: its last send returns at once"
        for name in ("daphne", "granian")
    },
    **{
        name: "returns from a send once the bytes are handed to its socket and notices "
        "the reset only later"
        for name in ("hypercorn", "hypercorn-trio")
    },
}

FILE_SIZE = 300_000
UPLOAD_SIZE = 20 * 1024 * 1024
DEADLINE = 10.0  # seconds any polled condition may take


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conformance-data") / "data.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    return path


@pytest.fixture(scope="module", params=sorted(SERVER_COMMANDS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data_file: Path
) -> Iterator[RunningServer]:
    tmp_dir = tmp_path_factory.mktemp(request.param)
    env = {"CONFORMANCE_FILE": str(data_file)}
    with serving(request.param, "conformance_app:app", tmp_dir=tmp_dir, env=env) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def token() -> str:
    return uuid.uuid4().hex


def wait_for_ending(client: httpx.Client, name: str) -> str:
    """The recorded ending of the generator ``name``, polled until it is there."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        ending = client.get(f"/endings/{name}").json()["ending"]
        if ending is not None:
            return str(ending)
        time.sleep(0.02)
    raise AssertionError(f"the generator {name} never ran its finally")


def test_hello(client: httpx.Client) -> None:
    response = client.get("/hello")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == "13"


def test_head(client: httpx.Client) -> None:
    head = client.head("/hello")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "13"


def test_chunked_request_body(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:  # no length known: sent with chunked encoding
        for _ in range(100):
            yield b"x" * 10_000

    assert client.post("/count", content=body()).json()["size"] == 1_000_000


def test_two_set_cookie_headers(client: httpx.Client) -> None:
    response = client.get("/cookies")
    set_cookies = response.headers.get_list("set-cookie")
    assert len(set_cookies) == 2
    assert set_cookies[0].startswith("session=abc;") and "HttpOnly" in set_cookies[0]
    assert set_cookies[1].startswith("theme=dark;")
    assert dict(response.cookies) == {"session": "abc", "theme": "dark"}


def test_background_task_runs_after_the_response(client: httpx.Client) -> None:
    name = token()
    assert client.get(f"/background/{name}").text == "answered"
    assert wait_for_ending(client, name) == "background ran"


@pytest.mark.parametrize("kind", ["stream", "sse", "ndjson"])
def test_background_task_runs_after_a_complete_stream(client: httpx.Client, kind: str) -> None:
    # Servers report http.disconnect as soon as the body is complete (hypercorn on trio
    # within the last send itself): that is not a client leaving early.
    name = token()
    response = client.get(f"/background-stream/{kind}/{name}")
    assert response.status_code == 200 and "item 2" in response.text
    assert wait_for_ending(client, name) == "background ran"


def test_no_background_task_when_the_client_leaves_during_the_last_send(
    server: RunningServer, client: httpx.Client
) -> None:
    if server.name in DELIVERS_WHILE_SENDING:
        pytest.skip(f"{server.name} {DELIVERS_WHILE_SENDING[server.name]}")
    name = token()
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.sendall(f"GET /background-cut/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert raw.recv(100)
        # The generator is done; its last 16 MiB wait in the server's buffers.
        assert wait_for_ending(client, f"{name}-generator") == "finished"
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Reset: the client left before the end of the body.
    assert wait_for_ending(client, f"{name}-done") == "done"
    assert client.get(f"/endings/{name}").json()["ending"] is None


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("query", ["", "?stream=1"])
def test_a_response_without_content_sends_no_body(
    server: RunningServer, client: httpx.Client, status: int, query: str
) -> None:
    log_before = len(server.log())
    response = client.get(f"/no-content/{status}{query}")
    assert (response.status_code, response.content) == (status, b"")
    assert client.get("/hello").status_code == 200  # the connection is still good
    assert "Traceback" not in server.log()[log_before:]


def test_json(client: httpx.Client) -> None:
    payload = {"prompt": "naïve café", "numbers": [1, 2.5, None], "nested": {"ok": True}}
    assert client.post("/json", json=payload).json() == {"received": payload}
    bad = client.post("/json", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400


def test_path_params(client: httpx.Client) -> None:
    response = client.get("/items/42/caf%C3%A9", params=[("q", "a"), ("q", "b c")])
    assert response.json() == {"path_params": {"item_id": 42, "name": "café"}, "q": ["a", "b c"]}
    assert client.get("/items/forty-two/x").status_code == 404


def test_trailing_slash_redirect_keeps_the_query(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/hello/", params={"lang": "fr"})
    assert response.status_code == 307
    assert response.headers["location"] == f"{server.url}/hello?lang=fr"


def test_not_found_and_method_not_allowed(client: httpx.Client) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    wrong = client.delete("/hello")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD"


def test_lifespan_state(server: RunningServer, client: httpx.Client) -> None:
    state = client.get("/state")
    assert state.status_code == 200
    if server.name in NO_LIFESPAN:
        # The documented fallback: requests work, the state is empty.
        assert state.json()["loaded_by"] is None
    else:
        assert state.json()["loaded_by"] == "lifespan"


def test_upload_20_mb(client: httpx.Client) -> None:
    content = os.urandom(UPLOAD_SIZE)
    response = client.post(
        "/upload", files={"file": ("weights.bin", content, "application/octet-stream")}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "filename": "weights.bin",
        "size": UPLOAD_SIZE,
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_upload_20_mb_part_by_part(client: httpx.Client) -> None:
    content = os.urandom(UPLOAD_SIZE)
    response = client.post(
        "/upload-parts",
        data={"note": "fine-tune run 7"},
        files={"file": ("weights.bin", content, "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    facts = response.json()
    assert facts["note"] == "fine-tune run 7"
    file = facts["file"]
    assert file["filename"] == "weights.bin"
    assert file["size"] == UPLOAD_SIZE
    assert file["sha256"] == hashlib.sha256(content).hexdigest()
    assert file["chunks"] > 1  # handed over as it arrived, not as one spooled piece


def test_stream_first_chunk_arrives_before_last_exists(client: httpx.Client) -> None:
    name = token()
    with client.stream("GET", f"/stream/{name}") as response:
        assert response.status_code == 200
        chunks = response.iter_bytes()
        received = b""
        while b"\n" not in received:
            received += next(chunks)
        assert received == b"first\n"  # the last chunk waits for the release below
        assert client.get(f"/endings/{name}").json() == {"ending": None}
        assert client.post(f"/release/{name}").status_code == 204
        received += b"".join(chunks)
    assert received == b"first\nlast\n"
    assert wait_for_ending(client, name) == "completed"


def test_disconnect_stops_the_generator(client: httpx.Client) -> None:
    name = token()
    with client.stream("GET", f"/endless/{name}") as response:
        assert next(response.iter_bytes()).startswith(b"tick\n")
    # Leaving the block closed the connection mid-body: the server's generator stops.
    assert wait_for_ending(client, name) == "closed"


def test_leaving_mid_step_closes_a_blocking_generator(
    server: RunningServer, client: httpx.Client
) -> None:
    # The generator is in the thread pool computing its next token when the client
    # leaves: it is closed as soon as that token is done, and nothing fails on the way.
    name = token()
    log_before = len(server.log())
    with client.stream("GET", f"/blocking-stream/{name}") as response:
        assert next(response.iter_bytes()).startswith(b"tick\n")
    assert wait_for_ending(client, name) == "closed"
    assert "Traceback" not in server.log()[log_before:]


@pytest.mark.parametrize("path", ["/ignores-body", "/ignores-body-stream"])
def test_an_unread_body_leaves_the_connection_usable(
    server: RunningServer, client: httpx.Client, path: str
) -> None:
    if server.name in STALLS_ON_UNREAD_BODY:
        pytest.skip(
            f"{server.name} stalls a keep-alive connection whose request body was not "
            "read by a response that took a moment (a raw ASGI app too)"
        )
    body = os.urandom(3 * 1024 * 1024)  # more than the server buffers before the app reads
    response = client.post(path, content=body)
    assert response.status_code == 200
    assert client.get("/hello").text == "Hello, world!"  # the same connection, answered


def next_event(lines: Iterator[str]) -> dict[str, str]:
    """The fields of the next server-sent event (lines up to the blank line)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            return fields
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


def test_is_disconnected_before_the_response(server: RunningServer, client: httpx.Client) -> None:
    name = token()
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as raw:
        raw.sendall(f"GET /until-disconnect/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert wait_for_ending(client, name) == "running"  # polling is_disconnected()
    try:
        # The connection is closed: one of the next polls (every 10 ms) sees it.
        deadline = time.monotonic() + DEADLINE
        while client.get(f"/endings/{name}").json()["ending"] == "running":
            assert time.monotonic() < deadline, "request.is_disconnected() never said True"
            time.sleep(0.02)
        assert client.get(f"/endings/{name}").json()["ending"] == "saw the disconnect"
    finally:
        client.post(f"/release/{name}")  # stops the endpoint if it is still polling


def test_server_sent_events(client: httpx.Client) -> None:
    name = token()
    with client.stream("GET", f"/sse/{name}") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        # The second event waits for the release, sent only once the first has arrived.
        assert next_event(lines) == {"event": "token", "data": '{"text":"Hello"}', "id": "0"}
        client.post(f"/release/{name}")
        assert next_event(lines) == {"event": "token", "data": '{"text":"world"}', "id": "1"}
        assert next_event(lines) == {"event": "done", "data": "[DONE]"}
        assert next_event(lines) == {}


def test_server_sent_events_keep_alive_pings(client: httpx.Client) -> None:
    name = token()
    with client.stream("GET", f"/sse-ping/{name}") as response:
        lines = response.iter_lines()
        assert next_event(lines) == {"data": "started"}
        assert next(lines) == ": ping"  # sent during the silence, before the release
        client.post(f"/release/{name}")
        rest = [line for line in lines if line and line != ": ping"]
    assert rest == ["data: released"]


def test_file_range(client: httpx.Client, data_file: Path) -> None:
    content = data_file.read_bytes()
    whole = client.get("/file")
    assert whole.status_code == 200
    assert whole.content == content
    head = client.head("/file")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(FILE_SIZE)
    cached = client.get("/file", headers={"if-none-match": whole.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""
    part = client.get("/file", headers={"range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1999/{FILE_SIZE}"
    assert part.content == content[1000:2000]
    tail = client.get("/file", headers={"range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == content[-100:]
    assert client.get("/file", headers={"range": f"bytes={FILE_SIZE}-"}).status_code == 416
    several = client.get("/file", headers={"range": "bytes=0-9,5000-5009"})
    assert several.status_code == 206
    assert several.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert content[:10] in several.content and content[5000:5010] in several.content


def test_file_pathsend(server: RunningServer, client: httpx.Client, data_file: Path) -> None:
    if "http.response.pathsend" not in client.get("/extensions").json()["extensions"]:
        pytest.skip(f"{server.name} does not offer the http.response.pathsend extension")
    before = client.get("/pathsends").json()["count"]
    assert client.get("/file").content == data_file.read_bytes()
    assert client.get("/pathsends").json()["count"] == before + 1


def test_gzip(client: httpx.Client) -> None:
    response = client.get("/gzip", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < 1000
    assert response.text == "token " * 5_000
    plain = client.get("/gzip", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text == "token " * 5_000


def test_gzip_stream_is_compressed_chunk_by_chunk(client: httpx.Client) -> None:
    name = token()
    with client.stream("GET", f"/gzip-stream/{name}", headers={"accept-encoding": "gzip"}) as r:
        assert r.headers["content-encoding"] == "gzip"
        text = r.iter_text()  # decompressed as it arrives
        received = ""
        while "\n" not in received:
            received += next(text)
        # Decodable before the second chunk exists: the first was flushed on its own.
        assert received == "first " * 200 + "\n"
        client.post(f"/release/{name}")
        received += "".join(text)
    assert received == "first " * 200 + "\n" + "last " * 200 + "\n"


def test_mount_root_path_and_url_for(server: RunningServer, client: httpx.Client) -> None:
    assert client.get("/api/users/7").json() == {
        "root_path": "/api",
        "url": f"{server.url}/api/users/7",
        "url_for": f"{server.url}/api/users/7",
    }
    redirect = client.get("/api/latest")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == f"{server.url}/api/users/1"


def test_websocket_echo(server: RunningServer) -> None:
    with connect(f"{server.ws_url}/ws/echo") as websocket:
        for text in ("hello", "naïve ☃", "x" * 70_000):
            websocket.send(text)
            assert websocket.recv(timeout=DEADLINE) == text


def test_websocket_token_stream(server: RunningServer) -> None:
    with connect(f"{server.ws_url}/ws/tokens") as websocket:
        for prompt in ("the cat sat", "on the mat today"):
            websocket.send(json.dumps({"prompt": prompt}))
            received = []
            while not received or "done" not in received[-1]:
                received.append(json.loads(websocket.recv(timeout=DEADLINE)))
            words = prompt.split()
            assert received[:-1] == [{"index": i, "token": w.upper()} for i, w in enumerate(words)]
            assert received[-1] == {"done": True, "count": len(words)}


@pytest.mark.parametrize("endpoint", ["endless", "send-only"])
def test_websocket_client_leaving_stops_the_endpoint(
    server: RunningServer, client: httpx.Client, endpoint: str
) -> None:
    if endpoint == "send-only" and server.name in SILENT_SEND_AFTER_CLOSE:
        pytest.skip(
            f"{server.name} drops messages sent after the client closed without an error: "
            "an endpoint that never receives cannot learn that the client left"
        )
    name = token()
    with connect(f"{server.ws_url}/ws/{endpoint}/{name}", max_queue=None) as websocket:
        assert websocket.recv(timeout=DEADLINE) == "token 0"
        assert websocket.recv(timeout=DEADLINE) == "token 1"
    assert wait_for_ending(client, name) == "closed"


def test_a_reader_beside_a_failing_writer_still_gets_the_disconnect(
    server: RunningServer, client: httpx.Client
) -> None:
    name = token()
    with connect(f"{server.ws_url}/ws/pair/{name}", max_queue=None) as websocket:
        assert websocket.recv(timeout=DEADLINE) == "token 0"
        # Dropped without a close frame: a reset.
        linger = struct.pack("ii", 1, 0)
        websocket.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        websocket.socket.close()
    assert wait_for_ending(client, name) == "closed"


def test_a_send_after_the_client_closed_raises_the_clients_close_code(
    server: RunningServer, client: httpx.Client
) -> None:
    if server.name in SILENT_SEND_AFTER_CLOSE:
        pytest.skip(f"{server.name} drops messages sent after the client closed, silently")
    name = token()
    with connect(f"{server.ws_url}/ws/send-only/{name}", max_queue=None) as websocket:
        assert websocket.recv(timeout=DEADLINE) == "token 0"
        websocket.close(4002, "client bye")
    assert wait_for_ending(client, name) == "closed"
    assert wait_for_ending(client, f"{name}-code") == "4002 client bye"


def test_websocket_close_code_and_reason(server: RunningServer) -> None:
    with (
        connect(f"{server.ws_url}/ws/goodbye") as websocket,
        pytest.raises(ConnectionClosed) as info,
    ):
        websocket.recv(timeout=DEADLINE)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 4001
    if server.name in NO_CLOSE_REASON:
        pytest.skip(f"{server.name} sends the close code without the app's reason")
    assert info.value.rcvd.reason == "quota exhausted"


def test_websocket_denial_response(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as info, connect(f"{server.ws_url}/ws/private"):
        pass
    if server.name in NO_DENIAL_RESPONSE:
        # No websocket.http.response extension: the handshake is refused with a 403.
        assert info.value.response.status_code == 403
    else:
        assert info.value.response.status_code == 401
        assert info.value.response.body == b"Missing API key"


def test_websocket_unknown_path_is_refused(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as info, connect(f"{server.ws_url}/nope"):
        pass
    assert info.value.response.status_code == 403


def test_websocket_endpoint_error_closes_with_1011(server: RunningServer) -> None:
    with connect(f"{server.ws_url}/ws/broken") as websocket:
        websocket.send("go")
        with pytest.raises(ConnectionClosedError) as info:
            websocket.recv(timeout=DEADLINE)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011
