"""Large uploads: integrity, bounded memory, and no temp file left behind on any way out.

Temp files go to a per-test directory (``tempfile.tempdir`` is pointed at it). On Linux
an anonymous temp file has no directory entry, so "left behind" is checked both in the
directory and among the process's open descriptors (``/proc/self/fd``).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Recorder, http_scope, receive_messages

from asgikit import Request, Router, UploadFile
from asgikit.testing import TestClient
from asgikit.types import Message

MiB = 1024 * 1024
BOUNDARY = "uploadboundary9Qz"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
HEAD = (
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="label"\r\n\r\n'
    "cat\r\n"
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="image"; filename="big.bin"\r\n'
    "Content-Type: application/octet-stream\r\n\r\n"
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
BLOCK = random.Random(7).randbytes(MiB)  # file content: this MiB repeated


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def temp_files(directory: Path) -> list[str]:
    """Directory entries plus open descriptors of files in ``directory``."""
    found = [str(path) for path in directory.iterdir()]
    fds = Path("/proc/self/fd")
    if fds.is_dir():
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(directory)):
                found.append(target)
    return found


def upload_body(mib: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """A streamed multipart body with ``mib`` MiB of file content (built once per MiB)."""
    yield HEAD
    for _ in range(mib):
        for start in range(0, MiB, chunk_size):
            yield BLOCK[start : start + chunk_size]
    yield TAIL


def expected_sha256(mib: int) -> str:
    digest = hashlib.sha256()
    for _ in range(mib):
        digest.update(BLOCK)
    return digest.hexdigest()


def make_app(seen: list[UploadFile], directory: Path | None = None) -> Router:
    app = Router()

    @app.post("/upload")
    async def upload(request: Request) -> Any:
        limits = {key: int(value) for key, value in request.query_params.items()}
        form = await request.form(**limits)
        image = form["image"]
        assert isinstance(image, UploadFile)
        seen.append(image)
        digest = hashlib.sha256()
        while chunk := await image.read(MiB):
            digest.update(chunk)
        return {
            "label": form["label"],
            "size": image.size,
            "sha256": digest.hexdigest(),
            "in_memory": image.in_memory,
            "temp_files_during": len(temp_files(directory)) if directory else None,
        }

    @app.post("/fail")
    async def fail(request: Request) -> Any:
        form = await request.form()
        for value in form.values():
            if isinstance(value, UploadFile):
                seen.append(value)
        raise RuntimeError("the model crashed")

    return app


def test_50_mb_upload_sha256_and_peak_memory(temp_dir: Path) -> None:
    seen: list[UploadFile] = []
    with TestClient(make_app(seen, temp_dir)) as client:
        tracemalloc.start()
        try:
            response = client.post(
                "/upload", content=upload_body(50), headers={"content-type": MULTIPART}
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 200
    result = response.json()
    assert result["label"] == "cat"
    assert result["size"] == 50 * MiB
    assert result["sha256"] == expected_sha256(50)
    assert result["in_memory"] is False
    assert result["temp_files_during"] == 1  # the check below can see a temp file
    assert peak < 10 * 1000 * 1000, f"peak {peak / MiB:.1f} MiB for a 50 MiB upload"
    assert seen[0].file.closed
    assert temp_files(temp_dir) == []


def test_upload_on_trio(temp_dir: Path) -> None:
    seen: list[UploadFile] = []
    with TestClient(make_app(seen), backend="trio") as client:
        response = client.post(
            "/upload", content=upload_body(5), headers={"content-type": MULTIPART}
        )
    assert response.json()["sha256"] == expected_sha256(5)
    assert temp_files(temp_dir) == []


def test_small_chunks_and_odd_sizes(temp_dir: Path) -> None:
    seen: list[UploadFile] = []
    with TestClient(make_app(seen)) as client:
        response = client.post(
            "/upload", content=upload_body(3, chunk_size=1000), headers={"content-type": MULTIPART}
        )
    assert response.json()["sha256"] == expected_sha256(3)
    assert response.json()["size"] == 3 * MiB


def test_files_closed_and_removed_when_the_endpoint_raises(temp_dir: Path) -> None:
    seen: list[UploadFile] = []
    with TestClient(make_app(seen), raise_server_exceptions=False) as client:
        response = client.post("/fail", content=upload_body(3), headers={"content-type": MULTIPART})
    assert response.status_code == 500
    assert len(seen) == 1
    assert seen[0].file.closed
    assert temp_files(temp_dir) == []


def test_limit_hit_mid_file_leaves_no_temp_file(temp_dir: Path) -> None:
    seen: list[UploadFile] = []
    with TestClient(make_app(seen)) as client:
        response = client.post(
            "/upload?max_file_size=2500000",
            content=upload_body(4),
            headers={"content-type": MULTIPART},
        )
    assert response.status_code == 413
    assert "max_file_size=2500000" in response.json()["detail"]
    assert seen == []
    assert temp_files(temp_dir) == []


def test_small_files_in_memory_up_to_a_budget(temp_dir: Path) -> None:
    app = Router()

    @app.post("/many")
    async def many(request: Request) -> Any:
        form = await request.form()
        return [value.in_memory for value in form.values() if isinstance(value, UploadFile)]

    files = [(f"f{index}", (f"{index}.bin", BLOCK[: MiB - index])) for index in range(12)]
    with TestClient(app) as client:
        flags = client.post("/many", files=files).json()
    # Each file is under 1 MiB; the form keeps 8 MiB of them in memory, spools the rest.
    assert flags[:7] == [True] * 7
    assert flags[-4:] == [False] * 4
    assert temp_files(temp_dir) == []


@pytest.mark.anyio
async def test_client_disconnect_mid_upload(temp_dir: Path) -> None:
    seen: list[UploadFile] = []
    app = make_app(seen)
    body = upload_body(20)
    # About 3 MiB of the body, then the client goes away.
    messages: list[Message] = [
        {"type": "http.request", "body": next(body), "more_body": True} for _ in range(50)
    ]
    send = Recorder()
    headers = [(b"host", b"test"), (b"content-type", MULTIPART.encode())]
    scope = http_scope("/upload", method="POST", headers=headers)
    await app(scope, receive_messages(messages), send)
    assert send.messages == []  # handled quietly: nobody is left to answer
    assert seen == []  # the endpoint never got a form
    assert messages == []  # all 50 chunks were read before the disconnect
    assert temp_files(temp_dir) == []


def test_files_released_when_the_endpoint_is_cancelled(temp_dir: Path) -> None:
    import anyio

    from asgikit import Middleware, Router
    from asgikit.middleware import TimeoutMiddleware

    seen: list[UploadFile] = []
    router = Router(middleware=[Middleware(TimeoutMiddleware, timeout=0.2)])

    @router.post("/slow")
    async def slow(request: Request) -> str:
        upload = (await request.form())["image"]
        assert isinstance(upload, UploadFile)
        seen.append(upload)
        await anyio.sleep_forever()  # cancelled by the timeout
        return "never"

    with TestClient(router) as client:
        response = client.post("/slow", content=upload_body(3), headers={"content-type": MULTIPART})
    assert response.status_code == 504
    assert len(seen) == 1 and seen[0].file.closed
    assert temp_files(temp_dir) == []


@pytest.mark.anyio
async def test_a_stalled_upload_does_not_hold_a_thread_pool_slot(temp_dir: Path) -> None:
    # One thread in the pool: a stalled upload must not starve the sync endpoint.
    import anyio

    from asgikit.serving import set_threadpool_size
    from asgikit.testing import AsyncTestClient

    router = Router()

    @router.post("/upload")
    async def upload(request: Request) -> str:
        form = await request.form()
        return str(len(form))

    @router.get("/sync")
    def sync_endpoint(request: Request) -> str:  # needs a pool thread
        return "served"

    resume = anyio.Event()
    stalled = anyio.Event()

    async def stalling_body() -> Any:
        yield HEAD
        for start in range(0, 3 * MiB, 64 * 1024):  # past the spool: a writer thread starts
            yield BLOCK[start % MiB : start % MiB + 64 * 1024]
        stalled.set()
        await resume.wait()  # the client goes quiet
        yield TAIL

    set_threadpool_size(1)
    try:
        async with AsyncTestClient(router) as client, anyio.create_task_group() as group:

            async def post() -> None:
                response = await client.post(
                    "/upload", content=stalling_body(), headers={"content-type": MULTIPART}
                )
                assert response.text == "2"

            group.start_soon(post)
            await stalled.wait()
            with anyio.fail_after(10):
                assert (await client.get("/sync")).text == "served"
            resume.set()
    finally:
        set_threadpool_size(40)


@pytest.mark.anyio
async def test_closing_a_large_file_on_disk_and_a_small_one() -> None:
    # A file on disk of 4 MiB or more is closed in the thread pool (freeing its pages
    # would stall the loop), a small one on the loop: both end closed, twice is harmless.
    large, small = UploadFile(filename="large.bin"), UploadFile(filename="small.bin")
    await large.write(b"x" * (5 * 1024 * 1024))
    await small.write(b"y" * 1024)
    assert not large.in_memory and small.in_memory
    for upload in (large, small):
        await upload.close()
        assert upload.file.closed
        await upload.close()
