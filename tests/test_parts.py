"""`Request.parts()`: a multipart body part by part, as it arrives.

Bodies come from httpx (``data=`` / ``files=``) and by hand through the test client;
every limit and every kind of bad input is checked for its status and ``detail``. The
streaming itself is shown with a server `receive` that hands over the rest of the body
only once the endpoint has seen the start of it.
"""

from __future__ import annotations

import gc
import hashlib
import json
from typing import Any

import anyio
import pytest
from helpers import Recorder, http_scope, receive_messages, receive_then_disconnect

# The multipart bodies built by hand are the form tests' own.
from test_forms import BOUNDARY, MULTIPART, multipart, part

from asgikit import ClientDisconnect, MultipartPart, Request, Router
from asgikit.testing import TestClient
from asgikit.types import Message


async def describe(part: MultipartPart) -> dict[str, Any]:
    digest = hashlib.sha256()
    chunks = 0
    async for chunk in part.stream():
        assert isinstance(chunk, bytes)
        digest.update(chunk)
        chunks += 1
    return {
        "name": part.name,
        "filename": part.filename,
        "content_type": part.content_type,
        "size": part.size,
        "sha256": digest.hexdigest(),
        "chunks": chunks,
        "complete": part.complete,
    }


router = Router()


@router.post("/parts")
async def all_parts(request: Request) -> Any:
    limits = {key: int(value) for key, value in request.query_params.items()}
    return [await describe(part) async for part in request.parts(**limits)]


@router.post("/text")
async def text_parts(request: Request) -> Any:
    max_size = request.query_params.get("max_size")
    limit = None if max_size is None else int(max_size)
    return [[part.name, await part.text(max_size=limit)] async for part in request.parts()]


@router.post("/names")
async def names_only(request: Request) -> Any:
    """Reads no part: each is skipped when the next is asked for."""
    return [[part.name, part.filename, part.complete] async for part in request.parts()]


@router.post("/first-bytes")
async def first_bytes(request: Request) -> Any:
    """Reads one chunk of each part and leaves the rest."""
    out = []
    async for item in request.parts():
        async for chunk in item.stream():
            out.append([item.name, chunk[:4].decode("latin-1")])
            break
    return out


@router.post("/left-behind")
async def left_behind(request: Request) -> Any:
    parts = request.parts()
    first = await parts.__anext__()
    second = await parts.__anext__()
    errors = []
    for attempt in (first.read(), first.text()):
        try:
            await attempt
        except RuntimeError as exc:
            errors.append(str(exc))
    body = await second.read()
    try:
        await second.read()
    except RuntimeError as exc:
        errors.append(str(exc))
    await parts.aclose()
    return {"errors": errors, "second": [second.name, body.decode()]}


@router.post("/body-then-parts")
async def body_then_parts(request: Request) -> Any:
    body = await request.body()
    names = [[part.name, await part.text()] async for part in request.parts()]
    return {"size": len(body), "parts": names}


@router.post("/parts-then-body")
async def parts_then_body(request: Request) -> Any:
    async for _part in request.parts():
        pass
    try:
        await request.body()
    except RuntimeError as exc:
        return {"error": str(exc)}
    return {"error": None}


@pytest.fixture
def client() -> TestClient:
    with TestClient(router) as test_client:
        return test_client


def post(client: TestClient, path: str, body: bytes, **headers: str) -> Any:
    return client.post(path, content=body, headers={"content-type": MULTIPART, **headers})


def test_fields_and_files_in_order_from_httpx(client: TestClient) -> None:
    big = bytes(range(256)) * 12_000  # ~3 MiB
    response = client.post(
        "/parts",
        data={"prompt": "a cat", "lang": "en"},
        files={
            "image": ("cat.png", b"\x89PNG fake", "image/png"),
            "weights": ("w.bin", big, "application/octet-stream"),
        },
    )
    assert response.status_code == 200, response.text
    parts = response.json()
    assert [p["name"] for p in parts] == ["prompt", "lang", "image", "weights"]
    assert parts[0]["filename"] is None
    assert parts[0]["size"] == len(b"a cat")
    assert parts[2]["filename"] == "cat.png"
    assert parts[2]["content_type"] == "image/png"
    weights = parts[3]
    assert weights["size"] == len(big)
    assert weights["sha256"] == hashlib.sha256(big).hexdigest()
    assert all(p["complete"] for p in parts)


