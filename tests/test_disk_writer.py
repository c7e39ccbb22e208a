"""The form disk writer on its own: batching, write errors, cancellation, the pool slot.

Real files in a temporary directory and the real thread pool; no request around it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import anyio
import pytest

from asgikit._concurrency import threadpool_limiter
from asgikit.datastructures import UploadFile
from asgikit.forms._disk_writer import BATCH_SIZE, MAX_BATCH_CHUNKS, DiskWriter, FileSink

pytestmark = pytest.mark.anyio
CHUNK = bytes(range(256)) * 256  # 64 KiB


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def size_on_disk(upload: UploadFile) -> int:
    file = upload.file
    if upload.in_memory:
        return 0
    return os.fstat(file.fileno()).st_size


async def test_chunks_reach_the_disk_in_batches_of_at_least_one_mib(temp_dir: Path) -> None:
    upload = UploadFile(filename="f.bin")
    sink = FileSink("f", upload)
    per_batch = BATCH_SIZE // len(CHUNK) + 1  # the first chunk past 1 MiB sends a batch
    async with anyio.create_task_group() as task_group:
        writer = DiskWriter(task_group)
        for _ in range(per_batch - 1):
            await sink.add(CHUNK, writer)
        assert sink.pending == BATCH_SIZE and writer.batches_written == 0
        assert size_on_disk(upload) == 0  # 1 MiB held, nothing written yet
        for _ in range(3 * per_batch + 6):
            await sink.add(CHUNK, writer)
        await writer.close()
    assert writer.batches_written == 4
    assert size_on_disk(upload) == 4 * per_batch * len(CHUNK)  # 4 whole batches, > 1 MiB each
    assert sink.pending == 5 * len(CHUNK) and sink.on_disk  # the rest: the caller's last write
    upload.file.seek(0)
    assert upload.file.read(len(CHUNK) * 2) == CHUNK * 2
    await upload.close()
    assert list(temp_dir.iterdir()) == []


async def test_many_tiny_chunks_make_a_batch_too(temp_dir: Path) -> None:
    upload = UploadFile(filename="f.bin")
    sink = FileSink("f", upload)
    async with anyio.create_task_group() as task_group:
        writer = DiskWriter(task_group)
        for _ in range(MAX_BATCH_CHUNKS):
            await sink.add(b"x", writer)
        await writer.close()
    assert writer.batches_written == 1 and size_on_disk(upload) == MAX_BATCH_CHUNKS
    await upload.close()


async def test_without_a_writer_chunks_are_joined_in_memory() -> None:
    sink = FileSink("f", UploadFile(filename="f.bin"))
    for _ in range(BATCH_SIZE // len(CHUNK) + 1):
        await sink.add(CHUNK, None)
    assert len(sink.chunks) == 1 and sink.size == BATCH_SIZE + len(CHUNK)


async def test_a_write_error_surfaces_from_close_and_later_submits(tmp_path: Path) -> None:
    path = tmp_path / "read-only.bin"
    path.write_bytes(b"")
    with path.open("rb") as read_only:  # writev on it fails with EBADF, a real OSError
        async with anyio.create_task_group() as task_group:
            writer = DiskWriter(task_group)
            await writer.submit(read_only, [CHUNK], len(CHUNK), False)
            with pytest.raises(OSError):
                await writer.close()
            with pytest.raises(OSError):
                await writer.submit(read_only, [CHUNK], len(CHUNK), False)
    assert path.read_bytes() == b""


async def test_cancelled_mid_upload_leaves_no_temp_file_and_no_worker(temp_dir: Path) -> None:
    upload = UploadFile(filename="f.bin")
    sink = FileSink("f", upload)
    total = 10 * (BATCH_SIZE // len(CHUNK))
    reached = 0
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as task_group:
            writer = DiskWriter(task_group)
            try:
                for index in range(total):
                    reached = index
                    await sink.add(CHUNK, writer)
                    if index == 40:
                        scope.cancel()
                        await anyio.sleep(0)  # the reader's next receive() would wait here
            finally:
                writer.abort()
                upload.file.close()  # what the multipart reader does on cancellation
    assert scope.cancelled_caught
    assert reached == 40  # cancelled mid-upload, with batches queued or being written
    assert threadpool_limiter().borrowed_tokens == 0  # the worker has returned
    assert list(temp_dir.iterdir()) == []


async def test_an_idle_worker_gives_its_pool_slot_back(temp_dir: Path) -> None:
    upload = UploadFile(filename="f.bin")
    async with anyio.create_task_group() as task_group:
        writer = DiskWriter(task_group)
        await writer.submit(upload.file, [CHUNK], len(CHUNK), False)
        with anyio.fail_after(5):
            while writer.batches_written < 1 or threadpool_limiter().borrowed_tokens:
                await anyio.sleep(0.01)  # written, then left idle: the worker returns
        await writer.submit(upload.file, [CHUNK], len(CHUNK), True)  # a new worker
        await writer.close()
    assert threadpool_limiter().borrowed_tokens == 0
    assert writer.batches_written == 2
    assert upload.file.read() == CHUNK * 2
    await upload.close()
