"""FileResponse: whole files, validators, 304, ranges, 416, HEAD, pathsend, missing files."""

from __future__ import annotations

import contextlib
import email
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from helpers import Recorder, client_gone, http_scope, never_disconnects, receive_body

from asgikit import BackgroundTask, FileResponse, Request, Router
from asgikit.testing import AsyncTestClient, TestClient
from asgikit.types import Message

DATA = bytes(range(256)) * 4000  # 1,024,000 bytes: several chunks


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "weights.bin"
    path.write_bytes(DATA)
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "card.md"
    path.write_text("# Model card\n")
    return path


def app_for(path: Path, **options: Any) -> Router:
    router = Router()

    @router.get("/file")
    async def file(request: Request) -> FileResponse:
        return FileResponse(path, **options)

    return router


def test_whole_file_with_validators(big: Path) -> None:
    with TestClient(app_for(big)) as client:
        response = client.get("/file")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["accept-ranges"] == "bytes"
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    stat = big.stat()
    assert response.headers["last-modified"] == email.utils.formatdate(stat.st_mtime, usegmt=True)


def test_small_text_file_gets_charset_and_media_type(small: Path) -> None:
    with TestClient(app_for(small)) as client:
        response = client.get("/file")
    assert response.text == "# Model card\n"
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"


def test_media_type_guesses() -> None:
    from asgikit.files import guess_media_type

    assert guess_media_type("a.png") == "image/png"
    assert guess_media_type("dir.v2/a.JSON") == "application/json"
    assert guess_media_type("model.tar.gz") == "application/gzip"
    assert guess_media_type("noext") == "application/octet-stream"
    assert guess_media_type("x.unknownext") == "application/octet-stream"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with TestClient(app_for(path)) as client:
        response = client.get("/file")
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-length"] == "0"
        assert client.get("/file", headers={"range": "bytes=0-"}).status_code == 416


def test_304_on_if_none_match_and_if_modified_since(big: Path) -> None:
    with TestClient(app_for(big, headers={"cache-control": "max-age=60"})) as client:
        first = client.get("/file")
        etag, last_modified = first.headers["etag"], first.headers["last-modified"]
        response = client.get("/file", headers={"if-none-match": etag})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "max-age=60"
        assert "content-length" not in response.headers
        assert client.get("/file", headers={"if-none-match": f'"x", W/{etag}'}).status_code == 304
        assert client.get("/file", headers={"if-none-match": '"stale"'}).status_code == 200
        assert client.get("/file", headers={"if-modified-since": last_modified}).status_code == 304
        old = "Mon, 01 Jan 2001 00:00:00 GMT"
        assert client.get("/file", headers={"if-modified-since": old}).status_code == 200
        head = client.head("/file", headers={"if-none-match": etag})
        assert head.status_code == 304


def test_file_change_changes_validators(small: Path) -> None:
    with TestClient(app_for(small)) as client:
        etag = client.get("/file").headers["etag"]
        small.write_text("# Model card, v2\n")
        os.utime(small, ns=(0, small.stat().st_mtime_ns + 1_000_000_000))
        response = client.get("/file", headers={"if-none-match": etag})
        assert response.status_code == 200
        assert response.text == "# Model card, v2\n"


def test_single_ranges(big: Path) -> None:
    size = len(DATA)
    with TestClient(app_for(big)) as client:
        response = client.get("/file", headers={"range": "bytes=10-19"})
        assert response.status_code == 206
        assert response.content == DATA[10:20]
        assert response.headers["content-range"] == f"bytes 10-19/{size}"
        assert response.headers["content-length"] == "10"

        response = client.get("/file", headers={"range": "bytes=-100"})
        assert response.content == DATA[-100:]
        assert response.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"

        response = client.get("/file", headers={"range": "bytes=1000-"})  # streamed in chunks
        assert response.status_code == 206
        assert response.content == DATA[1000:]

        response = client.get("/file", headers={"range": "bytes=0-1,1-5"})  # coalesced
        assert response.status_code == 206
        assert response.content == DATA[0:6]
        assert response.headers["content-type"] == "application/octet-stream"


