"""Planning a file response: what `FileResponse` and `StaticFiles` both do before sending.

Open and check the file (`open_regular_file`), read the request's conditional and range
headers (`request_conditions`), then decide the status, the ranges and, for a small
body, read it (`plan_file_response`, returning a `FilePlan`). The status and range rules
themselves are the pure functions of `asgikit._ranges`; the functions here do blocking
file I/O and run in the thread pool, in one hand-off per request. `FileUnavailable` is
a 404/403 decided before anything was sent.

This is the interface `asgikit.staticfiles` builds on; it is internal to asgikit.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgikit._concurrency import run_to_the_end
from asgikit._ranges import (
    RangeNotSatisfiable,
    format_http_date,
    if_range_allows,
    is_not_modified,
    make_etag,
    parse_range_header,
)
from asgikit.types import Scope

__all__ = [
    "FilePlan",
    "FileUnavailable",
    "RequestConditions",
    "offers_pathsend",
    "open_regular_file",
    "plan_file_response",
    "plan_in_thread",
    "read_exactly",
    "request_conditions",
]

T = TypeVar("T")

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open; it is refused below
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class FileUnavailable(Exception):
    """The path names no readable regular file: answer with ``status`` (404 or 403)
    and ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class RequestConditions:
    """The request headers a file response looks at, gathered in one pass."""

    method: str
    range: str | None = None
    if_range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None


def request_conditions(scope: Scope) -> RequestConditions:
    """The conditional and range headers of ``scope``, read in one pass."""
    conditions = RequestConditions(scope.get("method", "GET"))
    for name, value in scope["headers"]:
        if name == b"range":
            conditions.range = value.decode("latin-1")
        elif name == b"if-none-match":
            # Several If-None-Match lines form one list.
            text = value.decode("latin-1")
            previous = conditions.if_none_match
            conditions.if_none_match = text if previous is None else f"{previous}, {text}"
        elif name == b"if-modified-since":
            conditions.if_modified_since = value.decode("latin-1")
        elif name == b"if-range":
            conditions.if_range = value.decode("latin-1")
    return conditions


@dataclass
class FilePlan:
    """What to send for one request, decided from the file's metadata and the headers."""

    status: int
    size: int
    etag: str
    last_modified: str
    ranges: list[tuple[int, int]]
    fd: int | None = None  # still open: the body streams from it, the sender closes it
    body: bytes | None = None  # the whole body, already read (small responses)
    detail: str = ""

    def close(self) -> None:
        """Close the descriptor, if still open (the sender's job, or nobody's left)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_regular_file(path: str, follow_symlinks: bool = True) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only and ``fstat`` it; raise `FileUnavailable` unless it is a
    readable regular file. Blocking: call it in a worker thread."""
    try:
        fd = os.open(path, _OPEN_FLAGS if follow_symlinks else _OPEN_FLAGS | _NO_FOLLOW)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError):
        # ValueError: a NUL byte, e.g. from a decoded "%00" in a path parameter.
        raise FileUnavailable(404, "File not found") from None
    except PermissionError:
        raise FileUnavailable(403, "Permission denied") from None
    except OSError as exc:
        # A symlink refused, a long name, a Unix socket (ENXIO): no file to serve.
        if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO):
            raise FileUnavailable(404, "File not found") from None
        raise
    try:
        file_stat = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(file_stat.st_mode):
        os.close(fd)
        raise FileUnavailable(404, "File not found")
    return fd, file_stat


def read_exactly(fd: int, start: int, stop: int) -> bytes:
    """Bytes ``start:stop`` of ``fd`` (`RuntimeError` if the file shrank). Blocking."""
    length = stop - start
    data = _read_at(fd, length, start)
    if len(data) == length:
        return data
    pieces = [data]
    offset = start + len(data)
    while offset < stop:
        if not data:
            raise RuntimeError("the file got shorter while it was being sent")
        data = _read_at(fd, stop - offset, offset)
        pieces.append(data)
        offset += len(data)
    return b"".join(pieces)