def test_text_decodes_with_the_parts_charset(client: TestClient) -> None:
    body = multipart(
        part("plain", "naïve".encode()),
        part(
            "latin", "café".encode("latin-1"), extra="Content-Type: text/plain; charset=latin-1\r\n"
        ),
    )
    response = post(client, "/text", body)
    assert response.status_code == 200, response.text
    assert response.json() == [["plain", "naïve"], ["latin", "café"]]


def test_headers_and_rfc5987_filename() -> None:
    seen: dict[str, Any] = {}
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> None:
        async for item in request.parts():
            seen.update(
                filename=item.filename,
                custom=item.headers.get("x-custom"),
                charset=item.charset,
                repr=repr(item),
            )

    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="a.txt"; '
        "filename*=UTF-8''na%C3%AFve.txt\r\nX-Custom: yes\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body = head.encode() + b"data\r\n" + f"--{BOUNDARY}--\r\n".encode()
    with TestClient(app) as test_client:
        assert post(test_client, "/", body).status_code == 204
    assert seen["filename"] == "naïve.txt"
    assert seen["custom"] == "yes"
    assert seen["charset"] == "utf-8"
    assert (
        seen["repr"]
        == "MultipartPart(name='f', filename='naïve.txt', content_type='text/plain; charset=utf-8')"
    )


def test_unread_parts_are_skipped(client: TestClient) -> None:
    body = multipart(
        part("a", b"x" * 300_000),
        part("b", b"y" * 10, filename="b.bin"),
        part("c", b"z"),
    )
    response = post(client, "/names", body)
    assert response.status_code == 200
    # Each part was yielded before its body was read: not complete when looked at.
    assert response.json() == [["a", None, False], ["b", "b.bin", False], ["c", None, False]]


def test_partly_read_parts_are_skipped_to_their_end(client: TestClient) -> None:
    body = multipart(part("a", b"AAAA" * 100_000), part("b", b"BBBB" * 50_000), part("c", b"CC"))
    response = post(client, "/first-bytes", body)
    assert response.status_code == 200
    assert response.json() == [["a", "AAAA"], ["b", "BBBB"], ["c", "CC"]]


def test_a_part_left_behind_cannot_be_read(client: TestClient) -> None:
    body = multipart(part("first", b"1" * 1000), part("second", b"2"))
    response = post(client, "/left-behind", body)
    assert response.status_code == 200
    errors = response.json()["errors"]
    assert len(errors) == 3
    assert errors[0] == errors[1]
    assert "part 'first' was left behind" in errors[0]
    assert errors[2] == "the body of part 'second' was already read"
    assert response.json()["second"] == ["second", "2"]


def test_the_last_part_cannot_be_read_once_the_loop_has_ended() -> None:
    """The loop's end read past the last part: its bytes are gone, so reading it
    raises, as for any part left behind (not an empty body)."""
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> Any:
        kept = [item async for item in request.parts()]
        errors = []
        for item in kept:
            try:
                await item.read()
            except RuntimeError as exc:
                errors.append(str(exc))
        return errors

    body = multipart(part("a", b"1"), part("b", b"2" * 1000))
    with TestClient(app) as test_client:
        assert post(test_client, "/", body).json() == [
            "part 'a' was left behind: read a part before asking for the next one",
            "part 'b' was left behind: read a part before asking for the next one",
        ]


def test_too_many_parts_in_one_message_is_counted_as_parts(client: TestClient) -> None:
    """Every part in a single body message: the answer names max_parts, not the
    parser's own backstop."""
    body = multipart(*(part(f"f{i}", b"v") for i in range(5)))
    for limit in (0, 1, 3):
        response = post(client, f"/parts?max_parts={limit}", body)
        assert response.status_code == 413
        assert response.json() == {"detail": f"Too many parts: the limit is max_parts={limit}"}