def parse_multipart(response: Any) -> list[tuple[str, str, bytes]]:
    message = email.message_from_bytes(
        f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode() + response.content
    )
    parts = message.get_payload()
    assert isinstance(parts, list)
    return [
        (part["Content-Type"], part["Content-Range"], part.get_payload(decode=True))
        for part in parts
    ]


@pytest.mark.parametrize("chunk_size", [FileResponse.chunk_size, 7])  # read at once / streamed
def test_multiple_ranges_are_multipart_byteranges(
    big: Path, chunk_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FileResponse, "chunk_size", chunk_size)
    size = len(DATA)
    with TestClient(app_for(big, media_type="application/x-weights")) as client:
        response = client.get("/file", headers={"range": "bytes=0-9, 100-199, -5"})
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert response.headers["content-length"] == str(len(response.content))
    assert parse_multipart(response) == [
        ("application/x-weights", f"bytes 0-9/{size}", DATA[0:10]),
        ("application/x-weights", f"bytes 100-199/{size}", DATA[100:200]),
        ("application/x-weights", f"bytes {size - 5}-{size - 1}/{size}", DATA[-5:]),
    ]


def test_unsatisfiable_and_too_many_ranges_are_416(big: Path) -> None:
    size = len(DATA)
    with TestClient(app_for(big)) as client:
        response = client.get("/file", headers={"range": f"bytes={size}-"})
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{size}"
        assert "Range Not Satisfiable" in response.json()["detail"]

        many = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17))
        response = client.get("/file", headers={"range": many})
        assert response.status_code == 416
        assert "too many ranges" in response.json()["detail"]


def test_malformed_range_and_other_methods_send_the_whole_file(big: Path) -> None:
    router = app_for(big)

    @router.post("/file")
    async def post(request: Request) -> FileResponse:
        return FileResponse(big)

    with TestClient(router) as client:
        response = client.get("/file", headers={"range": "bytes=9-1"})
        assert response.status_code == 200 and response.content == DATA
        response = client.get("/file", headers={"range": "lines=1-2"})
        assert response.status_code == 200 and len(response.content) == len(DATA)
        response = client.post("/file", headers={"range": "bytes=0-1"})
        assert response.status_code == 200 and len(response.content) == len(DATA)


def test_if_range(big: Path) -> None:
    with TestClient(app_for(big)) as client:
        first = client.get("/file")
        etag, last_modified = first.headers["etag"], first.headers["last-modified"]
        matching = client.get("/file", headers={"range": "bytes=0-3", "if-range": etag})
        assert matching.status_code == 206 and matching.content == DATA[:4]
        by_date = client.get("/file", headers={"range": "bytes=0-3", "if-range": last_modified})
        assert by_date.status_code == 206
        stale = client.get("/file", headers={"range": "bytes=0-3", "if-range": '"old"'})
        assert stale.status_code == 200 and stale.content == DATA
        weak = client.get("/file", headers={"range": "bytes=0-3", "if-range": f"W/{etag}"})
        assert weak.status_code == 200


def test_head_sends_headers_without_reading(big: Path) -> None:
    with TestClient(app_for(big)) as client:
        response = client.head("/file", headers={"range": "bytes=0-3"})  # Range: GET only
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(DATA))


@pytest.mark.anyio
async def test_head_without_a_router_reads_nothing(big: Path) -> None:
    messages = await call_raw(FileResponse(big), method="HEAD")
    assert messages[0]["status"] == 200
    assert (b"content-length", str(len(DATA)).encode()) in messages[0]["headers"]
    assert [m.get("body", b"") for m in messages[1:]] == [b""]


def test_content_disposition(small: Path) -> None:
    with TestClient(app_for(small, filename="résumé.md")) as client:
        response = client.get("/file")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="resume.md"; ')
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "résumé.md"
    with TestClient(app_for(small, filename="a.txt", content_disposition_type="inline")) as client:
        response = client.get("/file")
    assert response.headers["content-disposition"] == 'inline; filename="a.txt"'
    assert response.headers["content-type"] == "text/plain; charset=utf-8"  # from filename


def test_missing_file_is_a_clean_404(tmp_path: Path) -> None:
    with TestClient(app_for(tmp_path / "gone.bin")) as client:
        response = client.get("/file")
        assert response.status_code == 404
        assert response.json() == {"detail": "File not found"}
    with TestClient(app_for(tmp_path)) as client:  # a directory is not a file
        assert client.get("/file").status_code == 404


