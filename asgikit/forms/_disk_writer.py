"""The disk writer: a form's file parts go to disk from one worker thread, in batches.

Theory of operation. The event loop parses the body; a file part's chunks (the very
``bytes`` objects the server gave us, so holding them copies nothing) wait in a
`FileSink` until more than `BATCH_SIZE` bytes are held, and then go to the `DiskWriter`
as one batch. The writer's worker thread appends a batch with one ``writev`` while the
loop parses the next MiB, so disk writes never block the loop and cost one thread
hand-off per MiB, not one per 64 KiB message.

The worker runs in the shared thread pool and gives its slot back after
`IDLE_SECONDS` without work (a slow client does not hold a pool thread while it
dawdles); the next batch starts a new worker. A write error is kept and raised by the
next `DiskWriter.submit` or by `DiskWriter.close`, never out of the task group. On
cancellation or a failed parse, `DiskWriter.abort` makes the worker skip what is queued;
closing the files (which deletes their temp files) is the caller's job.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from typing import IO

import anyio
import anyio.abc

from asgikit._concurrency import run_to_the_end
from asgikit.datastructures import SPOOL_MAX_SIZE, UploadFile

__all__ = [
    "BATCH_SIZE",
    "IDLE_SECONDS",
    "MAX_BATCH_CHUNKS",
    "DiskWriter",
    "FileSink",
    "append_blocking",
]

BATCH_SIZE = SPOOL_MAX_SIZE
"""A file's held chunks go to disk once they exceed this many bytes (1 MiB)."""
MAX_BATCH_CHUNKS = 512  # below every platform's IOV_MAX (1024 on Linux)
"""...or once this many chunks are held, whatever their size."""
IDLE_SECONDS = 0.1
"""A worker with nothing to write for this long returns its thread-pool slot."""

_writev: Callable[[int, list[bytes]], int] | None = getattr(os, "writev", None)


def append_blocking(file: IO[bytes], chunks: list[bytes], size: int, rewind: bool) -> None:
    """Append ``chunks`` (``size`` bytes in all) to a spooled upload file, in a worker thread.

    One ``writev`` system call per batch: the thread releases and retakes the GIL once
    per MiB instead of once per chunk, so it does not queue behind the parsing loop for
    the GIL after every 64 KiB. ``fileno()`` moves the spooled file to disk first (while
    it is empty, so nothing is copied); the buffered file object is bypassed and kept
    consistent by the final ``seek(0)``, which goes to the descriptor.
    """
    if _writev is None:  # no writev (Windows): plain buffered writes
        file.writelines(chunks)
    else:
        fd = file.fileno()
        written = _writev(fd, chunks)
        if written < size:
            _write_rest(fd, chunks, written)
    if rewind:
        file.seek(0)


def _write_rest(fd: int, chunks: list[bytes], skip: int) -> None:
    # A short writev (a regular file only does that when the disk is nearly full).
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        view = memoryview(chunk)[skip:]
        skip = 0
        while view:
            view = view[os.write(fd, view) :]