def test_body_first_then_parts_reads_the_cached_body(client: TestClient) -> None:
    body = multipart(part("a", b"1"), part("b", b"2"))
    response = post(client, "/body-then-parts", body)
    assert response.json() == {"size": len(body), "parts": [["a", "1"], ["b", "2"]]}


def test_parts_consume_the_body(client: TestClient) -> None:
    response = post(client, "/parts-then-body", multipart(part("a", b"1")))
    assert "already streamed" in response.json()["error"]


def test_an_empty_form_has_no_parts(client: TestClient) -> None:
    response = post(client, "/parts", f"--{BOUNDARY}--\r\n".encode())
    assert response.status_code == 200
    assert response.json() == []


# --------------------------------------------------------------------------- limits


def test_too_many_parts(client: TestClient) -> None:
    body = multipart(*(part(f"f{i}", b"v") for i in range(4)))
    response = post(client, "/parts?max_parts=3", body)
    assert response.status_code == 413
    assert response.json() == {"detail": "Too many parts: the limit is max_parts=3"}
    assert post(client, "/parts?max_parts=4", body).status_code == 200


def test_max_size_against_content_length_and_bytes_received(client: TestClient) -> None:
    body = multipart(part("f", b"x" * 5000, filename="f.bin"))
    response = post(client, "/parts?max_size=1000", body)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body is larger than max_size=1000 bytes"}

    def chunked() -> Any:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = post(client, "/parts?max_size=1000", chunked())  # type: ignore[arg-type]
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body is larger than max_size=1000 bytes"}


def test_read_max_size(client: TestClient) -> None:
    body = multipart(part("prompt", b"p" * 101))
    response = post(client, "/text?max_size=100", body)
    assert response.status_code == 413
    assert response.json() == {"detail": "Part 'prompt' is larger than max_size=100 bytes"}
    assert post(client, "/text?max_size=101", body).status_code == 200


def test_negative_limits_are_programming_errors() -> None:
    request = Request(http_scope("/", method="POST"))
    with pytest.raises(ValueError, match="max_parts must be a non-negative int"):
        request.parts(max_parts=-1)
    with pytest.raises(ValueError, match="max_size must be a non-negative int or None"):
        request.parts(max_size=-5)


# --------------------------------------------------------------------------- bad input