def test_file_that_vanishes_after_the_response_was_built(small: Path) -> None:
    router = Router()

    @router.get("/file")
    async def file(request: Request) -> FileResponse:
        response = FileResponse(small)
        small.unlink()
        return response

    with TestClient(router) as client:
        response = client.get("/file")
    assert response.status_code == 404


def test_status_code_headers_and_background(small: Path) -> None:
    ran: list[str] = []
    app = app_for(
        small,
        status_code=203,
        headers={"x-model": "v1"},
        background=BackgroundTask(ran.append, "done"),
    )
    with TestClient(app) as client:
        response = client.get("/file", headers={"range": "bytes=0-1"})
    assert response.status_code == 203  # ranges apply to 200 responses only
    assert response.headers["x-model"] == "v1"
    assert response.text == "# Model card\n"
    assert ran == ["done"]


async def call_raw(
    app: Any, *, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None, **extra: Any
) -> list[Message]:
    send = Recorder()
    scope = http_scope(method=method, headers=headers or [], spec_version="2.4", **extra)
    await app(scope, receive_body(), send)
    return send.messages


@pytest.mark.anyio
async def test_pathsend_for_whole_files_only(big: Path) -> None:
    messages = await call_raw(FileResponse(big), extensions={"http.response.pathsend": {}})
    assert messages[0]["status"] == 200
    assert messages[1] == {"type": "http.response.pathsend", "path": str(big.resolve())}
    assert len(messages) == 2

    ranged = await call_raw(
        FileResponse(big),
        headers=[(b"range", b"bytes=0-3")],
        extensions={"http.response.pathsend": {}},
    )
    assert ranged[0]["status"] == 206
    assert b"".join(m.get("body", b"") for m in ranged[1:]) == DATA[:4]


