"""`Request.is_disconnected()` notices a client that left, whether or not the body was read.

In process with scripted ``receive`` callables (the ASGI messages a server sends), then
under real servers (uvicorn, hypercorn) on 127.0.0.1 with a raw socket client that sends
a request and closes: the handler, polling every few ms, must see the disconnect.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from _server import serving
from helpers import http_scope, receive_messages, request_messages, wait_until

from asgikit import ClientDisconnect, Request
from asgikit.types import Message

GET_SCOPE = http_scope()
POST_SCOPE = http_scope(method="POST")


async def polls_until_disconnected(request: Request, gone: anyio.Event) -> int:
    """Poll a few times, let the client leave, then count the polls until True."""
    for _ in range(5):
        assert await request.is_disconnected() is False
    gone.set()
    with anyio.fail_after(5):
        polls = 1
        while not await request.is_disconnected():
            polls += 1
            await anyio.sleep(0)
    return polls


@pytest.mark.anyio
async def test_get_without_reading_the_body_sees_the_disconnect() -> None:
    # 0.1.0 kept the final empty body message and never polled again: False forever.
    gone = anyio.Event()
    request = Request(GET_SCOPE, receive_messages(request_messages(), gone))
    assert await polls_until_disconnected(request, gone) == 1
    assert await request.is_disconnected() is True  # and stays True
    assert await request.body() == b""  # the (empty) body was kept


@pytest.mark.anyio
async def test_unread_body_chunks_are_kept_in_order_for_body() -> None:
    gone = anyio.Event()
    messages = request_messages(b"one,", b"two,", b"three")
    request = Request(POST_SCOPE, receive_messages(messages, gone))
    assert await polls_until_disconnected(request, gone) == 1
    assert await request.body() == b"one,two,three"


@pytest.mark.anyio
async def test_body_read_first_then_the_disconnect_is_seen() -> None:
    gone = anyio.Event()
    messages = request_messages(b"data")
    request = Request(POST_SCOPE, receive_messages(messages, gone))
    assert await request.body() == b"data"
    assert await polls_until_disconnected(request, gone) == 1


@pytest.mark.anyio
async def test_polling_while_streaming_the_body_loses_and_reorders_nothing() -> None:
    gone = anyio.Event()
    messages = request_messages(*[b"%d," % index for index in range(10)], b"end")
    request = Request(POST_SCOPE, receive_messages(messages, gone))
    received = []
    async for chunk in request.stream():
        received.append(chunk)
        assert await request.is_disconnected() is False  # takes what is ready, keeps it
    assert b"".join(received) == b"0,1,2,3,4,5,6,7,8,9,end"
    assert await polls_until_disconnected(request, gone) == 1


@pytest.mark.anyio
async def test_a_disconnect_queued_behind_the_body_is_seen_in_one_poll() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"all of it"},
        {"type": "http.disconnect"},
    ]
    request = Request(POST_SCOPE, receive_messages(messages, anyio.Event()))
    assert await request.is_disconnected() is True
    assert await request.body() == b"all of it"  # complete before the client left


@pytest.mark.anyio
async def test_a_disconnect_mid_body_keeps_the_chunks_then_raises() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    request = Request(POST_SCOPE, receive_messages(messages, anyio.Event()))
    assert await request.is_disconnected() is True
    stream = request.stream()
    assert await stream.__anext__() == b"part"
    with pytest.raises(ClientDisconnect):
        await stream.__anext__()


@pytest.mark.anyio
async def test_read_ahead_of_an_unread_body_is_bounded() -> None:
    chunk = b"x" * 65536
    messages = request_messages(*[chunk] * 40, b"end")
    request = Request(POST_SCOPE, receive_messages(messages, anyio.Event()))
    assert await request.is_disconnected() is False
    assert await request.is_disconnected() is False
    assert len(messages) > 20  # stopped after about 1 MiB, not the whole body
    assert await request.body() == chunk * 40 + b"end"


@pytest.mark.anyio
async def test_a_receive_that_never_waits_does_not_hang_polling() -> None:
    # Hand-written: a sloppy scripted server that never waits, unlike every shared helper.
    async def receive() -> Message:  # body forever
        return {"type": "http.request", "body": b""}

    request = Request(GET_SCOPE, receive)
    with anyio.fail_after(5):
        for _ in range(100):
            assert await request.is_disconnected() is False


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_trio_channel_hands_over_what_is_ready() -> None:
    # hypercorn's receive under trio is a memory channel's: it checks for a
    # cancellation before taking a message, so a poll in a cancelled scope got nothing.
    import trio

    to_app, receive_channel = trio.open_memory_channel[Message](10)
    request = Request(POST_SCOPE, receive_channel.receive)
    assert await request.is_disconnected() is False  # nothing ready: no wait either
    await to_app.send({"type": "http.request", "body": b"data", "more_body": False})
    assert await request.is_disconnected() is False
    await to_app.send({"type": "http.disconnect"})
    assert await request.is_disconnected() is True
    assert await request.body() == b"data"


# --------------------------------------------------------------------------- real servers

APP = """
import os
from pathlib import Path

import anyio
from asgikit import Request, Router

router = Router()
LOG = Path(os.environ["DISCONNECT_LOG"])


@router.route("/poll", methods=["GET", "POST"])
async def poll(request: Request) -> str:
    LOG.write_text("started")
    for polls in range(6000):  # 30 s at most
        if await request.is_disconnected():
            LOG.write_text(f"disconnected after {polls} polls")
            return "gone"
        await anyio.sleep(0.005)
    LOG.write_text("never noticed")
    return "done"
"""

# The servers that run it (tests/_server.py commands): plain ``uvicorn`` picks httptools;
# hypercorn also on trio, whose channels refuse a ready message to a cancelled scope.
SERVERS = {
    "hypercorn": "hypercorn",
    "hypercorn-trio": "hypercorn-trio",
    "uvicorn": "uvicorn-httptools",
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    """A real server on a free port of 127.0.0.1 serving APP; always stopped by its PID."""
    directory = tmp_path_factory.mktemp(request.param)
    (directory / "poll_app.py").write_text(textwrap.dedent(APP))
    log = directory / "log.txt"
    env = {"DISCONNECT_LOG": str(log), "PYTHONPATH": str(directory)}
    name = SERVERS[request.param]
    with serving(name, "poll_app:router", tmp_dir=directory, cwd=directory, env=env) as running:
        yield running.port, log


def read_log(log: Path) -> str:
    return log.read_text() if log.exists() else ""


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /poll HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /poll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=["GET", "POST-unread-body"],
)
def test_a_polling_handler_sees_the_client_close(
    server: tuple[int, Path], request_bytes: bytes
) -> None:
    port, log = server
    log.unlink(missing_ok=True)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request_bytes)
        assert (
            wait_until(lambda: read_log(log), lambda text: text.startswith("started")) == "started"
        )
    # The socket is closed: the handler must notice long before its 30 s are up.
    outcome = wait_until(lambda: read_log(log), lambda text: text.startswith("disconnected"))
    assert outcome.startswith("disconnected after"), outcome