NAMELESS = f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nv\r\n--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize(
    ("content_type", "body", "status", "detail"),
    [
        (
            "text/plain",
            b"hello",
            415,
            "Unsupported content type 'text/plain': parts() reads multipart/form-data",
        ),
        (
            "application/x-www-form-urlencoded",
            b"a=1",
            415,
            "Unsupported content type 'application/x-www-form-urlencoded': parts() reads "
            "multipart/form-data",
        ),
        (
            "multipart/form-data",
            b"--x--",
            400,
            "Missing boundary in the multipart/form-data Content-Type",
        ),
        (
            MULTIPART,
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\n\r\ncut".encode(),
            400,
            "Malformed multipart body: Unexpected end of multipart stream (parser closed)",
        ),
        (
            MULTIPART,
            NAMELESS,
            400,
            "Multipart part has no name in its Content-Disposition header",
        ),
    ],
)
def test_bad_bodies(
    client: TestClient, content_type: str, body: bytes, status: int, detail: str
) -> None:
    response = client.post("/parts", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json() == {"detail": detail}


def test_no_content_type(client: TestClient) -> None:
    response = client.post("/parts", content=b"x")
    assert response.status_code == 415
    assert response.json() == {"detail": "A form needs Content-Type multipart/form-data"}


def test_part_headers_too_large(client: TestClient) -> None:
    head = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\nX-Big: {'h' * 9000}\r\n\r\n"
    body = head.encode() + b"v\r\n" + f"--{BOUNDARY}--\r\n".encode()
    response = post(client, "/parts", body)
    assert response.status_code == 413
    assert response.json()["detail"].startswith("Multipart part headers too large")


def test_invalid_text(client: TestClient) -> None:
    response = post(client, "/text", multipart(part("a", b"\xff\xfe")))
    assert response.status_code == 400
    assert response.json() == {"detail": "Form field 'a' is not valid utf-8"}


# --------------------------------------------------------------------------- streaming


@pytest.mark.anyio
async def test_parts_arrive_before_the_body_is_complete() -> None:
    """The server hands over the second half only once the endpoint has read the first
    chunk of the file part: a parse that waited for the whole body would hang."""
    seen_first_chunk = anyio.Event()
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> Any:
        sizes = {}
        async for item in request.parts():
            async for _chunk in item.stream():
                seen_first_chunk.set()
            sizes[item.name] = item.size
        return sizes

    head = part("file", b"", filename="f.bin")[: -len(b"\r\n")]
    first, second = b"a" * 70_000, b"b" * 70_000
    messages = [
        {"type": "http.request", "body": head + first, "more_body": True},
        {"type": "http.request", "body": second + f"\r\n--{BOUNDARY}--\r\n".encode()},
    ]

    async def receive() -> Message:
        if len(messages) == 1:
            with anyio.fail_after(10):  # bounded: a failure, not a hang
                await seen_first_chunk.wait()
        if messages:
            return messages.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    scope = http_scope("/", method="POST", headers=[(b"content-type", MULTIPART.encode())])
    send = Recorder()
    await app(scope, receive, send)
    assert send.messages[0]["status"] == 200
    assert json.loads(send.messages[1]["body"]) == {"file": len(first) + len(second)}


@pytest.mark.anyio
async def test_a_client_that_leaves_mid_part_gets_nothing_sent() -> None:
    left: list[str] = []
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> Any:
        try:
            async for item in request.parts():
                await item.read()
        except ClientDisconnect:
            left.append("disconnect")
            raise
        return "unreachable"

    body = part("file", b"x" * 1000, filename="f.bin")
    # Two body messages that announce more, then the client is gone.
    messages: list[Message] = [
        {"type": "http.request", "body": body[:600], "more_body": True},
        {"type": "http.request", "body": body[600:], "more_body": True},
    ]
    headers = [(b"content-type", MULTIPART.encode())]
    scope = http_scope("/", method="POST", headers=headers)
    send = Recorder()
    await app(scope, receive_messages(messages), send)
    assert left == ["disconnect"]
    assert send.messages == []


@pytest.mark.anyio
async def test_the_part_a_loop_broke_at_stays_readable() -> None:
    """``break`` then read: the abandoned parts iterator is finalized meanwhile (a task
    the loop runs), which must neither disown the part nor close the body under it."""
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> Any:
        found = None
        async for item in request.parts():
            if item.name == "file":
                found = item
                break
        assert found is not None
        gc.collect()
        await anyio.sleep(0.01)  # the finalizer's turn
        data = await found.read()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    content = bytes(range(256)) * 2000
    body = multipart(part("note", b"n"), part("file", content, filename="f.bin"), part("z", b"z"))
    pieces = [body[start : start + 4096] for start in range(0, len(body), 4096)]

    async def receive() -> Message:
        await anyio.sleep(0)  # as a server: every message comes after a loop turn
        if pieces:
            chunk = pieces.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    scope = http_scope("/", method="POST", headers=[(b"content-type", MULTIPART.encode())])
    send = Recorder()
    await app(scope, receive, send)
    assert send.messages[0]["status"] == 200, send.messages
    assert json.loads(send.messages[1]["body"]) == {
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_parts_through_the_router_directly() -> None:
    """Chunks split anywhere (one byte at a time here) give the same parts."""
    body = multipart(part("a", b"12345"), part("f", bytes(range(256)), filename="f.bin"))
    headers = [(b"content-type", MULTIPART.encode()), (b"content-length", str(len(body)).encode())]
    scope = http_scope("/parts", method="POST", headers=headers)
    send = Recorder()
    chunks = [body[index : index + 1] for index in range(len(body))]
    anyio.run(router, scope, receive_then_disconnect(*chunks), send)
    assert send.messages[0]["status"] == 200
    parts = json.loads(send.messages[1]["body"])
    assert [p["size"] for p in parts] == [5, 256]
    assert parts[1]["sha256"] == hashlib.sha256(bytes(range(256))).hexdigest()