def open_files() -> list[str]:
    """What this process has open (Linux), to check that no file descriptor leaks."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is gone
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return targets


@pytest.mark.anyio
async def test_streams_in_chunks_and_stops_when_the_client_leaves(big: Path) -> None:
    chunks: list[int] = []
    async with AsyncTestClient(app_for(big)) as client, client.stream("GET", "/file") as response:
        async for chunk in response.aiter_raw():
            chunks.append(len(chunk))
            if len(chunks) == 2:
                assert str(big) in open_files()  # the file is open while it streams
                break
    assert chunks == [FileResponse.chunk_size, FileResponse.chunk_size]
    with anyio.fail_after(10):  # closed once the client left (after a read in flight)
        while str(big) in open_files():
            await anyio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", ["2.3", "2.1", None, "2.x"])
async def test_a_file_listens_for_a_disconnect_from_its_first_chunk(
    big: Path, spec_version: str | None
) -> None:
    """A file streams as fast as the disk reads: it must not wait the 100 ms a stream of
    tokens waits before listening, or megabytes go to a client that has left (servers
    before ASGI 2.4 take them without a word; daphne announces no version, and one that
    cannot be read counts as old)."""
    scope = http_scope()
    if spec_version is None:
        del scope["asgi"]["spec_version"]
    else:
        scope["asgi"]["spec_version"] = spec_version
    send = Recorder()
    await FileResponse(big)(scope, client_gone, send)
    assert len(send.body) < len(DATA)
    with anyio.fail_after(10):  # closed by the read in flight, if any, once it returns
        while str(big) in open_files():
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_disconnect_stops_a_file_stalled_on_a_client_that_left(big: Path) -> None:
    """Before ASGI 2.4, send does not fail on disconnect (uvicorn, hypercorn, granian
    announce 2.3 or less): a send stalled on a client that is gone, its buffers full,
    must still end when ``receive`` reports ``http.disconnect``."""
    sent: list[Message] = []
    stalled = anyio.Event()

    async def stalling_send(message: Message) -> None:
        if message["type"] == "http.response.body" and len(sent) == 2:
            stalled.set()
            await anyio.sleep_forever()  # the start and one chunk went out, then nothing
        sent.append(message)

    async def receive() -> Message:  # the client leaves while the send is stalled
        await stalled.wait()
        return {"type": "http.disconnect"}

    ran: list[bool] = []
    response = FileResponse(big, background=BackgroundTask(ran.append, True))
    with anyio.fail_after(10):
        await response(http_scope(spec_version="2.3"), receive, stalling_send)
    assert sent[0]["status"] == 200
    assert [len(message["body"]) for message in sent[1:]] == [FileResponse.chunk_size]
    assert str(big) not in open_files()  # closed with the response
    assert ran == []  # not delivered: no background


@pytest.mark.anyio
async def test_a_send_failing_mid_file_is_a_client_that_left(big: Path) -> None:
    # ASGI 2.4: the server's send raises OSError once the client has gone.
    sent: list[Message] = []

    async def failing_send(message: Message) -> None:
        if message["type"] == "http.response.body" and len(sent) == 2:
            raise OSError("connection closed")
        sent.append(message)

    ran: list[bool] = []
    response = FileResponse(big, background=BackgroundTask(ran.append, True))
    await response(http_scope(spec_version="2.4"), never_disconnects, failing_send)  # quietly
    assert len(sent) == 2
    assert str(big) not in open_files()
    assert ran == []


@pytest.mark.anyio
async def test_a_streamed_file_runs_its_background_once_complete(big: Path) -> None:
    send = Recorder()
    ran: list[bool] = []
    response = FileResponse(big, background=BackgroundTask(ran.append, True))
    await response(http_scope(), never_disconnects, send)
    assert send.body == DATA
    assert ran == [True]


def test_headers_changed_after_init_win(small: Path) -> None:
    router = Router()

    @router.get("/file")
    async def file(request: Request) -> FileResponse:
        response = FileResponse(small)
        response.headers["etag"] = '"my-own"'
        response.headers["content-type"] = "text/x-model-card"
        return response

    with TestClient(router) as client:
        response = client.get("/file")
        assert response.headers.get_list("etag") == ['"my-own"']
        multi = client.get("/file", headers={"range": "bytes=0-1,4-5"})
    assert parse_multipart(multi)[0][0] == "text/x-model-card"


def test_nul_byte_in_a_path_parameter_is_404(tmp_path: Path) -> None:
    router = Router()

    @router.get("/files/{name}")
    async def file(request: Request) -> FileResponse:
        return FileResponse(tmp_path / request.path_params["name"])

    with TestClient(router) as client:
        assert client.get("/files/a%00b").status_code == 404
        assert client.get("/files/" + "x" * 5000).status_code == 404  # ENAMETOOLONG


def test_a_content_length_passed_by_the_caller_never_duplicates_the_real_one(big: Path) -> None:
    with TestClient(app_for(big, headers={"Content-Length": "5"})) as client:
        response = client.get("/file")
        ranged = client.get("/file", headers={"range": "bytes=0-9"})
    assert response.headers.get_list("content-length") == [str(len(DATA))]
    assert response.content == DATA
    assert ranged.headers.get_list("content-length") == ["10"]


def _descriptors_open_to(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
@pytest.mark.parametrize("static", [False, True])
def test_a_caller_cancelled_while_the_file_opens_leaves_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, static: bool
) -> None:
    # A native asyncio cancellation (asyncio.wait_for, a server shutting down) does not
    # wait for the thread that opens the file: the descriptor it opens after the caller
    # left must still be closed. The file's open is held until the caller is gone.
    import asyncio
    import threading

    from asgikit.staticfiles import StaticFiles

    path = tmp_path / "weights.bin"
    path.write_bytes(b"w" * (2 << 20))  # large enough to be streamed from its descriptor
    opened = threading.Event()
    proceed = threading.Event()
    real_open = os.open

    def held_open(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(file, flags, *args, **kwargs)
        if os.fspath(file) == str(path):
            opened.set()
            proceed.wait(5)
        return fd

    monkeypatch.setattr(os, "open", held_open)
    app = StaticFiles(directory=tmp_path) if static else FileResponse(path)

    async def main() -> None:
        call = app(http_scope("/weights.bin"), never_disconnects, Recorder())
        task = asyncio.ensure_future(call)
        with anyio.fail_after(5):
            while not opened.is_set():
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _descriptors_open_to(path) == 1  # the thread still holds it open
            proceed.set()
            while _descriptors_open_to(path):  # closed by the thread once it is done
                await asyncio.sleep(0.001)

    try:
        asyncio.run(main())
    finally:
        proceed.set()