if hasattr(os, "pread"):
    _read_at = os.pread
else:  # pragma: no cover - Windows

    def _read_at(fd: int, length: int, offset: int) -> bytes:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, length)


def plan_file_response(
    fd: int,
    file_stat: os.stat_result,
    conditions: RequestConditions | None,
    *,
    read_limit: int,
    send_body: bool = True,
    pathsend: bool = False,
) -> FilePlan:
    """Decide the status and ranges, and read the body now if it fits ``read_limit``.

    ``conditions`` is ``None`` when the response must not be conditional (another
    status than 200, or another method than GET/HEAD). No body is read for ``HEAD``
    (``send_body=False``), nor for a whole-file 200 the server sends itself
    (``pathsend=True``). Closes ``fd`` unless the plan keeps it for streaming.
    Blocking: runs in a worker thread.
    """
    size = file_stat.st_size
    etag = make_etag(size, file_stat.st_mtime_ns)
    last_modified = format_http_date(file_stat.st_mtime)
    plan = FilePlan(200, size, etag, last_modified, [(0, size)])
    try:
        if conditions is not None:
            if is_not_modified(
                etag,
                int(file_stat.st_mtime),
                conditions.if_none_match,
                conditions.if_modified_since,
            ):
                plan.status = 304
            elif (
                conditions.range is not None
                and conditions.method == "GET"  # RFC 9110: Range is defined for GET only
                and if_range_allows(conditions.if_range, etag, last_modified)
            ):
                try:
                    ranges = parse_range_header(conditions.range, size)
                except RangeNotSatisfiable as exc:
                    plan.status, plan.detail = 416, f"Range Not Satisfiable: {exc}"
                else:
                    if ranges is not None:
                        plan.status, plan.ranges = 206, ranges
        needs_body = send_body and not (pathsend and plan.status == 200)
        if needs_body and plan.status in (200, 206):
            wanted = 0
            for start, stop in plan.ranges:
                wanted += stop - start
            if wanted <= read_limit:
                plan.body = b"".join([read_exactly(fd, start, stop) for start, stop in plan.ranges])
            else:
                plan.fd = fd
    finally:
        if plan.fd is None:
            os.close(fd)
    return plan


def offers_pathsend(scope: Scope) -> bool:
    """Whether the server sends whole files itself (``http.response.pathsend``)."""
    extensions = scope.get("extensions")
    return extensions is not None and "http.response.pathsend" in extensions


async def plan_in_thread(func: Callable[..., T], *args: Any) -> T:
    """``await run_to_the_end(func, *args)`` for a planning step that may open the
    file: its result is a `FilePlan`, or holds one as ``.plan``, whose descriptor the
    caller must close. A caller that stops waiting before it takes the result (a native
    asyncio cancellation, ``asyncio.wait_for`` or a server's shutdown, does not wait for
    the thread) would leave that descriptor open: it is closed instead, by the thread
    if it finishes after the caller left, here if it finished before."""
    handoff = _Handoff()
    try:
        return await run_to_the_end(handoff.run, func, *args)
    except BaseException:
        handoff.abandon()
        raise


class _Handoff:
    """One planning step's result, between its worker thread and its caller."""

    __slots__ = ("abandoned", "lock", "result")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.result: Any = None

    def run(self, func: Callable[..., T], *args: Any) -> T:
        # In the worker thread.
        result = func(*args)
        with self.lock:
            if not self.abandoned:
                self.result = result
                return result
        _close_plan_of(result)  # nobody will send it
        return result

    def abandon(self) -> None:
        # On the loop: the caller stopped waiting (or the step raised: nothing to close).
        with self.lock:
            self.abandoned = True
            result, self.result = self.result, None
        if result is not None:
            _close_plan_of(result)


def _close_plan_of(result: Any) -> None:
    plan = result if isinstance(result, FilePlan) else getattr(result, "plan", None)
    if isinstance(plan, FilePlan):
        plan.close()