def _call_soon_threadsafe() -> Callable[[Callable[[], object]], object]:
    """How the worker thread has a callback run on the running event loop without
    waiting for it (``anyio.from_thread.run_sync`` would block the worker until the
    loop, busy parsing, gets round to it)."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop.call_soon_threadsafe
    import trio  # anyio's only other backend

    return trio.lowlevel.current_trio_token().run_sync_soon


class DiskWriter:
    """Writes batches of file chunks to disk from a worker thread.

    The first batch starts a worker in the thread pool; later batches reach it through a
    thread-safe queue, so the loop keeps receiving and parsing the next MiB while the
    worker writes the previous one (writes release the GIL). A worker left without work
    for `IDLE_SECONDS` returns, so a slow client does not hold a slot of the shared thread
    pool while it dawdles; the next batch starts a new one. Back-pressure: the loop waits
    when more than one batch is queued, so at most about 3 MiB of chunks are held. A
    write error is kept and raised by the next `submit` or by `close`, so the task group
    itself never fails.
    """

    __slots__ = (
        "_aborted",
        "_call_soon",
        "_error",
        "_finished",
        "_lock",
        "_queue",
        "_submitted",
        "_task_group",
        "_wake_wanted",
        "_wakeup",
        "_worker_running",
        "_written",
    )

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group
        self._queue: queue.SimpleQueue[tuple[IO[bytes], list[bytes], int, bool] | None] = (
            queue.SimpleQueue()
        )
        # Guards _worker_running against the worker deciding to leave as a batch arrives.
        self._lock = threading.Lock()
        self._worker_running = False
        self._submitted = 0
        self._written = 0  # advanced by the worker thread
        self._wake_wanted = False
        self._wakeup = anyio.Event()
        self._finished: anyio.Event | None = None  # set when the current worker returned
        self._error: BaseException | None = None
        self._aborted = False
        self._call_soon = _call_soon_threadsafe()

    async def submit(self, file: IO[bytes], chunks: list[bytes], size: int, rewind: bool) -> None:
        """Queue ``chunks`` (``size`` bytes) to be appended to ``file`` (then rewound, with
        ``rewind``); waits while an earlier batch is still queued behind the one written."""
        if self._error is not None:
            raise self._error
        with self._lock:
            self._queue.put((file, chunks, size, rewind))
            start = not self._worker_running
            self._worker_running = True
        if start:
            self._finished = anyio.Event()
            self._task_group.start_soon(self._run, self._finished)
        self._submitted += 1
        await self._wait_until_written(self._submitted - 1)

    @property
    def batches_written(self) -> int:
        """How many batches the worker has finished (written, or skipped after an error)."""
        return self._written

    async def close(self) -> None:
        """Wait until every queued batch is written; raise a write error, if any."""
        self._stop_worker()
        if self._finished is not None:
            await self._finished.wait()
            self._finished = None
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Make the worker skip what is queued and return; does not block. After a
        failed parse, the task group then waits for the write in progress, if any."""
        self._aborted = True
        self._stop_worker()

    def _stop_worker(self) -> None:
        with self._lock:
            if self._worker_running:
                self._queue.put(None)  # after the batches queued before it

    async def _wait_until_written(self, batches: int) -> None:
        while self._written < batches:
            # Publish the event before the flag; the worker advances _written before
            # reading the flag. So either we see its progress or it sees our flag.
            self._wakeup = anyio.Event()
            self._wake_wanted = True
            if self._written >= batches:
                break
            await self._wakeup.wait()
        self._wake_wanted = False
        if self._error is not None:
            raise self._error

    async def _run(self, finished: anyio.Event) -> None:
        try:
            await run_to_the_end(self._work)
        finally:
            finished.set()

    def _work(self) -> None:
        # In the worker thread.
        while True:
            try:
                batch = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker_running = False
                        return
                continue
            if batch is None:
                with self._lock:
                    self._worker_running = False
                return
            if self._error is None and not self._aborted:
                try:
                    append_blocking(*batch)
                except Exception as exc:
                    self._error = exc
            self._written += 1
            if self._wake_wanted:
                self._call_soon(self._wakeup.set)  # on the loop's thread; no waiting here


class FileSink:
    """One file part being received: its chunks not yet written, and its size.

    `add` holds chunks until more than `BATCH_SIZE` bytes (or `MAX_BATCH_CHUNKS` chunks)
    wait, then hands them to the `DiskWriter` as one batch, so the file reaches the disk
    in batches of at least 1 MiB (the last one, written by the caller, may be smaller).
    """

    __slots__ = ("chunks", "name", "on_disk", "pending", "size", "upload")

    def __init__(self, name: str, upload: UploadFile) -> None:
        self.name = name
        self.upload = upload
        self.chunks: list[bytes] = []
        self.pending = 0  # bytes in self.chunks
        self.size = 0  # bytes received so far
        self.on_disk = False

    async def add(self, chunk: bytes, writer: DiskWriter | None) -> None:
        """Take one chunk of the file; past a batch, queue the batch to ``writer``.

        With no writer (a body known to fit in memory), the chunks are only joined.
        """
        self.size += len(chunk)
        self.chunks.append(chunk)
        self.pending += len(chunk)
        # The chunk count cap bounds per-object overhead (and writev's iovec count) when
        # a client trickles tiny messages.
        if self.pending > BATCH_SIZE or len(self.chunks) >= MAX_BATCH_CHUNKS:
            if writer is None:  # at most 1 MiB: stays in memory, in one piece
                self.chunks = [b"".join(self.chunks)]
            else:
                await writer.submit(self.upload.file, self.chunks, self.pending, False)
                self.chunks, self.pending, self.on_disk = [], 0, True
