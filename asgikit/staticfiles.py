"""`StaticFiles`: serve a directory safely, with the caching and ranges of `FileResponse`.

The URL path is checked as text first (no ``..``, backslashes or NUL bytes), then the
file's real path is checked to lie inside the directory, so neither crafted paths nor
symlinks reach a file outside it. Lookup, checks, open and (for small files) the read
happen in one thread-pool hand-off.
"""

from __future__ import annotations

import os

from asgikit._fileplan import (
    FilePlan,
    FileUnavailable,
    RequestConditions,
    offers_pathsend,
    open_regular_file,
    plan_file_response,
    plan_in_thread,
    request_conditions,
)
from asgikit._matcher import route_path
from asgikit.datastructures import redirect_location
from asgikit.files import FileResponse
from asgikit.responses import JSONResponse, RedirectResponse
from asgikit.types import Receive, Scope, Send

__all__ = ["StaticFiles"]


# Every 404 of StaticFiles, whatever the disk holds (nothing there, a directory, a
# symlink leading out, a special file, a path that leaves the directory): the same
# answer, so none of them tells a client more than "not here".
_NOT_FOUND = "Not Found"


def _not_found() -> FileUnavailable:
    return FileUnavailable(404, _NOT_FOUND)


class _Found:
    """What a lookup found: the plan for ``path``, answered with ``status``."""

    __slots__ = ("path", "plan", "status")

    def __init__(self, path: str, plan: FilePlan, status: int = 200) -> None:
        self.path = path
        self.plan = plan
        self.status = status


class _AddSlash:
    """The path names a directory served through its ``index.html``: redirect to ``path/``."""


def safe_path_parts(path: str) -> list[str] | None:
    """The segments of a URL path, or ``None`` if it could step outside the directory.

    Refused: ``..`` segments, backslashes, NUL bytes, and (on Windows) drive letters.
    Empty and ``.`` segments are dropped, so ``//etc/passwd`` stays relative. The path
    is already percent-decoded by the server; it is never decoded again.
    """
    if "\\" in path or "\0" in path:
        return None
    parts = []
    for part in path.split("/"):
        if part == "" or part == ".":
            continue
        if part == ".." or (os.name == "nt" and ":" in part):
            return None
        parts.append(part)
    return parts


class StaticFiles:
    """An ASGI app serving the files under ``directory``; mount it on a `Router`.

    Answers ``GET`` and ``HEAD`` (other methods: ``405``) with the ``ETag``,
    ``Last-Modified``, ``304`` and range handling of `FileResponse`. Paths that could
    leave the directory (``..``, encoded or not, backslashes, NUL bytes, absolute
    paths, symlinks pointing outside unless ``follow_symlinks=True``) answer ``404``,
    exactly like missing files. With ``html=True``, a directory serves its
    ``index.html`` (redirecting ``/docs`` to ``/docs/`` first) and a missing file
    serves the top-level ``404.html`` with status 404 when there is one.

    >>> router.mount("/static", StaticFiles(directory="static"), name="static")
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        html: bool = False,
        follow_symlinks: bool = False,
        check_dir: bool = True,
    ) -> None:
        self.directory = os.path.realpath(os.fspath(directory))
        if check_dir and not os.path.isdir(self.directory):
            raise RuntimeError(f"StaticFiles directory {os.fspath(directory)!r} does not exist")
        self.html = html
        self.follow_symlinks = follow_symlinks
        self._prefix = self.directory.rstrip(os.sep) + os.sep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http":
            await self._not_http(scope_type, receive, send)
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            response = JSONResponse(
                {"detail": "Method Not Allowed"}, status_code=405, headers={"allow": "GET, HEAD"}
            )
            await response(scope, receive, send)
            return
        path = route_path(scope["path"], scope.get("root_path", ""))
        parts = safe_path_parts(path)
        if parts is None:
            await JSONResponse({"detail": _NOT_FOUND}, status_code=404)(scope, receive, send)
            return
        try:
            found = await plan_in_thread(
                self._lookup,
                parts,
                path.endswith("/"),
                request_conditions(scope),
                method == "GET",
                offers_pathsend(scope),
            )
        except FileUnavailable as exc:
            detail = _NOT_FOUND if exc.status == 404 else exc.detail
            await JSONResponse({"detail": detail}, status_code=exc.status)(scope, receive, send)
            return
        if isinstance(found, _AddSlash):
            location = redirect_location(scope, scope["path"] + "/")
            await RedirectResponse(location)(scope, receive, send)
            return
        file_response = FileResponse(found.path, status_code=found.status)
        await file_response.send_planned(found.plan, found.path, scope, receive, send)

    def _resolve(self, full: str) -> str:
        """``full``, checked to stay inside the directory (its real path unless
        ``follow_symlinks``)."""
        if self.follow_symlinks:
            return full
        real = os.path.realpath(full)
        if real != self.directory and not real.startswith(self._prefix):
            raise _not_found()
        return real

    def _open(
        self,
        full: str,
        status: int,
        conditions: RequestConditions,
        send_body: bool,
        pathsend: bool,
    ) -> _Found:
        path = self._resolve(full)
        fd, file_stat = open_regular_file(path, follow_symlinks=True)
        plan = plan_file_response(
            fd,
            file_stat,
            conditions if status == 200 else None,
            read_limit=FileResponse.chunk_size,
            send_body=send_body,
            pathsend=pathsend,
        )
        return _Found(path, plan, status)

    def _lookup(
        self,
        parts: list[str],
        trailing_slash: bool,
        conditions: RequestConditions,
        send_body: bool,
        pathsend: bool,
    ) -> _Found | _AddSlash:
        """Find, check, open and plan the file for ``parts``. Blocking: runs in a thread."""
        full = os.path.join(self.directory, *parts)
        try:
            try:
                return self._open(full, 200, conditions, send_body, pathsend)
            except FileUnavailable as exc:
                if not (self.html and exc.status == 404 and os.path.isdir(self._resolve(full))):
                    raise
            if not trailing_slash and parts:
                return _AddSlash()
            return self._open(
                os.path.join(full, "index.html"), 200, conditions, send_body, pathsend
            )
        except FileUnavailable as exc:
            if not self.html or exc.status != 404:
                raise
            try:
                return self._open(
                    os.path.join(self.directory, "404.html"), 404, conditions, send_body, pathsend
                )
            except FileUnavailable:
                raise _not_found() from None

    async def _not_http(self, scope_type: str, receive: Receive, send: Send) -> None:
        if scope_type == "websocket":
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
        elif scope_type == "lifespan":  # served on its own: nothing to start or stop
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            raise ValueError(f"StaticFiles cannot serve a {scope_type!r} scope")
